package media

import (
	"errors"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// Sentinel errors returned (wrapped) by this package. Match them with errors.Is.
var (
	// ErrBadOffer means the remote SDP offer could not be used: it did not
	// parse, offered no Opus audio, or pion refused it.
	ErrBadOffer = errors.New("unusable sdp offer")

	// ErrBadAnswer means the SDP answer to our offer (a business-initiated
	// call) could not be used: it did not parse, had no Opus audio, or
	// pion refused it.
	ErrBadAnswer = errors.New("unusable sdp answer")

	// ErrBotUnavailable means the bot WebSocket could not be dialed or did not
	// complete its opening handshake. It wraps the dial error.
	ErrBotUnavailable = errors.New("bot unavailable")

	// ErrBotHangup means the bot ended the call by closing its WebSocket.
	// It is bot.ErrBotHangup, so the reason reads "bot hung up: <close
	// status>" once, not twice.
	ErrBotHangup = bot.ErrBotHangup

	// ErrPlayoutOverflow means the bot queued more audio ahead of the caller
	// than the playout limit (DefaultPlayoutLimit, SessionConfig.PlayoutLimit).
	// The Session ends the call with ErrBotFailed wrapping it.
	ErrPlayoutOverflow = errors.New("bot audio queue over its limit")

	// ErrBotFailed means reading from or writing to the bot failed (for
	// example a write timed out because the bot stopped reading).
	ErrBotFailed = errors.New("bot connection failed")

	// ErrMediaFailed means the media path to the caller failed: ICE failed,
	// the connection stayed disconnected longer than the grace period, DTLS
	// failed, or consent was lost.
	ErrMediaFailed = errors.New("media connection failed")

	// ErrClosed means the session was closed by its owner (Session.Close),
	// or an operation was attempted on a closed Engine or Session.
	ErrClosed = errors.New("session closed")
)
