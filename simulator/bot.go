package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/coder/websocket"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Bot{})
}

// Bot modes.
const (
	// ModeEcho plays back what the caller says after Delay.
	ModeEcho = "echo"
	// ModeTone plays a beep pattern at Frequency.
	ModeTone = "tone"
)

// Bot protocols (dialects). They are the values of whatsapp_calls'
// bot_protocol, plus auto.
const (
	// ProtocolAuto detects the dialect from the first message.
	ProtocolAuto = "auto"
	// ProtocolTwilio is Twilio bidirectional Media Streams (8 kHz mu-law).
	ProtocolTwilio = "twilio"
	// ProtocolVonage is the Vonage WebSocket dialect (binary L16 PCM).
	ProtocolVonage = "vonage"
)

const (
	defaultBotDelay     = 300 * time.Millisecond
	defaultFrequency    = 440.0
	defaultMarkInterval = time.Second
	// botHistory bounds how many finished calls the bot remembers.
	botHistory = 1000
	// botReadLimit caps one WebSocket message from the peer.
	botReadLimit = 1 << 20
)

// Bot is a demo voice bot: a WebSocket server that speaks the twilio and
// vonage dialects of whatsapp_calls from the bot's side. Point whatsapp_calls'
// `bot` at the route that serves it.
//
// In echo mode it plays the caller's audio back after Delay, so that callers
// hear themselves; in tone mode it plays a beep pattern. After every
// MarkInterval of audio it sends a mark (twilio `mark`, vonage `notify`) and
// counts the marks echoed back. A DTMF press of ClearDigit makes it send
// `clear`; a press of HangupDigit, or HangupAfter elapsing, makes it close the
// WebSocket, which hangs up the call.
//
// It records every call (DTMF digits, frames and marks in and out, whether
// `stop` arrived) and serves that record as JSON on GET requests whose path
// ends in /calls, and through [Bot.Calls]. Other non-WebSocket requests pass
// to the next handler. A config reload or stop closes the bot's live
// connections, which hangs up their calls.
type Bot struct {
	// Mode is `echo` or `tone`. Default: echo.
	Mode string `json:"mode,omitempty"`

	// Protocol is the dialect the bot accepts: `twilio`, `vonage`, or `auto`
	// to detect it from the first message. Default: auto.
	Protocol string `json:"protocol,omitempty"`

	// Delay is how long echo mode holds the caller's audio before playing it
	// back. Default: 300ms.
	Delay caddy.Duration `json:"delay,omitempty"`

	// Frequency is the tone mode's beep frequency in Hz. Default: 440.
	Frequency float64 `json:"frequency,omitempty"`

	// HangupDigit is a DTMF key (0-9, *, #, A-D) that makes the bot close
	// the WebSocket, hanging up the call. Default: none.
	HangupDigit string `json:"hangup_digit,omitempty"`

	// ClearDigit is a DTMF key that makes the bot drop the audio it holds
	// and send `clear` (barge-in). Default: none.
	ClearDigit string `json:"clear_digit,omitempty"`

	// HangupAfter makes the bot hang up this long after the stream starts.
	// Default: 0 (never).
	HangupAfter caddy.Duration `json:"hangup_after,omitempty"`

	// MarkInterval is how much audio the bot sends between two marks.
	// Default: 1s.
	MarkInterval caddy.Duration `json:"mark_interval,omitempty"`

	logger *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
	reg    *botRegistry
}

// botRegistry tracks a Bot's connections and finished calls. It lives
// behind a pointer so that Bot stays copyable for CaddyModule.
type botRegistry struct {
	mu      sync.Mutex
	closed  bool
	conns   map[*botConn]struct{}
	history []CallRecord // ring of finished calls, oldest at histPos when full
	histPos int
	wg      sync.WaitGroup
}

// CaddyModule returns the Caddy module information.
func (Bot) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.whatsapp_bot",
		New: func() caddy.Module { return new(Bot) },
	}
}

// Provision applies defaults and prepares the connection registry.
func (b *Bot) Provision(ctx caddy.Context) error {
	return b.provision(ctx, ctx.Logger())
}

// provision does the work of Provision for a plain context, so that tests
// and Go programs can run a Bot outside Caddy.
func (b *Bot) provision(ctx context.Context, logger *zap.Logger) error {
	if logger == nil {
		logger = zap.NewNop()
	}
	b.logger = logger
	if b.Mode == "" {
		b.Mode = ModeEcho
	}
	if b.Protocol == "" {
		b.Protocol = ProtocolAuto
	}
	if b.Delay == 0 {
		b.Delay = caddy.Duration(defaultBotDelay)
	}
	if b.Frequency == 0 {
		b.Frequency = defaultFrequency
	}
	if b.MarkInterval == 0 {
		b.MarkInterval = caddy.Duration(defaultMarkInterval)
	}
	b.ctx, b.cancel = context.WithCancel(ctx)
	b.reg = &botRegistry{conns: make(map[*botConn]struct{})}
	return nil
}

