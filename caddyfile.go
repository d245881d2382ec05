package whatsappcalls

import (
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("whatsapp_calls", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("whatsapp_calls", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("whatsapp_calls_api", parseAPICaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("whatsapp_calls_api", httpcaddyfile.Before, "respond")
}

func parseAPICaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var a API
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return &a, err
}

// UnmarshalCaddyfile sets up the control API from Caddyfile tokens. Syntax:
//
//	whatsapp_calls_api [<matcher>] {
//		token             <token>
//		twilio_auth_token <token>
//	}
//
// token is required.
func (a *API) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("%s already specified", opt)
		}
		seen[opt] = true
		switch opt {
		case "token":
			if err := oneArg(d, &a.Token); err != nil {
				return err
			}
		case "twilio_auth_token":
			if err := oneArg(d, &a.TwilioAuthToken); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective '%s'", opt)
		}
	}
	if !seen["token"] {
		return d.Err("token is required")
	}
	return nil
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	whatsapp_calls [<matcher>] {
//		app_secret       <secret>
//		verify_token     <token>
//		access_token     <token>
//		phone_number_ids <id...>
//		bot              <ws-or-wss-url>
//		bot_protocol     twilio|vonage
//		bot_sample_rate  8000|16000|24000
//		codec            auto|opus
//		bot_header       <field> <value>
//		bot_param        <name> <value>
//		bot_signing_key  <key>
//		graph_url        <url>
//		graph_version    <version>
//		ice_server       <url> [<user> <cred>]
//		ice_networks     <cidr...>
//		public_ip        <ip...>
//		udp_port         <port>
//		max_calls        <n>
//		max_body_size    <size>
//		answer_timeout   <duration>
//		accept_timeout   <duration>
//		bot_timeout      <duration>
//		max_connect_age  <duration>
//		biz_opaque_callback_data <template>
//		ring_timeout     <duration>
//		status_callback  <url>
//		status_callback_secret <key>
//		status_callback_header <field> <value>
//		cluster          <redis-host:port> {
//			username        <user>
//			password        <password>
//			db              <n>
//			tls
//			tls_server_name <name>
//			tls_ca          <pem-file>
//			key_prefix      <prefix>
//			node_id         <id>
//			node_address    <host:port>
//			claim_ttl       <duration>
//		}
//	}
//
// app_secret, verify_token, access_token and bot are required. bot_header,
// bot_param, status_callback_header and ice_server may be repeated; phone_number_ids, public_ip and
// ice_networks take one or more values and may be repeated to add more.
// The optional cluster block shares calls between several nodes through
// Redis; see ClusterConfig.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}

	seen := make(map[string]bool)
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "bot_header", "bot_param", "ice_server", "phone_number_ids", "public_ip", "ice_networks", "status_callback_header":
			// repeatable
		default:
			if seen[opt] {
				return d.Errf("%s already specified", opt)
			}
		}
		seen[opt] = true

		switch opt {
		case "app_secret":
			if err := oneArg(d, &h.AppSecret); err != nil {
				return err
			}
		case "verify_token":
			if err := oneArg(d, &h.VerifyToken); err != nil {
				return err
			}
		case "access_token":
			if err := oneArg(d, &h.AccessToken); err != nil {
				return err
			}
		case "bot_signing_key":
			if err := oneArg(d, &h.BotSigningKey); err != nil {
				return err
			}
		case "graph_version":
			if err := oneArg(d, &h.GraphVersion); err != nil {
				return err
			}
		case "biz_opaque_callback_data":
			if err := oneArg(d, &h.BizOpaqueCallbackData); err != nil {
				return err
			}
		case "status_callback_secret":
			if err := oneArg(d, &h.StatusCallbackSecret); err != nil {
				return err
			}
		case "status_callback":
			if err := oneArg(d, &h.StatusCallback); err != nil {
				return err
			}
			if err := checkCallbackURL(h.StatusCallback); err != nil {
				return d.Err(err.Error())
			}
		case "status_callback_header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("%s needs a name and a value", opt)
			}
			if h.StatusCallbackHeaders == nil {
				h.StatusCallbackHeaders = make(http.Header)
			}
			h.StatusCallbackHeaders.Add(args[0], args[1])

		case "bot":
			if err := oneArg(d, &h.Bot); err != nil {
				return err
			}
			if err := checkBotURL(h.Bot); err != nil {
				return d.Err(err.Error())
			}

		case "graph_url":
			if err := oneArg(d, &h.GraphURL); err != nil {
				return err
			}
			if err := checkGraphURL(h.GraphURL); err != nil {
				return d.Err(err.Error())
			}

		case "bot_protocol":
			if err := oneArg(d, &h.BotProtocol); err != nil {
				return err
			}
			if err := checkBotProtocol(h.BotProtocol); err != nil {
				return d.Err(err.Error())
			}

		case "codec":
			if err := oneArg(d, &h.Codec); err != nil {
				return err
			}
			if err := checkCodec(h.Codec); err != nil {
				return d.Err(err.Error())
			}

		case "bot_sample_rate":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			rate, err := strconv.Atoi(v)
			if err != nil || rate <= 0 {
				return d.Errf("bot_sample_rate %q: must be 8000, 16000 or 24000", v)
			}
			h.BotSampleRate = rate

		case "bot_header", "bot_param":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("%s needs a name and a value", opt)
			}
			if opt == "bot_header" {
				if h.BotHeaders == nil {
					h.BotHeaders = make(http.Header)
				}
				h.BotHeaders.Add(args[0], args[1])
				break
			}
			if h.BotParams == nil {
				h.BotParams = make(map[string]string)
			}
			if _, dup := h.BotParams[args[0]]; dup {
				return d.Errf("bot_param %s already specified", args[0])
			}
			h.BotParams[args[0]] = args[1]

		case "ice_server":
			args := d.RemainingArgs()
			switch len(args) {
			case 1:
				h.ICEServers = append(h.ICEServers, ICEServer{URLs: []string{args[0]}})
			case 3:
				h.ICEServers = append(h.ICEServers, ICEServer{URLs: []string{args[0]}, Username: args[1], Credential: args[2]})
			default:
				return d.Errf("ice_server needs <url> or <url> <user> <credential>")
			}

		case "phone_number_ids":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.PhoneNumberIDs = append(h.PhoneNumberIDs, args...)

		case "public_ip":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, a := range args {
				if err := checkPublicIP(a); err != nil {
					return d.Err(err.Error())
				}
			}
			h.PublicIPs = append(h.PublicIPs, args...)

		case "ice_networks":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, a := range args {
				if err := checkNetwork(a); err != nil {
					return d.Err(err.Error())
				}
			}
			h.ICENetworks = append(h.ICENetworks, args...)

		case "udp_port":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			port, err := strconv.Atoi(v)
			if err == nil {
				err = checkUDPPort(port)
			}
			if err != nil {
				return d.Errf("udp_port %q: must be a port number 0-65535", v)
			}
			h.UDPPort = &port

		case "max_calls":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("max_calls %q: must be a positive integer", v)
			}
			h.MaxCalls = n

		case "max_body_size":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			size, err := humanize.ParseBytes(v)
			if err != nil || size == 0 || size > 1<<40 {
				return d.Errf("max_body_size %q: must be a size such as 1MiB", v)
			}
			h.MaxBodySize = int64(size)

		case "answer_timeout", "accept_timeout", "bot_timeout", "max_connect_age", "ring_timeout":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("%s %q: must be a positive duration such as 5s", opt, v)
			}
			switch opt {
			case "answer_timeout":
				h.AnswerTimeout = caddy.Duration(dur)
			case "accept_timeout":
				h.AcceptTimeout = caddy.Duration(dur)
			case "bot_timeout":
				h.BotTimeout = caddy.Duration(dur)
			case "ring_timeout":
				h.RingTimeout = caddy.Duration(dur)
			default:
				h.MaxConnectAge = caddy.Duration(dur)
			}

		case "cluster":
			h.Cluster = new(ClusterConfig)
			if err := h.Cluster.unmarshalCaddyfile(d); err != nil {
				return err
			}

		default:
			return d.Errf("unrecognized subdirective '%s'", opt)
		}
	}

	for _, req := range []string{"app_secret", "verify_token", "access_token", "bot"} {
		if !seen[req] {
			return d.Errf("%s is required", req)
		}
	}
	if err := checkSampleRate(h.BotProtocol, h.BotSampleRate); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// oneArg reads exactly one argument of the current option into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*API)(nil)
)
