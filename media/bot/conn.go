package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// closeTimeout bounds Close's wait for the bot to answer our close frame.
const closeTimeout = time.Second

// Conn is one call's WebSocket connection to the bot, made by Dial.
//
// ReadEvent must be called by one goroutine at a time. The Write methods may
// be called from any number of goroutines: they are serialized, so sequence
// numbers go out in order. Close may be called at any time, from any
// goroutine, and more than once; it must be called once the Conn is no longer
// needed, since a Conn owns a goroutine.
type Conn struct {
	ws           *websocket.Conn
	d            dialect
	protocol     Protocol
	rate         int
	frame        int // samples per 20 ms
	writeTimeout time.Duration
	readLimit    int64
	tracker      *connTracker
	logger       *zap.Logger

	wmu  sync.Mutex // serializes writes; guards wbuf and the dialect's write state
	wbuf []byte

	// watchdog cuts the connection when a write makes no progress within
	// writeTimeout. It is armed only during a write, with wmu held, and the
	// writer waits for it on watchdogFired, so it never outlives wmu. (A
	// per-write context would cost a dozen allocations per frame.)
	watchdog      *time.Timer
	watchdogFired chan struct{}
	// stalled is set by the watchdog before it cuts the connection, so that
	// the read that fails because of the cut reports a write timeout, not a
	// hang-up.
	stalled atomic.Bool

	// The reader goroutine reads one message per request on readReq and
	// answers on readRes. Reads use readCtx, never a caller's context: the
	// WebSocket library closes the connection when a read's context ends,
	// and a caller giving up on one ReadEvent must not end the call. Close
	// cancels readCtx to cut a close handshake the bot does not answer; with
	// tracked network connections (the usual case) it cuts those instead,
	// and readCtx is context.Background(), which costs no allocations.
	readCtx    context.Context
	readCancel context.CancelFunc
	readReq    chan struct{}
	readRes    chan readResult
	rbuf       []byte      // the reader goroutine's message buffer
	readFailed atomic.Bool // a read failed: the connection is gone

	// ReadEvent caller state.
	pending bool  // a request was sent and its result not yet received
	readErr error // the terminal read error, once there is one

	closing   chan struct{} // closed when Close starts
	done      chan struct{} // closed when the WebSocket is closed; ends the reader
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// readResult is one message read by the reader goroutine. data aliases
// Conn.rbuf until the next request.
type readResult struct {
	typ  websocket.MessageType
	data []byte
	err  error
}

func newConn(ws *websocket.Conn, d dialect, rate int, cfg Config, tracker *connTracker, logger *zap.Logger) *Conn {
	readCtx, readCancel := context.Background(), context.CancelFunc(func() {})
	if !tracker.active {
		readCtx, readCancel = context.WithCancel(context.Background())
	}
	c := &Conn{
		ws:            ws,
		d:             d,
		protocol:      cfg.Protocol,
		rate:          rate,
		frame:         rate / 50,
		writeTimeout:  cfg.WriteTimeout,
		readLimit:     cfg.ReadLimit,
		tracker:       tracker,
		logger:        logger,
		wbuf:          make([]byte, 0, 1024),
		watchdogFired: make(chan struct{}, 1),
		readCtx:       readCtx,
		readCancel:    readCancel,
		readReq:       make(chan struct{}),
		readRes:       make(chan readResult),
		rbuf:          make([]byte, 0, 4096),
		closing:       make(chan struct{}),
		done:          make(chan struct{}),
	}
	c.watchdog = time.AfterFunc(time.Hour, c.writeStalled)
	c.watchdog.Stop()
	c.wg.Add(1)
	go c.readLoop()
	return c
}

// writeStalled is the watchdog: it cuts the connection under a stalled
// write, which then fails.
func (c *Conn) writeStalled() {
	c.stalled.Store(true)
	_ = c.ws.CloseNow()
	c.watchdogFired <- struct{}{}
}

// Protocol returns the connection's dialect.
func (c *Conn) Protocol() Protocol { return c.protocol }

// SampleRate returns the audio rate, in Hz, of every PCM slice that crosses
// the Conn: WriteAudio's input and Event.Audio.
func (c *Conn) SampleRate() int { return c.rate }

// FrameSamples returns the number of samples in one 20 ms frame, the exact
// length WriteAudio takes: SampleRate/50.
func (c *Conn) FrameSamples() int { return c.frame }

// StreamSID returns the Twilio streamSid ("MZ" and 32 hex digits) sent to
// the bot, or "" for the Vonage dialect.
func (c *Conn) StreamSID() string {
	if t, ok := c.d.(*twilio); ok {
		return t.streamSID
	}
	return ""
}

// ReadEvent blocks until the next meaningful message from the bot and
// returns it. Messages that carry nothing to act on (unknown events, binary
// frames in the Twilio dialect, invalid JSON, empty audio) are skipped. The
// returned Event.Audio is only valid until the next ReadEvent call.
//
// When the bot closes the WebSocket (with any status) or the connection
// drops, the error wraps ErrBotHangup; a message larger than Config.ReadLimit
// gives an error wrapping ErrMessageTooBig; once a write timed out and cut
// the connection, it wraps context.DeadlineExceeded. All are final: every
// later call returns the same error. After Close, ReadEvent returns
// ErrClosed, also when it was blocked as Close started.
//
// If ctx ends first, ReadEvent returns ctx.Err() and the connection stays
// usable: the next call picks up the message being read.
func (c *Conn) ReadEvent(ctx context.Context) (Event, error) {
	for {
		if c.isClosing() {
			return Event{}, ErrClosed
		}
		if c.readErr != nil {
			return Event{}, c.readErr
		}
		if !c.pending {
			select {
			case c.readReq <- struct{}{}:
				c.pending = true
			case <-c.closing:
				return Event{}, ErrClosed
			case <-ctx.Done():
				return Event{}, ctx.Err()
			}
		}
		var res readResult
		select {
		case res = <-c.readRes:
			c.pending = false
		case <-c.closing:
			return Event{}, ErrClosed
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
		if c.isClosing() {
			return Event{}, ErrClosed
		}
		if res.err != nil {
			c.readErr = c.readError(res.err)
			return Event{}, c.readErr
		}
		ev, ignored := c.d.decode(res.typ, res.data)
		if ignored == "" {
			return ev, nil
		}
		if ce := c.logger.Check(zapcore.DebugLevel, "bot message ignored"); ce != nil {
			ce.Write(zap.String("reason", ignored), zap.Int("size", len(res.data)))
		}
	}
}

// readError classifies a terminal read error.
func (c *Conn) readError(err error) error {
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return fmt.Errorf("%w (limit %d bytes): %w", ErrMessageTooBig, c.readLimit, err)
	}
	if c.stalled.Load() {
		return fmt.Errorf("connection cut after a write made no progress within %v: %w", c.writeTimeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("%w: %w", ErrBotHangup, err)
}

// readLoop is the reader goroutine: one message per request, until done.
func (c *Conn) readLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.readReq:
		case <-c.done:
			return
		}
		typ, data, err := c.readMessage()
		if err != nil {
			c.readFailed.Store(true)
		}
		select {
		case c.readRes <- readResult{typ: typ, data: data, err: err}:
		case <-c.done:
			return
		}
	}
}

