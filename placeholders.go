package whatsappcalls

import (
	"fmt"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/pion/webrtc/v4"
)

// callPlaceholderPrefix starts the per-call placeholders, which only bot,
// bot_header, bot_param and biz_opaque_callback_data take and which are
// resolved for each call.
const callPlaceholderPrefix = "whatsapp."

// checkPlaceholders checks every placeholder in the value of option, so
// that the config load fails on one that could never resolve: an unset or
// empty {env.*} variable, an unknown name, a request placeholder (options
// are resolved outside any request) or, where perCall is false, a per-call
// {whatsapp.*} one. The error names the option and the placeholder, never
// a value. Per-call names are checked by the bot template.
func checkPlaceholders(option, value string, perCall bool) error {
	if !strings.ContainsAny(value, "{}") {
		return nil
	}
	repl := caddy.NewReplacer()
	_, err := repl.ReplaceFunc(value, func(key string, val any) (any, error) {
		ph := "{" + key + "}"
		switch {
		case strings.HasPrefix(key, callPlaceholderPrefix):
			if !perCall {
				return nil, fmt.Errorf("%s: %s is a per-call placeholder; only bot, bot_header, bot_param and biz_opaque_callback_data take those", option, ph)
			}
			return ph, nil
		case strings.HasPrefix(key, "env."):
			v, ok := os.LookupEnv(strings.TrimPrefix(key, "env."))
			if !ok {
				return nil, fmt.Errorf("%s: %s is not set", option, ph)
			}
			if v == "" {
				return nil, fmt.Errorf("%s: %s is empty", option, ph)
			}
		case strings.HasPrefix(key, "http."):
			return nil, fmt.Errorf("%s: %s is a request placeholder, and %s is resolved outside any request", option, ph, option)
		default:
			if _, ok := repl.Get(key); !ok {
				return nil, fmt.Errorf("%s: %s is not a known placeholder", option, ph)
			}
		}
		return val, nil
	})
	return err
}

// resolveOption checks and resolves the placeholders of a setting that is
// fixed for the config's life.
func resolveOption(option, value string) (string, error) {
	if err := checkPlaceholders(option, value, false); err != nil {
		return "", err
	}
	v, err := caddy.NewReplacer().ReplaceOrErr(value, true, true)
	if err != nil {
		// checkPlaceholders accepted every name, so this is a value that
		// became empty; Caddy's message names the placeholder only.
		return "", fmt.Errorf("%s: %w", option, err)
	}
	return v, nil
}

// resolveSecret resolves a secret option. An unset or empty value is an
// error that names the option and the variable, never the value.
func resolveSecret(option, value string) (string, error) {
	if value == "" {
		return "", fmt.Errorf("%s is required", option)
	}
	v, err := resolveOption(option, value)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", fmt.Errorf("%s is empty", option)
	}
	return v, nil
}

// resolvePlaceholders resolves the placeholders of every setting that is
// fixed for the config's life, in place, and checks those of the per-call
// settings (bot, bot_header, bot_param, biz_opaque_callback_data), which
// are resolved for each call.
// Secrets are resolved by Provision into unexported fields.
func (h *Handler) resolvePlaceholders() error {
	if err := checkPlaceholders("bot", h.Bot, true); err != nil {
		return err
	}
	for name, values := range h.BotHeaders {
		for _, v := range values {
			if err := checkPlaceholders("bot_header "+name, v, true); err != nil {
				return err
			}
		}
	}
	for name, v := range h.BotParams {
		if err := checkPlaceholders("bot_param "+name, v, true); err != nil {
			return err
		}
	}
	if err := checkPlaceholders("biz_opaque_callback_data", h.BizOpaqueCallbackData, true); err != nil {
		return err
	}
	for _, s := range []struct {
		option string
		value  *string
	}{
		{"graph_url", &h.GraphURL},
		{"graph_version", &h.GraphVersion},
	} {
		v, err := resolveOption(s.option, *s.value)
		if err != nil {
			return err
		}
		*s.value = v
	}
	for _, list := range []struct {
		option string
		values []string
	}{
		{"phone_number_ids", h.PhoneNumberIDs},
		{"public_ip", h.PublicIPs},
		{"ice_networks", h.ICENetworks},
	} {
		for i, v := range list.values {
			rv, err := resolveOption(list.option, v)
			if err != nil {
				return err
			}
			list.values[i] = rv
		}
	}
	for i := range h.ICEServers {
		s := &h.ICEServers[i]
		for j, u := range s.URLs {
			rv, err := resolveOption("ice_server", u)
			if err != nil {
				return err
			}
			s.URLs[j] = rv
		}
		rv, err := resolveOption("ice_server username", s.Username)
		if err != nil {
			return err
		}
		s.Username = rv
	}
	return nil
}

// iceServers returns the STUN and TURN servers, their credentials
// resolved.
func (h *Handler) iceServers() ([]webrtc.ICEServer, error) {
	servers := make([]webrtc.ICEServer, 0, len(h.ICEServers))
	for _, s := range h.ICEServers {
		cred := ""
		if s.Credential != "" {
			var err error
			if cred, err = resolveSecret("ice_server credential", s.Credential); err != nil {
				return nil, err
			}
		}
		servers = append(servers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: cred})
	}
	return servers, nil
}
