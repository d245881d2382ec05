// Package whatsappcalls is a Caddy HTTP handler that answers WhatsApp
// Business voice calls and bridges each call's audio to a voice bot over a
// WebSocket.
//
// Meta's Cloud API delivers call webhooks to the route that holds the
// whatsapp_calls handler. The handler checks the X-Hub-Signature-256
// signature on the raw body, answers the caller's WebRTC offer with pion,
// and streams the audio to the bot in a dialect bots already speak: Twilio
// Media Streams (8 kHz mu-law) or Vonage-style binary L16 (8, 16 or 24 kHz).
// Either side can hang up, and the other side is always told.
//
// See https://developers.facebook.com/docs/whatsapp/cloud-api/calling for
// the webhook and Graph API shapes.
package whatsappcalls

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the optional settings.
const (
	DefaultGraphURL      = "https://graph.facebook.com"
	DefaultGraphVersion  = "v23.0"
	DefaultUDPPort       = 3478
	DefaultMaxCalls      = 100
	DefaultMaxBodySize   = 1 << 20
	DefaultAnswerTimeout = 15 * time.Second
	DefaultAcceptTimeout = 5 * time.Second
	DefaultBotTimeout    = 3 * time.Second
	DefaultMaxConnectAge = 60 * time.Second
	DefaultSampleRate    = 16000
)

