package bot

import (
	"fmt"

	"github.com/coder/websocket"
)

// dialect is one bot wire format. A new dialect is one more implementation
// of this interface and a case in newDialect.
//
// The append methods build one outgoing message into dst and return it; only
// the Conn's writer goroutine calls them (opening before it starts), so they
// may use and update state (sequence numbers, scratch buffers) without
// locking. decode is only called by the Conn's reader goroutine and uses
// separate state.
type dialect interface {
	// opening returns the messages sent right after the upgrade, in order.
	opening() []outMessage
	// audioType is the WebSocket message type of audio frames.
	audioType() websocket.MessageType
	// appendAudio appends one 20 ms audio frame message; ms is the frame's
	// media time (see Conn.WriteAudioAt), or -1.
	appendAudio(dst []byte, pcm []int16, ms int64) []byte
	// appendDTMF appends a key press message; digit is already validated
	// and ms is its duration in milliseconds.
	appendDTMF(dst []byte, digit byte, ms int64) []byte
	// appendMarkPlayed appends the message echoing m.
	appendMarkPlayed(dst []byte, m Mark) []byte
	// echoMarksOnClear reports whether pending marks are echoed after a
	// clear (before the appendCleared message, if any).
	echoMarksOnClear() bool
	// appendCleared appends the clear acknowledgement, or returns dst
	// unchanged if the dialect has none.
	appendCleared(dst []byte) []byte
	// appendStop appends the last message before the close frame, or
	// returns dst unchanged if the dialect has none.
	appendStop(dst []byte) []byte
	// decode turns one bot message into an Event. If the message carries
	// nothing to act on, it returns a non-empty reason instead. Event.Audio
	// may point into decoder state that the next decode overwrites.
	decode(typ websocket.MessageType, msg []byte) (ev Event, ignored string)
}

// outMessage is one prepared WebSocket message.
type outMessage struct {
	typ  websocket.MessageType
	data []byte
}

// newDialect validates the dialect part of cfg (sample rate, parameter
// names) and returns the dialect with the effective sample rate.
func newDialect(cfg *Config) (dialect, int, error) {
	switch cfg.Protocol {
	case Twilio:
		rate := cfg.SampleRate
		if rate == 0 {
			rate = twilioSampleRate
		}
		if rate != twilioSampleRate {
			return nil, 0, fmt.Errorf("%w: %d Hz for %s (want %d)", ErrSampleRate, cfg.SampleRate, Twilio, twilioSampleRate)
		}
		if err := checkParams(cfg.Params, twilioBuiltinParams); err != nil {
			return nil, 0, err
		}
		return newTwilio(cfg.Call, cfg.Params), rate, nil
	case Vonage:
		rate := cfg.SampleRate
		switch rate {
		case 0:
			rate = vonageDefaultSampleRate
		case 8000, 16000, 24000:
		default:
			return nil, 0, fmt.Errorf("%w: %d Hz for %s (want 8000, 16000 or 24000)", ErrSampleRate, cfg.SampleRate, Vonage)
		}
		if err := checkParams(cfg.Params, vonageBuiltinParams); err != nil {
			return nil, 0, err
		}
		return newVonage(rate, cfg.Call, cfg.Params), rate, nil
	}
	return nil, 0, fmt.Errorf("%w %q", ErrUnknownProtocol, cfg.Protocol)
}

// checkParams rejects empty names and names that repeat a built-in or an
// earlier Param: a JSON object with duplicate keys means different things to
// different bots.
func checkParams(params []Param, builtin []string) error {
	seen := make(map[string]bool, len(params)+len(builtin))
	for _, name := range builtin {
		seen[name] = true
	}
	for _, p := range params {
		if p.Name == "" {
			return fmt.Errorf("%w: empty name", ErrInvalidParam)
		}
		if seen[p.Name] {
			return fmt.Errorf("%w: %q is already set", ErrInvalidParam, p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

// validDigit normalizes a DTMF digit to its canonical byte (0-9, *, #, A-D).
func validDigit(digit string) (byte, bool) {
	if len(digit) != 1 {
		return 0, false
	}
	d := digit[0]
	switch {
	case d >= '0' && d <= '9', d == '*', d == '#', d >= 'A' && d <= 'D':
		return d, true
	case d >= 'a' && d <= 'd':
		return d - 'a' + 'A', true
	}
	return 0, false
}
