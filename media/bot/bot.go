// Package bot is the voice-bot side of the media bridge: a WebSocket client
// that streams one call's audio to a bot and reads the bot's audio back, in
// one of two wire dialects that existing bots already speak.
//
//   - Twilio ("twilio"): Twilio bidirectional Media Streams, JSON text frames
//     with base64 8 kHz mu-law audio
//     (https://www.twilio.com/docs/voice/media-streams/websocket-messages).
//   - Vonage ("vonage"): binary 16-bit little-endian linear PCM at 8, 16 or
//     24 kHz with JSON control messages
//     (https://developer.vonage.com/en/voice/voice-api/concepts/websockets).
//
// Dial connects (retrying briefly while the bot starts), then sends the
// dialect's opening messages. A Conn then runs one reader and one writer
// goroutine with bounded queues: the socket is read continuously, so a clear
// or a mark never waits behind unread audio, and writes (WriteAudio,
// WriteDTMF, WriteMarkPlayed, WriteCleared) are queued and never block the
// caller. One goroutine takes events with ReadEvent; Close ends the stream
// politely and waits for everything the Conn started.
//
// The package knows nothing about Caddy or WebRTC: audio crosses its API as
// 16-bit linear PCM at the connection's sample rate, one 20 ms frame per
// WriteAudio.
package bot

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Protocol names a bot wire dialect.
type Protocol string

// The supported dialects.
const (
	// Twilio is Twilio's bidirectional Media Streams protocol: JSON text
	// frames, base64 mu-law audio at 8 kHz. It is the default.
	Twilio Protocol = "twilio"
	// Vonage is Vonage's WebSocket protocol: binary 16-bit little-endian PCM
	// frames at 8, 16 or 24 kHz, JSON text frames for control.
	Vonage Protocol = "vonage"
)

// ParseProtocol returns the Protocol named by s, ignoring case and
// surrounding spaces. The empty string means the default, Twilio. Any other
// name returns an error wrapping ErrUnknownProtocol.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", string(Twilio):
		return Twilio, nil
	case string(Vonage):
		return Vonage, nil
	}
	return "", fmt.Errorf("%w %q (want %q or %q)", ErrUnknownProtocol, s, Twilio, Vonage)
}

// Param is one extra parameter sent to the bot at the start of the stream:
// a start.customParameters entry (twilio) or a field of the
// websocket:connected message (vonage).
type Param struct {
	Name, Value string
}

// CallInfo identifies the WhatsApp call a bot connection belongs to. The
// values are sent to the bot in the opening messages.
type CallInfo struct {
	// CallID is the WhatsApp call id (wacid...). The Twilio dialect derives
	// its streamSid and callSid from it.
	CallID string
	// From is the caller's WhatsApp number (wa_id). Since 2026 it may be
	// empty for a caller who has a username; FromUserID is then set.
	From string
	// FromUserID is the caller's business-scoped user id (BSUID), if sent.
	FromUserID string
	// FromParentUserID is the caller's portfolio-level user id, if sent.
	FromParentUserID string
	// Username is the caller's WhatsApp username, if they have one.
	Username string
	// To is the business's display phone number.
	To string
	// PhoneNumberID is the business phone number id. The Twilio dialect
	// derives its accountSid from it.
	PhoneNumberID string
	// CallerName is the caller's WhatsApp profile name, if known.
	CallerName string
	// DeeplinkPayload is the payload of the call deep link the caller
	// tapped, if any.
	DeeplinkPayload string
	// CTAPayload is the payload of the call button the caller tapped, if
	// any.
	CTAPayload string
}

// Defaults applied by Dial to zero Config fields.
const (
	// DefaultDialTimeout is the default whole dial budget, retries included.
	DefaultDialTimeout = 3 * time.Second
	// DefaultReadLimit is the default largest message accepted from the bot.
	DefaultReadLimit = 1 << 20
	// DefaultWriteTimeout is the default limit on one write to the bot.
	DefaultWriteTimeout = 2 * time.Second
)

