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
	"net/http"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/cluster"
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

	// The audio codec toward the caller. "auto" answers G.711 mu-law
	// (PCMU) when Meta's offer carries it (the number setting
	// calling.audio.additional_codecs) and the bot speaks the twilio
	// dialect: the caller's and the bot's mu-law pass through without
	// transcoding, which saves the Opus codec's CPU for 64 kbit/s instead of
	// about 20 and without Opus's FEC and loss concealment. Otherwise, and
	// always with "opus", the call uses Opus. Default: auto.
	Codec string `json:"codec,omitempty"`

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

	// How long a business-initiated call may ring before it is ended as
	// not answered (and terminated toward Meta). Default: 60s.
	RingTimeout caddy.Duration `json:"ring_timeout,omitempty"`

	// An http(s) URL that receives one JSON POST per call event (initiated,
	// ringing, answered, ended) and per call permission reply. Deliveries
	// are retried (3 attempts, 1s then 2s apart) and never hold up a call.
	// Default: none.
	StatusCallback string `json:"status_callback,omitempty"`

	// The key of the HMAC-SHA256 signature of each status callback, sent
	// as X-Whatsapp-Calls-Signature: sha256=<hex of HMAC(key, timestamp +
	// "." + body)> with X-Whatsapp-Calls-Timestamp. Use a placeholder such
	// as {env.STATUS_CALLBACK_SECRET}. Default: not signed.
	StatusCallbackSecret string `json:"status_callback_secret,omitempty"`

	// Headers added to each status callback request (for example
	// Authorization); values may use {env.*}. Default: none.
	StatusCallbackHeaders http.Header `json:"status_callback_headers,omitempty"`

	// Shares the calls of several nodes behind a load balancer through
	// Redis. Default: none (one node, no Redis).
	Cluster *ClusterConfig `json:"cluster,omitempty"`

	appSecret    []byte
	verifyToken  string
	phoneNumbers map[string]struct{}
	botTemplate  botTemplate
	networks     []netip.Prefix

	graph      *whatsapp.Client
	engineCfg  media.EngineConfig // UDPMux is set when the app starts
	callCfg    callConfig         // engine and notify are set when the app starts
	callback   *callbackConfig    // status_callback, resolved; nil if none
	clusterCfg *cluster.Config    // nil on one node; the app's start attaches it
	app        *App
	holds      *handlerHolds
	metrics    *metrics
	logger     *zap.Logger
	webhooks   *zap.Logger
	rejects    *rejectLog
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

