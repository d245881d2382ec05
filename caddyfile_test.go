package whatsappcalls

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

const required = `
	app_secret s
	verify_token v
	access_token a
	bot ws://127.0.0.1:8765/bot
`

func TestUnmarshalCaddyfile(t *testing.T) {
	port0, port40000 := 0, 40000
	tests := []struct {
		name    string
		give    string
		want    Handler
		wantErr string
	}{
		{
			name: "required only",
			give: `whatsapp_calls {` + required + `}`,
			want: Handler{AppSecret: "s", VerifyToken: "v", AccessToken: "a", Bot: "ws://127.0.0.1:8765/bot"},
		},
		{
			name: "repeatable and valued options",
			give: `whatsapp_calls {` + required + `
				phone_number_ids 1 2
				phone_number_ids 3
				bot_protocol vonage
				bot_sample_rate 8000
				udp_port 0
				max_body_size 2KB
				answer_timeout 1m
				bot_param b 2
				bot_param a 1
			}`,
			want: Handler{
				AppSecret: "s", VerifyToken: "v", AccessToken: "a", Bot: "ws://127.0.0.1:8765/bot",
				PhoneNumberIDs: []string{"1", "2", "3"}, BotProtocol: "vonage", BotSampleRate: 8000,
				UDPPort: &port0, MaxBodySize: 2000, AnswerTimeout: caddy.Duration(time.Minute),
				BotParams: map[string]string{"a": "1", "b": "2"},
			},
		},
		{
			name: "udp port",
			give: `whatsapp_calls {` + required + "udp_port 40000\n}",
			want: Handler{AppSecret: "s", VerifyToken: "v", AccessToken: "a", Bot: "ws://127.0.0.1:8765/bot", UDPPort: &port40000},
		},
		{
			name: "call flow options",
			give: `whatsapp_calls {` + required + `
				accept_timeout 3s
				max_connect_age 30s
				biz_opaque_callback_data "{whatsapp.call_id} {whatsapp.from_user_id}"
			}`,
			want: Handler{
				AppSecret: "s", VerifyToken: "v", AccessToken: "a", Bot: "ws://127.0.0.1:8765/bot",
				AcceptTimeout: caddy.Duration(3 * time.Second), MaxConnectAge: caddy.Duration(30 * time.Second),
				BizOpaqueCallbackData: "{whatsapp.call_id} {whatsapp.from_user_id}",
			},
		},
		{name: "max_connect_age negative", give: `whatsapp_calls {` + required + "max_connect_age -5s\n}", wantErr: `max_connect_age "-5s": must be a positive duration`},
		{name: "accept_timeout twice", give: `whatsapp_calls {` + required + "accept_timeout 1s\naccept_timeout 2s\n}", wantErr: "accept_timeout already specified"},
		{name: "biz_opaque_callback_data without value", give: `whatsapp_calls {` + required + "biz_opaque_callback_data\n}", wantErr: "wrong argument count"},
		{name: "same-line argument", give: `whatsapp_calls /x {` + required + `}`, wantErr: "wrong argument count"},
		{name: "missing verify_token", give: "whatsapp_calls {\napp_secret s\naccess_token a\nbot ws://b\n}", wantErr: "verify_token is required"},
		{name: "bot without scheme", give: `whatsapp_calls {` + strings.Replace(required, "ws://", "", 1) + `}`, wantErr: "bot: not a ws:// or wss:// URL"},
		{name: "empty option", give: "whatsapp_calls {\napp_secret\n}", wantErr: "wrong argument count"},
		{name: "duplicate bot_param", give: `whatsapp_calls {` + required + "bot_param a 1\nbot_param a 2\n}", wantErr: "bot_param a already specified"},
		{name: "max_calls zero", give: `whatsapp_calls {` + required + "max_calls 0\n}", wantErr: `max_calls "0": must be a positive integer`},
		{name: "zero body size", give: `whatsapp_calls {` + required + "max_body_size 0\n}", wantErr: "must be a size"},
		{name: "negative port", give: `whatsapp_calls {` + required + "udp_port -1\n}", wantErr: "must be a port number"},
		{name: "phone_number_ids without ids", give: `whatsapp_calls {` + required + "phone_number_ids\n}", wantErr: "wrong argument count"},
		{name: "ice_server two args", give: `whatsapp_calls {` + required + "ice_server turn:x u\n}", wantErr: "ice_server needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Handler
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.give))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.wantErr)) {
					t.Fatalf("UnmarshalCaddyfile(%q) error = %v; want it to contain %q", tt.give, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile(%q) error = %v", tt.give, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("UnmarshalCaddyfile(%q) = %+v; want %+v", tt.give, got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	valid := func() Handler {
		return Handler{AppSecret: "s", VerifyToken: "v", AccessToken: "a", Bot: "wss://b/x", GraphURL: "https://graph.facebook.com"}
	}
	tests := []struct {
		name    string
		modify  func(*Handler)
		wantErr string
	}{
		{"valid", func(*Handler) {}, ""},
		{"no access token", func(h *Handler) { h.AccessToken = "" }, "access_token is required"},
		{"http bot", func(h *Handler) { h.Bot = "http://b" }, `scheme "http" is not ws or wss`},
		{"placeholder scheme", func(h *Handler) { h.Bot = "{env.BOT_SCHEME}://b" }, ""},
		{"vonage 44100", func(h *Handler) { h.BotProtocol = "vonage"; h.BotSampleRate = 44100 }, "must be 8000, 16000 or 24000"},
		{"unknown protocol", func(h *Handler) { h.BotProtocol = "sip" }, "must be twilio or vonage"},
		{"bad public ip", func(h *Handler) { h.PublicIPs = []string{"x"} }, "not an IP address"},
		{"bad graph url", func(h *Handler) { h.GraphURL = "ftp://x" }, "not an http(s) URL"},
		{"negative max_connect_age", func(h *Handler) { h.MaxConnectAge = -1 }, "max_connect_age: must be a positive duration"},
		{"negative accept_timeout", func(h *Handler) { h.AcceptTimeout = -1 }, "accept_timeout: must be a positive duration"},
		{"callback data over 512", func(h *Handler) { h.BizOpaqueCallbackData = strings.Repeat("x", 513) }, "biz_opaque_callback_data is 513 characters"},
		{"callback data of 512", func(h *Handler) { h.BizOpaqueCallbackData = strings.Repeat("ü", 512) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := valid()
			tt.modify(&h)
			err := h.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v; want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestResolveSecretNamesTheVariable(t *testing.T) {
	t.Setenv("WA_TEST_SECRET", "")
	t.Setenv("WA_TEST_SET", "s3cr3t-value")
	tests := []struct {
		name, give, wantErr string
	}{
		{"unset env", "{env.WA_TEST_UNSET_VARIABLE}", "app_secret: {env.WA_TEST_UNSET_VARIABLE} is not set"},
		{"empty env", "{env.WA_TEST_SECRET}", "app_secret: {env.WA_TEST_SECRET} is empty"},
		{"unknown placeholder", "s3cr3t-{nope}", "app_secret: {nope} is not a known placeholder"},
		{"per-call placeholder", "{whatsapp.call_id}", "app_secret: {whatsapp.call_id} is a per-call placeholder"},
		{"request placeholder", "{http.request.host}", "app_secret: {http.request.host} is a request placeholder"},
		{"missing", "", "app_secret is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := resolveSecret("app_secret", tt.give)
			if err == nil || err.Error() != tt.wantErr && !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("resolveSecret(%q) = %v; want %q", tt.give, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("resolveSecret(%q) error %q echoes the value", tt.give, err)
			}
		})
	}
	for give, want := range map[string]string{"plain": "plain", "{env.WA_TEST_SET}": "s3cr3t-value", `a\{b\}`: "a{b}"} {
		got, err := resolveSecret("app_secret", give)
		if err != nil || got != want {
			t.Errorf("resolveSecret(%q) = %q, %v; want %q, nil", give, got, err, want)
		}
	}
}

func TestUnmarshalAPICaddyfile(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    API
		wantErr string
	}{
		{name: "token", give: "whatsapp_calls_api {\n token {env.T}\n}", want: API{Token: "{env.T}"}},
		{
			name: "token and twilio", give: "whatsapp_calls_api {\n token t\n twilio_auth_token {env.TW}\n}",
			want: API{Token: "t", TwilioAuthToken: "{env.TW}"},
		},
		{name: "no token", give: "whatsapp_calls_api {\n twilio_auth_token x\n}", wantErr: "token is required"},
		{name: "no block", give: `whatsapp_calls_api`, wantErr: "token is required"},
		{name: "argument", give: "whatsapp_calls_api /x {\n token t\n}", wantErr: "wrong argument count"},
		{name: "duplicate", give: "whatsapp_calls_api {\n token t\n token u\n}", wantErr: "token already specified"},
		{name: "two values", give: "whatsapp_calls_api {\n token t u\n}", wantErr: "wrong argument count"},
		{name: "unknown", give: "whatsapp_calls_api {\n bearer t\n}", wantErr: "unrecognized subdirective 'bearer'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got API
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.give))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("UnmarshalCaddyfile(%q) = %v; want error containing %q", tt.give, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile(%q) = %v; want nil", tt.give, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("UnmarshalCaddyfile(%q) = %+v; want %+v", tt.give, got, tt.want)
			}
		})
	}
}
