package simulator

import "errors"

// Errors returned by the simulator and the demo bot. Callers match them with
// errors.Is.
var (
	// ErrUnknownCall means that no call with the given id exists.
	ErrUnknownCall = errors.New("unknown call")

	// ErrCallEnded means that the call already reached a final state.
	ErrCallEnded = errors.New("call already ended")

	// ErrWebhookStatus means that the webhook endpoint answered a delivery
	// with a status other than 200 OK.
	ErrWebhookStatus = errors.New("webhook delivery not acknowledged")

	// ErrBadOffer means that the page sent no usable SDP offer.
	ErrBadOffer = errors.New("invalid sdp offer")

	// ErrUnknownDialect means that the bot could not tell which dialect a
	// WebSocket client speaks.
	ErrUnknownDialect = errors.New("unknown bot dialect")
)
