package simulator

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("whatsapp_simulator", parseSimulator)
	httpcaddyfile.RegisterDirectiveOrder("whatsapp_simulator", httpcaddyfile.Before, "file_server")
	httpcaddyfile.RegisterHandlerDirective("whatsapp_bot", parseBot)
	httpcaddyfile.RegisterDirectiveOrder("whatsapp_bot", httpcaddyfile.Before, "reverse_proxy")
}

func parseSimulator(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(Simulator)
	if err := s.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return s, nil
}

func parseBot(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	b := new(Bot)
	if err := b.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return b, nil
}

// UnmarshalCaddyfile sets up the simulator from Caddyfile tokens. Syntax:
//
//	whatsapp_simulator [<matcher>] {
//		webhook              <url>       # required: the whatsapp_calls route
//		app_secret           <secret>    # required: signs the webhooks
//		access_token         <token>     # required: the fake Graph API's bearer token
//		phone_number_id      <id>        # default 100000000000001
//		display_phone_number <number>    # default 15550001111
//		caller               <wa_id>     # default 15551234567
//		caller_name          <name>      # default Simulator
//		public_url           <url>       # logged at startup; default the webhook's origin
//		allow_remote                     # serve clients not on loopback; default loopback only
//	}
func (s *Simulator) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var dst *string
		switch d.Val() {
		case "webhook":
			dst = &s.WebhookURL
		case "app_secret":
			dst = &s.AppSecret
		case "access_token":
			dst = &s.AccessToken
		case "phone_number_id":
			dst = &s.PhoneNumberID
		case "display_phone_number":
			dst = &s.DisplayPhoneNumber
		case "caller":
			dst = &s.Caller
		case "caller_name":
			dst = &s.CallerName
		case "public_url":
			dst = &s.PublicURL
		case "allow_remote":
			if d.NextArg() {
				return d.ArgErr()
			}
			if s.AllowRemote {
				return d.Err("allow_remote already specified")
			}
			s.AllowRemote = true
			continue
		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
		opt := d.Val()
		val, err := singleArg(d)
		if err != nil {
			return err
		}
		if err := setOnce(d, opt, dst, val); err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the bot from Caddyfile tokens. Syntax:
//
//	whatsapp_bot [<matcher>] [echo|tone] {
//		mode          echo|tone           # default echo
//		protocol      auto|twilio|vonage  # default auto
//		delay         <duration>          # echo delay; default 300ms
//		frequency     <hz>                # tone mode beep; default 440
//		hangup_digit  <digit>             # DTMF key that makes the bot hang up
//		clear_digit   <digit>             # DTMF key that makes the bot send clear
//		                                  # (quote "#": a bare # starts a comment)
//		hangup_after  <duration>          # hang up this long after the start
//		mark_interval <duration>          # audio between two marks; default 1s
//	}
func (b *Bot) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		b.Mode = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		opt := d.Val()
		val, err := singleArg(d)
		if err != nil {
			return err
		}
		switch opt {
		case "mode":
			err = setOnce(d, opt, &b.Mode, val)
		case "protocol":
			err = setOnce(d, opt, &b.Protocol, val)
		case "hangup_digit":
			err = setOnce(d, opt, &b.HangupDigit, val)
		case "clear_digit":
			err = setOnce(d, opt, &b.ClearDigit, val)
		case "frequency":
			if b.Frequency != 0 {
				return d.Err("frequency already specified")
			}
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || f <= 0 {
				return d.Errf("bad frequency '%s': want a positive number of Hz", val)
			}
			b.Frequency = f
		case "delay", "hangup_after", "mark_interval":
			dst := map[string]*caddy.Duration{
				"delay":         &b.Delay,
				"hangup_after":  &b.HangupAfter,
				"mark_interval": &b.MarkInterval,
			}[opt]
			if *dst != 0 {
				return d.Errf("%s already specified", opt)
			}
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("bad %s '%s': want a positive duration", opt, val)
			}
			*dst = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized subdirective '%s'", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// singleArg reads the one argument of the current option.
func singleArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	val := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return val, nil
}

// setOnce stores val in *dst, refusing a repeated option.
func setOnce(d *caddyfile.Dispenser, opt string, dst *string, val string) error {
	if *dst != "" {
		return d.Errf("%s already specified", opt)
	}
	*dst = val
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Simulator)(nil)
	_ caddyfile.Unmarshaler = (*Bot)(nil)
)
