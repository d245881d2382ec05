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