// readMessage reads one whole message into rbuf, growing it as needed (the
// WebSocket read limit bounds it).
func (c *Conn) readMessage() (websocket.MessageType, []byte, error) {
	typ, r, err := c.ws.Reader(c.readCtx)
	if err != nil {
		return 0, nil, err
	}
	b := c.rbuf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			c.rbuf = b
			return typ, b, nil
		}
		if err != nil {
			c.rbuf = b[:0]
			return 0, nil, err
		}
	}
}

// WriteAudio sends one 20 ms frame of 16-bit linear PCM at SampleRate:
// exactly FrameSamples samples, else the error wraps ErrFrameSize. Twilio:
// a media message (track inbound; chunk counts from 1; timestamp is the
// chunk's start in ms, (chunk-1)*20; base64 mu-law). Vonage: one binary
// frame of little-endian samples.
//
// ctx is checked before the write starts. A started write is bounded by
// Config.WriteTimeout instead, because an interrupted WebSocket write leaves
// the connection unusable; a write that times out closes the connection.
func (c *Conn) WriteAudio(ctx context.Context, pcm []int16) error {
	if len(pcm) != c.frame {
		return fmt.Errorf("%w: %d samples, want %d at %d Hz", ErrFrameSize, len(pcm), c.frame, c.rate)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.checkWrite(ctx); err != nil {
		return err
	}
	c.wbuf = c.d.appendAudio(c.wbuf[:0], pcm)
	return c.writeLocked(c.d.audioType(), c.wbuf, "audio")
}

// WriteDTMF tells the bot that the caller pressed digit (one of 0-9, *, #,
// A-D; a-d are accepted as A-D) for duration. Twilio:
// {"event":"dtmf",...,"dtmf":{"track":"inbound_track","digit":"5"}} (Twilio's
// event has no duration). Vonage:
// {"event":"websocket:dtmf","digit":"5","duration":260}, in milliseconds.
func (c *Conn) WriteDTMF(ctx context.Context, digit string, duration time.Duration) error {
	d, ok := validDigit(digit)
	if !ok {
		return fmt.Errorf("%w %q", ErrInvalidDigit, digit)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.checkWrite(ctx); err != nil {
		return err
	}
	c.wbuf = c.d.appendDTMF(c.wbuf[:0], d, max(duration, 0).Milliseconds())
	return c.writeLocked(websocket.MessageText, c.wbuf, "dtmf")
}

// WriteMarkPlayed tells the bot that the audio it sent before m has been
// played to the caller. Twilio: the mark message with m's name. Vonage:
// {"event":"websocket:notify","payload":...} with m's payload.
func (c *Conn) WriteMarkPlayed(ctx context.Context, m Mark) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.checkWrite(ctx); err != nil {
		return err
	}
	c.wbuf = c.d.appendMarkPlayed(c.wbuf[:0], m)
	return c.writeLocked(websocket.MessageText, c.wbuf, "mark")
}

// WriteCleared acknowledges an EventClear once the queued bot audio has
// been dropped; pending are the marks that were still waiting, oldest
// first. Twilio answers a clear by echoing every pending mark, in order, and
// sends nothing else. Vonage sends {"event":"websocket:cleared"} and does
// not echo pending notify payloads: their audio was dropped, not played.
func (c *Conn) WriteCleared(ctx context.Context, pending []Mark) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.checkWrite(ctx); err != nil {
		return err
	}
	if c.d.echoMarksOnClear() {
		for _, m := range pending {
			c.wbuf = c.d.appendMarkPlayed(c.wbuf[:0], m)
			if err := c.writeLocked(websocket.MessageText, c.wbuf, "mark"); err != nil {
				return err
			}
		}
	}
	c.wbuf = c.d.appendCleared(c.wbuf[:0])
	if len(c.wbuf) == 0 {
		return nil
	}
	return c.writeLocked(websocket.MessageText, c.wbuf, "cleared")
}