// Validate checks the configuration.
func (b *Bot) Validate() error {
	switch b.Mode {
	case ModeEcho, ModeTone:
	default:
		return fmt.Errorf("bot mode %q: want echo or tone", b.Mode)
	}
	switch b.Protocol {
	case ProtocolAuto, ProtocolTwilio, ProtocolVonage:
	default:
		return fmt.Errorf("bot protocol %q: want auto, twilio or vonage", b.Protocol)
	}
	if b.Delay < 0 || b.HangupAfter < 0 || b.MarkInterval < 0 {
		return fmt.Errorf("bot durations must not be negative")
	}
	if b.Frequency < 20 || b.Frequency > 3800 {
		return fmt.Errorf("bot frequency %g Hz: want 20 to 3800 (8 kHz audio)", b.Frequency)
	}
	for _, d := range []string{b.HangupDigit, b.ClearDigit} {
		if d != "" && !isDTMFDigit(d) {
			return fmt.Errorf("bot digit %q: want one of 0-9 * # A-D", d)
		}
	}
	if b.HangupDigit != "" && b.HangupDigit == b.ClearDigit {
		return fmt.Errorf("bot hangup_digit and clear_digit are both %q", b.HangupDigit)
	}
	return nil
}

// Cleanup closes every live bot connection and waits for their handlers.
func (b *Bot) Cleanup() error {
	if b.cancel == nil {
		return nil
	}
	b.cancel()
	b.reg.mu.Lock()
	b.reg.closed = true
	for c := range b.reg.conns {
		_ = c.ws.CloseNow() // ends the connection's reader, then its writer
	}
	b.reg.mu.Unlock()
	b.reg.wg.Wait()
	return nil
}

// ServeHTTP accepts WebSocket connections from whatsapp_calls, serves the
// call records on GET …/calls, and passes other requests to next.
func (b *Bot) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if isWebSocketUpgrade(r) {
		return b.serveWebSocket(w, r)
	}
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/calls") {
		return b.serveCalls(w, r)
	}
	return next.ServeHTTP(w, r)
}

// Handler returns the provisioned bot as a plain http.Handler, for Go
// programs and tests that run it outside a Caddy route. Requests that are
// neither WebSocket upgrades nor GET …/calls get 404.
func (b *Bot) Handler() http.Handler {
	notFound := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		http.NotFound(w, r)
		return nil
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := b.ServeHTTP(w, r, notFound); err != nil {
			code := http.StatusInternalServerError
			if he := (caddyhttp.HandlerError{}); errors.As(err, &he) {
				code = he.StatusCode
			}
			http.Error(w, http.StatusText(code), code)
		}
	})
}

func (b *Bot) serveWebSocket(w http.ResponseWriter, r *http.Request) error {
	reg := b.reg
	reg.mu.Lock()
	if reg.closed {
		reg.mu.Unlock()
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("bot is shutting down"))
	}
	reg.wg.Add(1)
	reg.mu.Unlock()
	defer reg.wg.Done()

	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		// Accept has written the response already.
		b.logger.Debug("websocket upgrade failed", zap.Error(err))
		return nil
	}
	c := newBotConn(b, ws)
	reg.mu.Lock()
	if reg.closed {
		reg.mu.Unlock()
		_ = ws.CloseNow()
		return nil
	}
	reg.conns[c] = struct{}{}
	reg.mu.Unlock()
	c.run()
	rec := c.snapshot()
	reg.mu.Lock()
	delete(reg.conns, c)
	if len(reg.history) < botHistory {
		reg.history = append(reg.history, rec)
	} else {
		reg.history[reg.histPos] = rec
		reg.histPos = (reg.histPos + 1) % botHistory
	}
	reg.mu.Unlock()
	b.logger.Info("bot call ended",
		zap.String("call_id", rec.CallID),
		zap.String("protocol", rec.Protocol),
		zap.String("ended_by", rec.EndedBy),
		zap.Int64("frames_in", rec.FramesIn),
		zap.Int64("frames_out", rec.FramesOut),
		zap.Int("digits", len(rec.Digits)))
	return nil
}