// Config configures Dial.
type Config struct {
	// URL is the bot's ws:// or wss:// URL, with any placeholders already
	// resolved. Its query string may carry secrets: it never appears in
	// errors or logs.
	URL string
	// Header is added to the WebSocket upgrade request (authentication, for
	// example). A Host entry overrides the request's Host.
	Header http.Header
	// Protocol is the wire dialect. Default: Twilio.
	Protocol Protocol
	// SampleRate is the audio rate on the wire and of every PCM slice that
	// crosses this package's API. Twilio: 8000 only (0 means 8000).
	// Vonage: 8000, 16000 or 24000 (0 means 16000).
	SampleRate int
	// Params are extra start.customParameters (twilio) or extra fields of the
	// websocket:connected message (vonage), sent in order after the built-in
	// ones. A name may not repeat a built-in or another Param.
	Params []Param
	// Call identifies the call to the bot.
	Call CallInfo
	// DialTimeout bounds the whole dial, retries included. Connection
	// errors and 5xx handshake answers are retried with a short backoff (50 ms,
	// doubling, at most 400 ms) until it is spent. Default: 3s.
	DialTimeout time.Duration
	// ReadLimit is the largest message accepted from the bot, in bytes.
	// Default: 1 MiB.
	ReadLimit int64
	// WriteTimeout bounds each write to the bot, so that a bot that stopped
	// reading makes writes fail instead of blocking. A write that times out
	// closes the connection. Default: 2s.
	WriteTimeout time.Duration
	// SigningKey, if set, signs the upgrade request the way Twilio signs its
	// own Media Streams requests: the X-Twilio-Signature header is
	// base64(HMAC-SHA1(SigningKey, URL)), computed over URL exactly as given
	// here (Twilio's scheme for a request without POST parameters). A bot that
	// checks signatures with Twilio's helper libraries then accepts us when
	// SigningKey is its Twilio auth token.
	SigningKey string
	// HTTPClient performs the upgrade request. Default: http.DefaultClient.
	// When its Transport is an *http.Transport (or nil), Dial uses a private
	// clone of it, so that it can close the idle connections that failed
	// attempts leave behind.
	HTTPClient *http.Client
	// Logger receives debug logs. Nil means no logging.
	Logger *zap.Logger
}

// EventKind says what a bot Event carries.
type EventKind int

// The kinds of Event that ReadEvent returns.
const (
	// EventAudio carries bot audio in Event.Audio.
	EventAudio EventKind = iota + 1
	// EventMark asks for Event.Mark to be echoed (WriteMarkPlayed) once the
	// audio received before it has been played to the caller.
	EventMark
	// EventClear asks to drop all queued bot audio at once (barge-in) and
	// then acknowledge it with WriteCleared.
	EventClear
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventAudio:
		return "audio"
	case EventMark:
		return "mark"
	case EventClear:
		return "clear"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one meaningful message from the bot.
type Event struct {
	// Kind says which of the other fields is set.
	Kind EventKind
	// Audio is the bot's audio as 16-bit linear PCM at the connection's
	// sample rate, of any length (not necessarily whole 20 ms frames). It is
	// only valid until the next ReadEvent call.
	Audio []int16
	// Mark is the token to echo with WriteMarkPlayed for an EventMark.
	Mark Mark
}

// Mark is an opaque playback marker from the bot: a Twilio mark name or a
// Vonage notify payload. Echo it with WriteMarkPlayed or WriteCleared on the
// Conn that returned it.
type Mark struct {
	name    string          // twilio: mark.name
	payload json.RawMessage // vonage: the notify payload, owned by the Mark
}

// String returns the mark for logs: the Twilio name or the Vonage payload.
// Bots choose marks freely, so treat the result as bot-supplied text.
func (m Mark) String() string {
	if m.payload != nil {
		return string(m.payload)
	}
	return m.name
}