// sendOpening sends the dialect's opening messages.
func (c *Conn) sendOpening(ctx context.Context) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for _, m := range c.d.opening() {
		if err := c.checkWrite(ctx); err != nil {
			return err
		}
		if err := c.writeLocked(m.typ, m.data, "opening"); err != nil {
			return err
		}
	}
	return nil
}

// checkWrite reports whether a write may start. c.wmu must be held.
func (c *Conn) checkWrite(ctx context.Context) error {
	if c.isClosing() {
		return ErrClosed
	}
	return ctx.Err()
}

// writeLocked writes one message within the write timeout. c.wmu must be
// held.
func (c *Conn) writeLocked(typ websocket.MessageType, b []byte, what string) error {
	if err := c.writeRaw(typ, b); err != nil {
		if c.isClosing() {
			return ErrClosed
		}
		return fmt.Errorf("write %s to bot: %w", what, err)
	}
	if ce := c.logger.Check(zapcore.DebugLevel, "bot message sent"); ce != nil {
		ce.Write(zap.String("kind", what), zap.Int("size", len(b)))
	}
	return nil
}

// writeRaw writes one message under the watchdog. c.wmu must be held.
func (c *Conn) writeRaw(typ websocket.MessageType, b []byte) error {
	c.watchdog.Reset(c.writeTimeout)
	err := c.ws.Write(context.Background(), typ, b)
	if !c.watchdog.Stop() {
		<-c.watchdogFired // it ran: the connection is cut, even if b went out
		return fmt.Errorf("no progress within %v: %w", c.writeTimeout, context.DeadlineExceeded)
	}
	return err
}