// Handler answers WhatsApp call webhooks and bridges each call to a voice
// bot over a WebSocket.
//
// GET requests answer Meta's webhook verification. POST requests carry
// signed webhooks; each `connect` call event starts a call, each
// `terminate` ends one. Other methods get 405.
//
// The bot URL, bot headers, bot parameters and biz_opaque_callback_data
// may use these placeholders, resolved for each call. A value the webhook
// did not carry is empty: since 2026 a caller who has a WhatsApp username
// may come without a phone number, identified by user ids instead.
//
//	{whatsapp.call_id}              the WhatsApp call id (wacid...)
//	{whatsapp.from}                 the caller's WhatsApp id (phone number), if shared
//	{whatsapp.from_user_id}         the caller's business-scoped user id (US.1349...)
//	{whatsapp.from_parent_user_id}  the caller's portfolio-level user id, if any
//	{whatsapp.username}             the caller's WhatsApp username, if any
//	{whatsapp.caller_name}          the caller's profile name, if sent
//	{whatsapp.to}                   the business phone number called
//	{whatsapp.phone_number_id}      the business phone number id
//	{whatsapp.deeplink_payload}     the payload of the call deep link tapped, if any
//	{whatsapp.cta_payload}          the payload of the call button tapped, if any
type Handler struct {
	// The Meta app secret that signs every webhook (X-Hub-Signature-256).
	// Required. Use a placeholder such as {env.WHATSAPP_APP_SECRET}; an
	// unset variable fails the config load.
	AppSecret string `json:"app_secret,omitempty"`

	// The verify token configured in the Meta app's webhook settings; it
	// answers the GET subscription check. Required.
	VerifyToken string `json:"verify_token,omitempty"`

	// The Graph API bearer token (a system user access token). Required.
	AccessToken string `json:"access_token,omitempty"`

	// The business phone number ids whose calls this handler answers.
	// Calls to other numbers are acknowledged and left alone. Default: any.
	PhoneNumberIDs []string `json:"phone_number_ids,omitempty"`

	// The bot's WebSocket URL (ws:// or wss://). Required. It may use
	// the per-call {whatsapp.*} placeholders, whose values are URL-escaped.
	Bot string `json:"bot,omitempty"`

	// The dialect spoken to the bot: "twilio" (Twilio Media Streams,
	// 8 kHz mu-law) or "vonage" (binary L16 PCM). Default: twilio.
	BotProtocol string `json:"bot_protocol,omitempty"`

	// The PCM sample rate for the vonage dialect: 8000, 16000 or 24000.
	// The twilio dialect is always 8000. Default: 16000.
	BotSampleRate int `json:"bot_sample_rate,omitempty"`

	// Headers added to the bot's WebSocket upgrade request, typically for
	// authentication. Values may use {env.*} and {whatsapp.*}
	// placeholders. Default: none.
	BotHeaders http.Header `json:"bot_headers,omitempty"`

	// Extra parameters for the bot: start.customParameters in the twilio
	// dialect, extra fields of websocket:connected in the vonage dialect.
	// Values may use placeholders. Default: none.
	BotParams map[string]string `json:"bot_params,omitempty"`

	// If set, the bot's WebSocket upgrade carries X-Twilio-Signature:
	// base64(HMAC-SHA1(key, full URL)), as Twilio signs its requests, for
	// bots that validate it. Default: not signed.
	BotSigningKey string `json:"bot_signing_key,omitempty"`

	// The Graph API base URL. Default: https://graph.facebook.com
	GraphURL string `json:"graph_url,omitempty"`

	// The Graph API version. Default: v23.0
	GraphVersion string `json:"graph_version,omitempty"`

	// STUN and TURN servers for ICE. Default: none (Meta's media servers
	// are reachable directly when public_ip and udp_port are set).
	ICEServers []ICEServer `json:"ice_servers,omitempty"`

	// The public IP addresses to advertise as host candidates (NAT 1:1),
	// for hosts behind NAT such as cloud VMs. Default: the local addresses.
	PublicIPs []string `json:"public_ips,omitempty"`

	// The one UDP port that carries every call's media (an ICE UDP mux).
	// 0 means an ephemeral port per call. Default: 3478.
	UDPPort *int `json:"udp_port,omitempty"`

	// EXPERIMENTAL: Restrict the local addresses gathered as ICE
	// candidates to these networks (CIDR). A loopback network enables
	// loopback candidates, for tests and the localhost demo.
	// Default: all non-loopback addresses.
	ICENetworks []string `json:"ice_networks,omitempty"`

	// The cap on concurrent calls; calls over it are rejected.
	// Default: 100.
	MaxCalls int `json:"max_calls,omitempty"`

	// The webhook body size cap in bytes; larger bodies get 413.
	// Default: 1 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// The budget from the connect webhook to connected media; past it
	// the call is rejected. Default: 15s.
	AnswerTimeout caddy.Duration `json:"answer_timeout,omitempty"`

	// The budget for the accept request, which starts once media is
	// connected (it is not what is left of answer_timeout). If accept
	// fails with a Graph 4xx error the call is rejected; if it times out
	// or fails otherwise, Meta may have accepted it, so it is terminated.
	// Default: 5s.
	AcceptTimeout caddy.Duration `json:"accept_timeout,omitempty"`

	// The budget for dialing the bot, retries included; a bot that is
	// down gets the call rejected. Default: 3s.
	BotTimeout caddy.Duration `json:"bot_timeout,omitempty"`

	// The oldest connect webhook answered, by its timestamp. Meta ends a
	// call nobody answered within 30 to 60 seconds, so an older connect
	// is a replayed webhook: it is acknowledged and ignored (logged at
	// WARN), and never dials the bot. A timestamp further than this in the
	// future (a host clock that is behind) is ignored too. Default: 60s.
	MaxConnectAge caddy.Duration `json:"max_connect_age,omitempty"`

	// Sent as biz_opaque_callback_data with each accept; Meta echoes it in
	// the call's terminate webhook, which logs it at debug level (it may
	// hold personal data). It may use the per-call {whatsapp.*}
	// placeholders and {env.*}. Meta takes at most 512 characters: a
	// longer template fails the config load, and a call whose value is
	// longer after its placeholders is accepted without it (with a
	// warning), since cut opaque data would be wrong data. Default: none.
	BizOpaqueCallbackData string `json:"biz_opaque_callback_data,omitempty"`

	// Shares the calls of several nodes behind a load balancer through
	// Redis. Default: none (one node, no Redis).
	Cluster *ClusterConfig `json:"cluster,omitempty"`

	appSecret    []byte
	verifyToken  string
	phoneNumbers map[string]struct{}
	botTemplate  botTemplate

	graph    *whatsapp.Client
	engine   *media.Engine
	muxKey   string
	calls    *registry
	metrics  *metrics
	logger   *zap.Logger
	webhooks *zap.Logger
}

