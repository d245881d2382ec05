package bot

import "fmt"

// identityParamNames are the names of the optional caller fields sent to the
// bot, in the order they are sent: start.customParameters (twilio) and
// fields of websocket:connected (vonage).
var identityParamNames = []string{"caller_name", "from_user_id", "from_parent_user_id", "username", "deeplink_payload", "cta_payload"}

// identityParams returns the optional caller fields that are set, in the
// order of identityParamNames. A field is sent only when WhatsApp sent it,
// so bots that predate usernames see the messages they always saw.
func (c CallInfo) identityParams() []Param {
	values := [...]string{c.CallerName, c.FromUserID, c.FromParentUserID, c.Username, c.DeeplinkPayload, c.CTAPayload}
	var out []Param
	for i, v := range values {
		if v != "" {
			out = append(out, Param{Name: identityParamNames[i], Value: v})
		}
	}
	return out
}

// CheckParams returns the error Dial would return for params in protocol's
// opening messages: one wrapping ErrInvalidParam for an empty name or a
// name that repeats a built-in field or another Param. Configs can call it
// at load time, so that a clash fails the config rather than every call.
func CheckParams(protocol Protocol, params []Param) error {
	switch protocol {
	case Vonage:
		return checkParams(params, vonageBuiltinParams)
	case Twilio, "":
		return checkParams(params, twilioBuiltinParams)
	}
	return fmt.Errorf("%w %q", ErrUnknownProtocol, protocol)
}