func (c *Conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// Close ends the stream: Twilio sends `stop` as the last message; then a
// normal close frame (status 1000) is sent and the bot's answer awaited for
// at most a second before the connection is cut. Close waits for the Conn's
// goroutine and unblocks a concurrent ReadEvent, which returns ErrClosed, as
// do all methods afterwards. Close is idempotent: later calls wait for the
// first and return its result.
//
// Close returns an error only if the bot was still connected but sending
// stop or the close handshake failed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.shutdown()
	})
	return c.closeErr
}

func (c *Conn) shutdown() error {
	close(c.closing)
	botLeft := c.readFailed.Load()

	var stopErr error
	c.wmu.Lock()
	c.wbuf = c.d.appendStop(c.wbuf[:0])
	if len(c.wbuf) > 0 {
		if err := c.writeRaw(websocket.MessageText, c.wbuf); err != nil && !connGone(err) {
			stopErr = fmt.Errorf("write stop to bot: %w", err)
		}
	}
	c.wmu.Unlock()

	// Cut the connection if the bot does not answer the close frame in time.
	// readCancel unblocks a read in progress (the library then closes the
	// connection); closing the tracked network connections covers the rest.
	cut := make(chan struct{})
	var timedOut bool
	timer := time.AfterFunc(closeTimeout, func() {
		defer close(cut)
		timedOut = true
		c.readCancel()
		c.tracker.closeAll()
	})
	err := c.ws.Close(websocket.StatusNormalClosure, "")
	if !timer.Stop() {
		<-cut
	}
	c.readCancel()
	c.tracker.closeAll()
	close(c.done)
	c.wg.Wait()

	var closeErr error
	switch {
	case botLeft:
		// The bot hung up or the connection dropped before Close: nothing
		// was left to close politely.
		c.logger.Debug("bot connection closed after the bot left")
		return nil
	case timedOut:
		closeErr = fmt.Errorf("close bot connection: no answer to the close frame within %v", closeTimeout)
	case err != nil && !connGone(err) && websocket.CloseStatus(err) == -1:
		closeErr = fmt.Errorf("close bot connection: %w", err)
	}
	c.logger.Debug("bot connection closed", zap.Bool("close_timed_out", timedOut))
	return errors.Join(stopErr, closeErr)
}

// connGone reports whether err only says that the connection was already
// closed, by us or by the bot, so that there is nothing left to report.
func connGone(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// abort tears the connection down without the polite close (the opening
// messages could not be sent).
func (c *Conn) abort() {
	c.closeOnce.Do(func() {
		close(c.closing)
		_ = c.ws.CloseNow()
		c.readCancel()
		c.tracker.closeAll()
		close(c.done)
		c.wg.Wait()
		c.closeErr = ErrClosed
	})
}