// ICEServer is a STUN or TURN server.
type ICEServer struct {
	// The server URLs, such as stun:stun.example.com:3478 or
	// turn:turn.example.com:3478?transport=udp.
	URLs []string `json:"urls,omitempty"`

	// The TURN username. Default: none.
	Username string `json:"username,omitempty"`

	// The TURN credential; may be an {env.*} placeholder. Default: none.
	Credential string `json:"credential,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.whatsapp_calls",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves secrets, applies defaults and builds the Graph API
// client and the WebRTC engine. It does no network I/O beyond binding the
// ICE UDP port, which is shared across config reloads.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.webhooks = h.logger.Named("webhook")

	repl := caddy.NewReplacer()
	secret, err := resolveSecret(repl, "app_secret", h.AppSecret)
	if err != nil {
		return err
	}
	h.appSecret = []byte(secret)
	if h.verifyToken, err = resolveSecret(repl, "verify_token", h.VerifyToken); err != nil {
		return err
	}
	accessToken, err := resolveSecret(repl, "access_token", h.AccessToken)
	if err != nil {
		return err
	}
	signingKey := ""
	if h.BotSigningKey != "" {
		if signingKey, err = resolveSecret(repl, "bot_signing_key", h.BotSigningKey); err != nil {
			return err
		}
	}

	h.applyDefaults()

	if len(h.PhoneNumberIDs) > 0 {
		h.phoneNumbers = make(map[string]struct{}, len(h.PhoneNumberIDs))
		for _, id := range h.PhoneNumberIDs {
			h.phoneNumbers[id] = struct{}{}
		}
	}

	protocol, err := bot.ParseProtocol(h.BotProtocol)
	if err != nil {
		return fmt.Errorf("bot_protocol: %w", err)
	}
	h.botTemplate = botTemplate{
		url:        h.Bot,
		header:     h.BotHeaders,
		params:     sortedParams(h.BotParams),
		protocol:   protocol,
		sampleRate: h.BotSampleRate,
		signingKey: signingKey,
		timeout:    time.Duration(h.BotTimeout),
	}
	if err := h.botTemplate.check(repl); err != nil {
		return err
	}
	if err := checkCallbackData(caddy.NewReplacer(), h.BizOpaqueCallbackData); err != nil {
		return err
	}

	h.graph = &whatsapp.Client{
		BaseURL:     h.GraphURL,
		Version:     h.GraphVersion,
		AccessToken: accessToken,
		Logger:      h.logger.Named("graph"),
	}

	iceServers, err := h.iceServers(repl)
	if err != nil {
		return err
	}
	networks, err := parseNetworks(h.ICENetworks)
	if err != nil {
		return err
	}
	var mux ice.UDPMux
	if *h.UDPPort > 0 {
		h.muxKey = fmt.Sprintf("whatsapp_calls/udp/%d", *h.UDPPort)
		mux, err = loadUDPMux(h.muxKey, *h.UDPPort, networks, h.logger.Named("media"))
		if err != nil {
			h.muxKey = ""
			return fmt.Errorf("udp_port %d: %w", *h.UDPPort, err)
		}
	}
	h.engine, err = media.NewEngine(media.EngineConfig{
		UDPMux:         mux,
		PublicIPs:      h.PublicIPs,
		ICEServers:     iceServers,
		Networks:       networks,
		OpusComplexity: -1,
		Logger:         h.logger.Named("media"),
	})
	if err != nil {
		return fmt.Errorf("webrtc engine: %w", err)
	}

	h.metrics = loadMetrics(ctx.GetMetricsRegistry())
	h.calls = loadRegistry(h.registryKey(), h.metrics)
	callCfg := callConfig{
		logger:        h.logger.Named("calls"),
		graph:         h.graph,
		engine:        h.engine,
		bot:           h.botTemplate,
		maxCalls:      h.MaxCalls,
		answerTimeout: time.Duration(h.AnswerTimeout),
		acceptTimeout: time.Duration(h.AcceptTimeout),
		maxConnectAge: time.Duration(h.MaxConnectAge),
		callbackData:  h.BizOpaqueCallbackData,
	}
	h.calls.configure(callCfg)
	if h.Cluster != nil {
		cc, err := h.Cluster.nodeConfig(repl, h.logger.Named("cluster"))
		if err != nil {
			return err
		}
		if err := h.calls.attachCluster(cc, callCfg); err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) applyDefaults() {
	if h.BotProtocol == "" {
		h.BotProtocol = string(bot.Twilio)
	}
	if h.BotSampleRate == 0 {
		if h.BotProtocol == string(bot.Twilio) {
			h.BotSampleRate = 8000
		} else {
			h.BotSampleRate = DefaultSampleRate
		}
	}
	if h.GraphURL == "" {
		h.GraphURL = DefaultGraphURL
	}
	if h.GraphVersion == "" {
		h.GraphVersion = DefaultGraphVersion
	}
	if h.UDPPort == nil {
		port := DefaultUDPPort
		h.UDPPort = &port
	}
	if h.MaxCalls == 0 {
		h.MaxCalls = DefaultMaxCalls
	}
	if h.MaxBodySize == 0 {
		h.MaxBodySize = DefaultMaxBodySize
	}
	if h.AnswerTimeout == 0 {
		h.AnswerTimeout = caddy.Duration(DefaultAnswerTimeout)
	}
	if h.AcceptTimeout == 0 {
		h.AcceptTimeout = caddy.Duration(DefaultAcceptTimeout)
	}
	if h.BotTimeout == 0 {
		h.BotTimeout = caddy.Duration(DefaultBotTimeout)
	}
	if h.MaxConnectAge == 0 {
		h.MaxConnectAge = caddy.Duration(DefaultMaxConnectAge)
	}
}

// Validate checks the configuration. It makes no network calls.
func (h *Handler) Validate() error {
	for _, req := range []struct{ name, value string }{
		{"app_secret", h.AppSecret},
		{"verify_token", h.VerifyToken},
		{"access_token", h.AccessToken},
		{"bot", h.Bot},
	} {
		if req.value == "" {
			return fmt.Errorf("%s is required", req.name)
		}
	}
	if err := checkBotURL(h.Bot); err != nil {
		return fmt.Errorf("bot: %w", err)
	}
	if err := checkSampleRate(h.BotProtocol, h.BotSampleRate); err != nil {
		return err
	}
	if err := checkGraphURL(h.GraphURL); err != nil {
		return fmt.Errorf("graph_url: %w", err)
	}
	if h.UDPPort != nil && (*h.UDPPort < 0 || *h.UDPPort > 65535) {
		return fmt.Errorf("udp_port %d out of range 0-65535", *h.UDPPort)
	}
	for _, ip := range h.PublicIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("public_ip %q: not an IP address", ip)
		}
	}
	if h.MaxCalls < 0 {
		return fmt.Errorf("max_calls must be positive")
	}
	if h.MaxBodySize < 0 {
		return fmt.Errorf("max_body_size must be positive")
	}
	if h.AnswerTimeout < 0 || h.BotTimeout < 0 {
		return fmt.Errorf("answer_timeout and bot_timeout must be positive")
	}
	if h.AcceptTimeout < 0 {
		return fmt.Errorf("accept_timeout must be positive")
	}
	if h.MaxConnectAge < 0 {
		return fmt.Errorf("max_connect_age must be positive")
	}
	if n := utf8.RuneCountInString(h.BizOpaqueCallbackData); n > maxCallbackData {
		return fmt.Errorf("biz_opaque_callback_data is %d characters; Meta takes at most %d", n, maxCallbackData)
	}
	if h.Cluster != nil {
		if err := h.Cluster.validate(); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup releases this handler's hold on the live calls and the UDP port.
// On a config reload the new handler holds them too, so calls go on; on a
// real stop the last holder terminates every live call toward Meta and
// tells every bot. Cleanup is safe after a partial Provision.
func (h *Handler) Cleanup() error {
	var errs []error
	lastUser := true
	if h.calls != nil {
		deleted, err := registries.Delete(h.registryKey())
		if err != nil {
			errs = append(errs, err)
		}
		lastUser = deleted
	}
	// On a reload the engine's live sessions belong to the registry, which
	// the new config holds: they must go on, so the engine is left to the
	// garbage collector. On a real stop the registry has ended them all.
	if h.engine != nil && lastUser {
		if err := h.engine.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if h.muxKey != "" {
		if _, err := udpMuxes.Delete(h.muxKey); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// registryKey names the call registry shared by this handler's successive
// configs. Handlers that answer the same phone numbers with the same
// credentials share one registry, so a reload hands live calls over.
func (h *Handler) registryKey() string {
	ids := append([]string(nil), h.PhoneNumberIDs...)
	sort.Strings(ids)
	return "whatsapp_calls/calls/" + strings.Join(ids, ",")
}

func (h *Handler) iceServers(repl *caddy.Replacer) ([]webrtc.ICEServer, error) {
	servers := make([]webrtc.ICEServer, 0, len(h.ICEServers))
	for _, s := range h.ICEServers {
		cred, err := repl.ReplaceOrErr(s.Credential, true, true)
		if err != nil && s.Credential != "" {
			return nil, fmt.Errorf("ice_server credential: %w", err)
		}
		servers = append(servers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: cred})
	}
	return servers, nil
}

// resolveSecret resolves the placeholders of a secret option. An unset or
// empty value is an error that names the option, never the value.
func resolveSecret(repl *caddy.Replacer, option, value string) (string, error) {
	if value == "" {
		return "", fmt.Errorf("%s is required", option)
	}
	v, err := repl.ReplaceOrErr(value, true, true)
	if err != nil {
		return "", fmt.Errorf("%s: a placeholder is unset or unknown (%w)", option, errRedacted)
	}
	if v == "" {
		return "", fmt.Errorf("%s is empty", option)
	}
	return v, nil
}

// errRedacted stands in for a Replacer error, whose text could echo part of
// a secret's value.
var errRedacted = errors.New("value not shown")

func checkBotURL(raw string) error {
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return fmt.Errorf("%q is not a ws:// or wss:// URL", raw)
	}
	switch strings.ToLower(scheme) {
	case "ws", "wss":
	default:
		if !strings.Contains(scheme, "{") {
			return fmt.Errorf("scheme %q is not ws or wss", scheme)
		}
	}
	return nil
}

func checkGraphURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	return nil
}

func checkSampleRate(protocol string, rate int) error {
	switch protocol {
	case "", string(bot.Twilio):
		if rate != 0 && rate != 8000 {
			return fmt.Errorf("bot_sample_rate %d: the twilio dialect is 8000 only", rate)
		}
	case string(bot.Vonage):
		switch rate {
		case 0, 8000, 16000, 24000:
		default:
			return fmt.Errorf("bot_sample_rate %d: must be 8000, 16000 or 24000", rate)
		}
	default:
		return fmt.Errorf("bot_protocol %q: must be twilio or vonage", protocol)
	}
	return nil
}

func parseNetworks(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("ice_networks %q: %w", c, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Interface guards
var (
	_ caddy.Provisioner  = (*Handler)(nil)
	_ caddy.Validator    = (*Handler)(nil)
	_ caddy.CleanerUpper = (*Handler)(nil)
)
