package bot

import (
	"context"
	"errors"
	"testing"
)

// TestIdentityParamsReserved checks that a configured parameter cannot
// take the name of a caller field, in either dialect: the bot would get a
// JSON object with a duplicate key.
func TestIdentityParamsReserved(t *testing.T) {
	for _, protocol := range []Protocol{Twilio, Vonage} {
		for _, name := range identityParamNames {
			t.Run(string(protocol)+"/"+name, func(t *testing.T) {
				cfg := Config{URL: "ws://127.0.0.1:1/bot", Protocol: protocol, Params: []Param{{name, "x"}}}
				c, err := Dial(context.Background(), cfg)
				if !errors.Is(err, ErrInvalidParam) {
					if c != nil {
						c.Close()
					}
					t.Fatalf("Dial with param %q = %v; want %v", name, err, ErrInvalidParam)
				}
			})
		}
	}
}

func TestCheckParams(t *testing.T) {
	tests := []struct {
		name     string
		protocol Protocol
		params   []Param
		wantErr  error
	}{
		{"none", Twilio, nil, nil},
		{"own names", Vonage, []Param{{"tenant", "a"}, {"lang", "fr"}}, nil},
		{"twilio built-in", Twilio, []Param{{"from_number", "x"}}, ErrInvalidParam},
		{"caller field", Twilio, []Param{{"username", "x"}}, ErrInvalidParam},
		{"vonage built-in", Vonage, []Param{{"content-type", "x"}}, ErrInvalidParam},
		{"vonage caller field", Vonage, []Param{{"cta_payload", "x"}}, ErrInvalidParam},
		{"twilio name fine for vonage", Vonage, []Param{{"from_number", "x"}}, nil},
		{"repeated", Twilio, []Param{{"a", "1"}, {"a", "2"}}, ErrInvalidParam},
		{"unknown protocol", "plivo", nil, ErrUnknownProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckParams(tt.protocol, tt.params); !errors.Is(err, tt.wantErr) {
				t.Errorf("CheckParams(%q, %v) = %v; want %v", tt.protocol, tt.params, err, tt.wantErr)
			}
		})
	}
}

func TestTwilioSIDsMatchStart(t *testing.T) {
	tw := newTwilio(CallInfo{CallID: "wacid.HBgLMTU1", PhoneNumberID: "106540352242922"}, nil)
	if got := TwilioCallSID("wacid.HBgLMTU1"); got != tw.callSID || len(got) != 34 {
		t.Errorf("TwilioCallSID() = %q; want %q (34 characters)", got, tw.callSID)
	}
	if got := TwilioAccountSID("106540352242922"); got != tw.accountSID || len(got) != 34 {
		t.Errorf("TwilioAccountSID() = %q; want %q", got, tw.accountSID)
	}
}