func (b *Bot) serveCalls(w http.ResponseWriter, r *http.Request) error {
	calls := b.Calls()
	if id := r.URL.Query().Get("call_id"); id != "" {
		calls = slices.DeleteFunc(calls, func(c CallRecord) bool { return c.CallID != id })
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(struct {
		Calls []CallRecord `json:"calls"`
	}{calls})
}

// Calls returns a snapshot of the live calls and of the last finished ones
// (up to 1000), ordered by start time.
func (b *Bot) Calls() []CallRecord {
	reg := b.reg
	if reg == nil {
		return nil
	}
	reg.mu.Lock()
	out := make([]CallRecord, 0, len(reg.conns)+len(reg.history))
	out = append(out, reg.history...)
	live := make([]*botConn, 0, len(reg.conns))
	for c := range reg.conns {
		live = append(live, c)
	}
	reg.mu.Unlock()
	for _, c := range live {
		out = append(out, c.snapshot())
	}
	slices.SortStableFunc(out, func(a, b CallRecord) int { return a.Started.Compare(b.Started) })
	return out
}

// Call returns the record of the most recent call with the given WhatsApp
// call id.
func (b *Bot) Call(callID string) (CallRecord, bool) {
	calls := b.Calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].CallID == callID {
			return calls[i], true
		}
	}
	return CallRecord{}, false
}

// CallRecord is what the bot saw of one WebSocket connection.
type CallRecord struct {
	// CallID is the WhatsApp call id from start.customParameters
	// (twilio) or websocket:connected (vonage); empty until then.
	CallID string `json:"call_id"`
	// Protocol is the detected dialect, twilio or vonage.
	Protocol string `json:"protocol"`
	// StreamSID is the twilio stream id.
	StreamSID string `json:"stream_sid,omitempty"`
	// CallSID is the twilio call id.
	CallSID string `json:"call_sid,omitempty"`
	// From is the caller's WhatsApp id.
	From string `json:"from,omitempty"`
	// To is the business number.
	To string `json:"to,omitempty"`
	// Parameters holds every custom parameter (twilio) or extra
	// websocket:connected field (vonage).
	Parameters map[string]string `json:"parameters,omitempty"`
	// SampleRate is the audio rate in Hz.
	SampleRate int `json:"sample_rate,omitempty"`
	// Started is when the WebSocket was accepted.
	Started time.Time `json:"started"`
	// Ended is when it closed; zero while the call is live.
	Ended time.Time `json:"ended,omitzero"`
	// Active is true while the WebSocket is open.
	Active bool `json:"active"`
	// Digits lists the DTMF keys received, in order.
	Digits string `json:"digits"`
	// FramesIn counts audio messages received.
	FramesIn int64 `json:"frames_in"`
	// BytesIn counts audio bytes received (mu-law or L16).
	BytesIn int64 `json:"bytes_in"`
	// LoudFramesIn counts audio messages whose peak exceeds about -30 dBFS.
	LoudFramesIn int64 `json:"loud_frames_in"`
	// FramesOut counts audio messages sent.
	FramesOut int64 `json:"frames_out"`
	// MarksSent counts marks (twilio) or notify actions (vonage) sent.
	MarksSent int64 `json:"marks_sent"`
	// MarksEchoed counts marks or websocket:notify events received back.
	MarksEchoed int64 `json:"marks_echoed"`
	// LastMark is the name of the last mark echoed back.
	LastMark string `json:"last_mark,omitempty"`
	// ClearsSent counts clear messages sent.
	ClearsSent int64 `json:"clears_sent"`
	// ClearsAcked counts websocket:cleared events received (vonage).
	ClearsAcked int64 `json:"clears_acked"`
	// Stopped is true once a twilio stop event arrived.
	Stopped bool `json:"stopped"`
	// EndedBy says who closed the WebSocket: peer (whatsapp_calls),
	// hangup_digit, hangup_after, shutdown, or error.
	EndedBy string `json:"ended_by,omitempty"`
	// CloseCode is the WebSocket close status, when one was exchanged.
	CloseCode int `json:"close_code,omitempty"`
	// Error describes a protocol error, if any.
	Error string `json:"error,omitempty"`
}

func isWebSocketUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		headerHasToken(r.Header, "Connection", "upgrade")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func isDTMFDigit(d string) bool {
	return len(d) == 1 && strings.Contains("0123456789*#ABCD", d)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Bot)(nil)
	_ caddy.Validator             = (*Bot)(nil)
	_ caddy.CleanerUpper          = (*Bot)(nil)
	_ caddyhttp.MiddlewareHandler = (*Bot)(nil)
)
