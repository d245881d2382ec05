package whatsappcalls

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// The rules of every option, in one place: Validate applies them to the
// JSON config, and the Caddyfile parser applies the same functions to its
// tokens so that `caddy adapt` reports the same message at the line. A
// value that still holds a placeholder is checked once Provision has
// resolved it.

// check applies every rule to the handler's settings. Zero values stand
// for the defaults.
func (h *Handler) check() error {
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
		return err
	}
	if err := checkBotProtocol(h.BotProtocol); err != nil {
		return err
	}
	if err := checkSampleRate(h.BotProtocol, h.BotSampleRate); err != nil {
		return err
	}
	if err := checkCodec(h.Codec); err != nil {
		return err
	}
	if h.GraphURL != "" {
		if err := checkGraphURL(h.GraphURL); err != nil {
			return err
		}
	}
	if h.UDPPort != nil {
		if err := checkUDPPort(*h.UDPPort); err != nil {
			return err
		}
	}
	for _, ip := range h.PublicIPs {
		if err := checkPublicIP(ip); err != nil {
			return err
		}
	}
	for _, n := range h.ICENetworks {
		if err := checkNetwork(n); err != nil {
			return err
		}
	}
	if h.MaxCalls < 0 {
		return fmt.Errorf("max_calls %d: must be a positive integer", h.MaxCalls)
	}
	if h.MaxBodySize < 0 {
		return fmt.Errorf("max_body_size %d: must be a positive size", h.MaxBodySize)
	}
	if h.AnswerTimeout < 0 {
		return fmt.Errorf("answer_timeout: must be a positive duration such as 5s")
	}
	if h.BotTimeout < 0 {
		return fmt.Errorf("bot_timeout: must be a positive duration such as 5s")
	}
	if h.AcceptTimeout < 0 {
		return fmt.Errorf("accept_timeout: must be a positive duration such as 5s")
	}
	if h.MaxConnectAge < 0 {
		return fmt.Errorf("max_connect_age: must be a positive duration such as 60s")
	}
	if h.RingTimeout < 0 {
		return fmt.Errorf("ring_timeout: must be a positive duration such as 60s")
	}
	if h.StatusCallback != "" {
		if err := checkCallbackURL(h.StatusCallback); err != nil {
			return err
		}
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

// hasPlaceholder reports whether v holds a placeholder that Provision
// resolves; its checks wait until then.
func hasPlaceholder(v string) bool { return strings.Contains(v, "{") }

// checkBotURL checks the scheme of the bot URL. The URL itself is never
// echoed: its query may carry a token.
func checkBotURL(raw string) error {
	if strings.HasPrefix(raw, "{") {
		return nil // the whole URL comes from a placeholder, e.g. {env.BOT_URL}
	}
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return fmt.Errorf("bot: not a ws:// or wss:// URL")
	}
	switch strings.ToLower(scheme) {
	case "ws", "wss":
	default:
		if !hasPlaceholder(scheme) {
			return fmt.Errorf("bot: scheme %q is not ws or wss", scheme)
		}
	}
	return nil
}

// checkBotProtocol accepts the dialect names exactly as documented.
func checkBotProtocol(p string) error {
	switch p {
	case "", string(bot.Twilio), string(bot.Vonage):
		return nil
	}
	return fmt.Errorf("bot_protocol %q: must be twilio or vonage", p)
}

// checkCodec accepts the codec choices exactly as documented.
func checkCodec(c string) error {
	if _, ok := media.ParseCodec(c); !ok {
		return fmt.Errorf("codec %q: must be auto or opus", c)
	}
	return nil
}

// checkSampleRate checks bot_sample_rate against the dialect; 0 is the
// dialect's default.
func checkSampleRate(protocol string, rate int) error {
	if protocol == string(bot.Vonage) {
		switch rate {
		case 0, 8000, 16000, 24000:
			return nil
		}
		return fmt.Errorf("bot_sample_rate %d: must be 8000, 16000 or 24000", rate)
	}
	if rate != 0 && rate != 8000 {
		return fmt.Errorf("bot_sample_rate %d: the twilio dialect is 8000 only", rate)
	}
	return nil
}

func checkGraphURL(raw string) error {
	if hasPlaceholder(raw) {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("graph_url %q: not an http(s) URL", raw)
	}
	return nil
}

func checkCallbackURL(raw string) error {
	if hasPlaceholder(raw) {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("status_callback %q: not an http(s) URL", raw)
	}
	return nil
}

func checkUDPPort(port int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("udp_port %d: must be a port number 0-65535", port)
	}
	return nil
}

func checkPublicIP(ip string) error {
	if hasPlaceholder(ip) {
		return nil
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return fmt.Errorf("public_ip %q: not an IP address", ip)
	}
	return nil
}

func checkNetwork(cidr string) error {
	if _, err := netip.ParsePrefix(cidr); err != nil {
		return fmt.Errorf("ice_networks %q: not a CIDR network", cidr)
	}
	return nil
}

func parseNetworks(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		if err := checkNetwork(c); err != nil {
			return nil, err
		}
		out = append(out, netip.MustParsePrefix(c).Masked())
	}
	return out, nil
}