// Provision resolves placeholders, applies defaults, checks the result and
// builds the Graph API client. It binds no socket and starts nothing, so
// that `caddy validate` works beside a running Caddy and a reload that
// fails changes nothing: it registers the handler with the whatsapp_calls
// app, which acquires the UDP port, the media engine and the call registry
// when the config starts (see App).
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.webhooks = h.logger.Named("webhook")
	h.rejects = newRejectLog(h.webhooks)
	h.holds = new(handlerHolds)

	if err := h.resolvePlaceholders(); err != nil {
		return err
	}
	secret, err := resolveSecret("app_secret", h.AppSecret)
	if err != nil {
		return err
	}
	h.appSecret = []byte(secret)
	if h.verifyToken, err = resolveSecret("verify_token", h.VerifyToken); err != nil {
		return err
	}
	accessToken, err := resolveSecret("access_token", h.AccessToken)
	if err != nil {
		return err
	}
	signingKey := ""
	if h.BotSigningKey != "" {
		if signingKey, err = resolveSecret("bot_signing_key", h.BotSigningKey); err != nil {
			return err
		}
	}

	h.applyDefaults()
	if err := h.Validate(); err != nil {
		return err
	}

	if len(h.PhoneNumberIDs) > 0 {
		h.phoneNumbers = make(map[string]struct{}, len(h.PhoneNumberIDs))
		for _, id := range h.PhoneNumberIDs {
			h.phoneNumbers[id] = struct{}{}
		}
	}

	h.botTemplate = botTemplate{
		url:        h.Bot,
		header:     h.BotHeaders,
		params:     sortedParams(h.BotParams),
		protocol:   bot.Protocol(h.BotProtocol),
		sampleRate: h.BotSampleRate,
		signingKey: signingKey,
		timeout:    time.Duration(h.BotTimeout),
	}
	if err := h.botTemplate.check(caddy.NewReplacer()); err != nil {
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

	iceServers, err := h.iceServers()
	if err != nil {
		return err
	}
	if h.networks, err = parseNetworks(h.ICENetworks); err != nil {
		return err
	}
	h.engineCfg = media.EngineConfig{
		PublicIPs:      h.PublicIPs,
		ICEServers:     iceServers,
		Networks:       h.networks,
		OpusComplexity: -1,
		Logger:         h.logger.Named("media"),
	}
	if h.StatusCallback != "" {
		cb, err := h.callbackConfig()
		if err != nil {
			return err
		}
		h.callback = &cb
	}
	h.metrics = loadMetrics(ctx.GetMetricsRegistry())
	h.callCfg = callConfig{
		logger:        h.logger.Named("calls"),
		graph:         h.graph,
		bot:           h.botTemplate,
		maxCalls:      h.MaxCalls,
		answerTimeout: time.Duration(h.AnswerTimeout),
		acceptTimeout: time.Duration(h.AcceptTimeout),
		maxConnectAge: time.Duration(h.MaxConnectAge),
		callbackData:  h.BizOpaqueCallbackData,
		codec:         media.Codec(h.Codec),
		ringTimeout:   time.Duration(h.RingTimeout),
		phoneNumbers:  h.phoneNumbers,
	}

	if h.Cluster != nil {
		cc, err := h.Cluster.nodeConfig(h.logger.Named("cluster"))
		if err != nil {
			return err
		}
		h.clusterCfg = &cc
	}

	app, err := ctx.App(appID)
	if err != nil {
		return err
	}
	h.app = app.(*App)
	h.app.register(h)
	return nil
}

// callbackConfig resolves the status_callback settings: the URL's
// placeholders (an unset {env.*} fails the load), the secret, and the
// headers' values.
func (h *Handler) callbackConfig() (callbackConfig, error) {
	u, err := resolveOption("status_callback", h.StatusCallback)
	if err != nil {
		return callbackConfig{}, err
	}
	if err := checkCallbackURL(u); err != nil {
		return callbackConfig{}, err
	}
	cb := callbackConfig{url: u}
	if h.StatusCallbackSecret != "" {
		if cb.secret, err = resolveSecret("status_callback_secret", h.StatusCallbackSecret); err != nil {
			return cb, err
		}
	}
	if len(h.StatusCallbackHeaders) > 0 {
		cb.header = make(http.Header, len(h.StatusCallbackHeaders))
		for name, values := range h.StatusCallbackHeaders {
			for _, v := range values {
				rv, err := resolveOption("status_callback_header "+name, v)
				if err != nil {
					return cb, err
				}
				cb.header.Add(name, rv)
			}
		}
	}
	return cb, nil
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
	if h.RingTimeout == 0 {
		h.RingTimeout = caddy.Duration(DefaultRingTimeout)
	}
}

// Validate checks the configuration. It makes no network calls. The rules
// live in validate.go, which the Caddyfile parser uses too.
func (h *Handler) Validate() error {
	return h.check()
}

// Cleanup releases this handler's hold on the live calls and the UDP port,
// if the app's Stop has not already (see App). Cleanup is safe after a
// partial Provision.
func (h *Handler) Cleanup() error {
	return h.stop()
}

// Interface guards
var (
	_ caddy.Provisioner  = (*Handler)(nil)
	_ caddy.Validator    = (*Handler)(nil)
	_ caddy.CleanerUpper = (*Handler)(nil)
)
