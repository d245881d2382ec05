package simulator

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestSimulatorUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    Simulator
		wantErr string
	}{
		{
			name: "all options",
			give: `whatsapp_simulator {
				webhook http://localhost:8080/webhook
				app_secret {env.APP_SECRET}
				access_token tok
				phone_number_id 42
				display_phone_number 15550009999
				caller 15557654321
				caller_name "Jane Doe"
				public_url http://localhost:8080/sim/
				allow_remote
			}`,
			want: Simulator{
				WebhookURL: "http://localhost:8080/webhook", AppSecret: "{env.APP_SECRET}", AccessToken: "tok",
				PhoneNumberID: "42", DisplayPhoneNumber: "15550009999", Caller: "15557654321",
				CallerName: "Jane Doe", PublicURL: "http://localhost:8080/sim/", AllowRemote: true,
			},
		},
		{name: "empty", give: `whatsapp_simulator`, want: Simulator{}},
		{name: "inline argument", give: `whatsapp_simulator http://x`, wantErr: "wrong argument count"},
		{name: "missing value", give: "whatsapp_simulator {\n webhook\n}", wantErr: "wrong argument count"},
		{name: "two values", give: "whatsapp_simulator {\n caller 1 2\n}", wantErr: "wrong argument count"},
		{name: "duplicate", give: "whatsapp_simulator {\n caller 1\n caller 2\n}", wantErr: "caller already specified"},
		{name: "unknown", give: "whatsapp_simulator {\n callee 1\n}", wantErr: "unrecognized subdirective 'callee'"},
		{name: "allow_remote with a value", give: "whatsapp_simulator {\n allow_remote yes\n}", wantErr: "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Simulator
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.give))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("UnmarshalCaddyfile(%q) = %v; want error containing %q", tt.give, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile(%q) = %v", tt.give, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("UnmarshalCaddyfile(%q) = %+v; want %+v", tt.give, got, tt.want)
			}
		})
	}
}

func TestBotUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    Bot
		wantErr string
	}{
		{name: "bare", give: `whatsapp_bot`, want: Bot{}},
		{name: "inline mode", give: `whatsapp_bot tone`, want: Bot{Mode: ModeTone}},
		{
			name: "all options",
			give: `whatsapp_bot {
				mode echo
				protocol vonage
				delay 500ms
				frequency 1000
				hangup_digit *
				clear_digit "#"
				hangup_after 1m
				mark_interval 2s
			}`,
			want: Bot{
				Mode: ModeEcho, Protocol: ProtocolVonage, Delay: caddy.Duration(500 * time.Millisecond),
				Frequency: 1000, HangupDigit: "*", ClearDigit: "#",
				HangupAfter: caddy.Duration(time.Minute), MarkInterval: caddy.Duration(2 * time.Second),
			},
		},
		{name: "two inline args", give: `whatsapp_bot echo tone`, wantErr: "wrong argument count"},
		{name: "mode twice", give: "whatsapp_bot echo {\n mode tone\n}", wantErr: "mode already specified"},
		{name: "delay twice", give: "whatsapp_bot {\n delay 1s\n delay 2s\n}", wantErr: "delay already specified"},
		{name: "bad delay", give: "whatsapp_bot {\n delay soon\n}", wantErr: "bad delay 'soon'"},
		{name: "negative delay", give: "whatsapp_bot {\n delay -1s\n}", wantErr: "bad delay"},
		{name: "bad frequency", give: "whatsapp_bot {\n frequency high\n}", wantErr: "bad frequency"},
		{name: "missing value", give: "whatsapp_bot {\n hangup_digit\n}", wantErr: "wrong argument count"},
		{name: "unquoted hash is a comment", give: "whatsapp_bot {\n clear_digit #\n}", wantErr: "wrong argument count"},
		{name: "unknown", give: "whatsapp_bot {\n volume 11\n}", wantErr: "unrecognized subdirective 'volume'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Bot
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.give))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("UnmarshalCaddyfile(%q) = %v; want error containing %q", tt.give, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile(%q) = %v", tt.give, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("UnmarshalCaddyfile(%q) = %+v; want %+v", tt.give, got, tt.want)
			}
		})
	}
}

func TestSimulatorProvisionPlaceholders(t *testing.T) {
	t.Setenv("SIM_TEST_SECRET", "s3cret")
	t.Setenv("SIM_TEST_TOKEN", "t0ken")
	tests := []struct {
		name       string
		give       Simulator
		wantSecret string
		wantErr    string
	}{
		{
			name:       "set",
			give:       Simulator{WebhookURL: "http://localhost:1/webhook", AppSecret: "{env.SIM_TEST_SECRET}", AccessToken: "{env.SIM_TEST_TOKEN}"},
			wantSecret: "s3cret",
		},
		{
			name:    "unset",
			give:    Simulator{WebhookURL: "http://localhost:1/webhook", AppSecret: "{env.SIM_TEST_UNSET}", AccessToken: "x"},
			wantErr: "whatsapp_simulator app_secret",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			s := tt.give
			err := s.Provision(ctx)
			defer s.Cleanup()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Provision() = %v; want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Provision() = %v", err)
			}
			if s.AppSecret != tt.wantSecret || s.AccessToken != "t0ken" {
				t.Errorf("secrets not resolved from the environment")
			}
		})
	}
}
