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

const (
	// closeTimeout bounds Close's wait for the bot to answer our close frame.
	closeTimeout = time.Second
	// eventQueue is how many decoded bot messages wait for ReadEvent before
	// the reader goroutine stops reading the socket. ReadEvent's caller (a
	// Session) never blocks on audio, so the queue only smooths bursts.
	eventQueue = 64
	// minWriteQueue is the least number of messages that wait for the writer
	// goroutine: 5 s of audio frames, two and a half times the default
	// write timeout.
	minWriteQueue = 250
)

// Conn is one call's WebSocket connection to the bot, made by Dial.
//
// A Conn owns two goroutines. The reader reads the socket continuously and
// queues decoded events for ReadEvent, so that a control message (clear,
// mark) is never stuck behind unread audio. The writer takes the messages
// queued by the Write methods and writes them in order, each within
// Config.WriteTimeout.
//
// ReadEvent must be called by one goroutine at a time. The Write methods may
// be called from any number of goroutines: they queue the message and return
// at once, and messages go out in the order they were queued. Close may be
// called at any time, from any goroutine, and more than once; it must be
// called once the Conn is no longer needed.
type Conn struct {
	ws           *websocket.Conn
	d            dialect
	protocol     Protocol
	rate         int
	frame        int // samples per 20 ms
	writeTimeout time.Duration
	readLimit    int64
	logger       *zap.Logger

	// Reader goroutine. readCtx is used for every read; the WebSocket
	// library closes the connection when it ends, which is how Close cuts a
	// close handshake that the bot does not answer.
	readCtx    context.Context
	readCancel context.CancelFunc
	events     chan readResult // bounded: eventQueue
	freeAudio  chan []int16    // recycled Event.Audio buffers
	rbuf       []byte          // the reader's message buffer
	botLeft    atomic.Bool     // a read failed before Close: the connection is gone

	// ReadEvent caller state.
	lastAudio []int16 // the buffer of the last returned Event.Audio, recycled on the next call
	readErr   error   // the terminal read error, once there is one

	// Writer goroutine.
	out        chan outCmd  // bounded: see newConn
	freeFrames chan []int16 // recycled WriteAudio frame copies
	wbuf       []byte       // the writer's message buffer
	wmu        sync.Mutex   // held by the writer while it writes a queued message
	// writingSince is when the write in progress started (UnixNano), 0 when
	// the writer is idle; stalled is set once checkStalled cut the
	// connection under it.
	writingSince atomic.Int64
	stalled      atomic.Bool
	writeErr     atomic.Pointer[error]
	stopErr      error         // writing stop failed; read after writerDone
	writerDone   chan struct{} // closed when the writer has sent stop and ended

	closing   chan struct{} // closed when Close starts
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// readResult is one decoded event, or the reader's terminal error.
type readResult struct {
	ev  Event
	err error
}

// outKind says what an outCmd writes.
type outKind uint8

const (
	outAudio outKind = iota + 1
	outDTMF
	outMark
	outCleared
)

// outCmd is one message queued for the writer. The writer builds the wire
// message itself, so the dialect's write state (sequence numbers, chunk
// counters) is only touched by the writer goroutine.
type outCmd struct {
	kind    outKind
	pcm     []int16 // outAudio: a copy owned by the command
	at      int64   // outAudio: media time in ms, or -1
	digit   byte    // outDTMF
	ms      int64   // outDTMF
	mark    Mark    // outMark
	pending []Mark  // outCleared
}

func newConn(ws *websocket.Conn, d dialect, rate int, cfg Config, logger *zap.Logger) *Conn {
	readCtx, readCancel := context.WithCancel(context.Background())
	queue := max(minWriteQueue, int(2*cfg.WriteTimeout/(20*time.Millisecond)))
	return &Conn{
		ws:           ws,
		d:            d,
		protocol:     cfg.Protocol,
		rate:         rate,
		frame:        rate / 50,
		writeTimeout: cfg.WriteTimeout,
		readLimit:    cfg.ReadLimit,
		logger:       logger,
		readCtx:      readCtx,
		readCancel:   readCancel,
		events:       make(chan readResult, eventQueue),
		freeAudio:    make(chan []int16, eventQueue+2),
		rbuf:         make([]byte, 0, 4096),
		out:          make(chan outCmd, queue),
		freeFrames:   make(chan []int16, queue+2),
		wbuf:         make([]byte, 0, 1024),
		writerDone:   make(chan struct{}),
		closing:      make(chan struct{}),
	}
}

// start launches the reader and writer goroutines, once the opening
// messages are out.
func (c *Conn) start() {
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
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

// ReadEvent returns the next meaningful message from the bot, waiting for
// one if none is queued. Messages that carry nothing to act on (unknown
// events, binary frames in the Twilio dialect, invalid JSON, empty audio)
// are skipped. The returned Event.Audio is only valid until the next
// ReadEvent call.
//
// When the bot closes the WebSocket (with any status) or the connection
// drops, the error wraps ErrBotHangup; a message larger than Config.ReadLimit
// gives an error wrapping ErrMessageTooBig; once a write timed out and cut
// the connection, it wraps context.DeadlineExceeded, and once the write queue
// overflowed, ErrWriteQueueFull. All are final: every later call returns the
// same error. After Close, ReadEvent returns ErrClosed, also when it was
// blocked as Close started.
//
// If ctx ends first, ReadEvent returns ctx.Err() and the connection stays
// usable.
func (c *Conn) ReadEvent(ctx context.Context) (Event, error) {
	if c.lastAudio != nil {
		c.recycleAudio(c.lastAudio)
		c.lastAudio = nil
	}
	if c.isClosing() {
		return Event{}, ErrClosed
	}
	if c.readErr != nil {
		return Event{}, c.readErr
	}
	select {
	case res := <-c.events:
		if c.isClosing() {
			return Event{}, ErrClosed
		}
		if res.err != nil {
			c.readErr = c.readError(res.err)
			return Event{}, c.readErr
		}
		if res.ev.Kind == EventAudio {
			c.lastAudio = res.ev.Audio
		}
		return res.ev, nil
	case <-c.closing:
		return Event{}, ErrClosed
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// readError classifies a terminal read error. A write failure that cut the
// connection (a timeout, or an overflowing write queue) is the cause of
// the failed read, so it is reported instead of a hang-up.
func (c *Conn) readError(err error) error {
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return fmt.Errorf("%w (limit %d bytes): %w", ErrMessageTooBig, c.readLimit, err)
	}
	if w := c.writeErr.Load(); w != nil && (errors.Is(*w, context.DeadlineExceeded) || errors.Is(*w, ErrWriteQueueFull)) {
		return *w
	}
	return fmt.Errorf("%w: %w", ErrBotHangup, err)
}

// readLoop is the reader goroutine: it reads and decodes messages until the
// connection fails, and queues them for ReadEvent. After Close started, it
// keeps reading (and discarding) so that the close handshake completes.
func (c *Conn) readLoop() {
	defer c.wg.Done()
	for {
		typ, data, err := c.readMessage()
		if err != nil {
			if websocket.CloseStatus(err) == -1 {
				// No close frame: the connection dropped, maybe cut by a
				// write that is failing right now. Wait for that write, so
				// that ReadEvent reports its error rather than a hang-up.
				c.wmu.Lock()
				//nolint:staticcheck // an empty critical section: waiting is the point
				c.wmu.Unlock()
			}
			if !c.isClosing() {
				c.botLeft.Store(true)
			}
			select {
			case c.events <- readResult{err: err}:
			case <-c.closing:
			}
			return
		}
		if c.isClosing() {
			continue
		}
		ev, ignored := c.d.decode(typ, data)
		if ignored != "" {
			if ce := c.logger.Check(zapcore.DebugLevel, "bot message ignored"); ce != nil {
				ce.Write(zap.String("reason", ignored), zap.Int("size", len(data)))
			}
			continue
		}
		if ev.Kind == EventAudio {
			ev.Audio = append(c.audioBuffer(len(ev.Audio)), ev.Audio...)
		}
		select {
		case c.events <- readResult{ev: ev}:
		case <-c.closing:
		}
	}
}

// audioBuffer returns an empty buffer for n samples, recycled if possible.
func (c *Conn) audioBuffer(n int) []int16 {
	select {
	case b := <-c.freeAudio:
		if cap(b) >= n {
			return b[:0]
		}
	default:
	}
	return make([]int16, 0, max(n, c.frame))
}

func (c *Conn) recycleAudio(b []int16) {
	select {
	case c.freeAudio <- b[:0]:
	default:
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

// WriteAudio queues one 20 ms frame of 16-bit linear PCM at SampleRate:
// exactly FrameSamples samples, else the error wraps ErrFrameSize. Twilio:
// a media message (track inbound; chunk counts from 1; timestamp is
// chunk*20, the ms of audio sent so far; base64 mu-law). Vonage: one binary
// frame of little-endian samples. pcm is copied.
//
// Like every Write method, it returns at once: the writer goroutine sends
// the message, and a write that makes no progress within
// Config.WriteTimeout is cut (noticed by the next Write call) and closes the
// connection. The error is then returned by every later Write and by
// ReadEvent. ctx is only checked before queueing.
func (c *Conn) WriteAudio(ctx context.Context, pcm []int16) error {
	return c.WriteAudioAt(ctx, pcm, -1)
}

// WriteAudioAt is WriteAudio for a frame whose media time is known: ms is
// the frame's start in ms since the caller's stream started (from its RTP
// timestamps). Twilio's media.timestamp is then ms+20, the stream time at
// the frame's end, so that a gap in the caller's stream shows as a jump, as
// on real Twilio; for a continuous stream it is chunk*20, as with
// WriteAudio. A negative ms means WriteAudio's numbering.
func (c *Conn) WriteAudioAt(ctx context.Context, pcm []int16, ms int64) error {
	if len(pcm) != c.frame {
		return fmt.Errorf("%w: %d samples, want %d at %d Hz", ErrFrameSize, len(pcm), c.frame, c.rate)
	}
	var buf []int16
	select {
	case buf = <-c.freeFrames:
	default:
		buf = make([]int16, c.frame)
	}
	copy(buf, pcm)
	return c.enqueue(ctx, outCmd{kind: outAudio, pcm: buf, at: ms})
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
	return c.enqueue(ctx, outCmd{kind: outDTMF, digit: d, ms: max(duration, 0).Milliseconds()})
}

// WriteMarkPlayed tells the bot that the audio it sent before m has been
// played to the caller. Twilio: the mark message with m's name. Vonage:
// {"event":"websocket:notify","payload":...} with m's payload.
func (c *Conn) WriteMarkPlayed(ctx context.Context, m Mark) error {
	return c.enqueue(ctx, outCmd{kind: outMark, mark: m})
}

// WriteCleared acknowledges an EventClear once the queued bot audio has
// been dropped; pending are the marks that were still waiting, oldest
// first (the Conn keeps the slice). Twilio answers a clear by echoing every
// pending mark, in order, and sends nothing else. Vonage sends
// {"event":"websocket:cleared"} and does not echo pending notify payloads:
// their audio was dropped, not played.
func (c *Conn) WriteCleared(ctx context.Context, pending []Mark) error {
	return c.enqueue(ctx, outCmd{kind: outCleared, pending: pending})
}

// enqueue hands cmd to the writer. A full queue means the bot reads more
// slowly than the call produces messages: the connection is cut and the
// error, wrapping ErrWriteQueueFull, becomes the connection's write error.
func (c *Conn) enqueue(ctx context.Context, cmd outCmd) error {
	if c.isClosing() {
		return ErrClosed
	}
	c.checkStalled()
	if w := c.writeErr.Load(); w != nil {
		return *w
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case c.out <- cmd:
		return nil
	default:
	}
	err := fmt.Errorf("%w: %d messages are waiting for a bot that reads too slowly", ErrWriteQueueFull, cap(c.out))
	c.failWrite(err)
	_ = c.ws.CloseNow()
	return *c.writeErr.Load()
}

// checkStalled cuts the connection under a write that has made no progress
// within the write timeout: the bot stopped reading. It runs on every
// enqueue, so a stall is noticed within one 20 ms frame of the timeout
// while the call produces messages.
func (c *Conn) checkStalled() {
	since := c.writingSince.Load()
	if since == 0 || time.Since(time.Unix(0, since)) < c.writeTimeout || !c.stalled.CompareAndSwap(false, true) {
		return
	}
	_ = c.ws.CloseNow()
}

// failWrite records the first write failure.
func (c *Conn) failWrite(err error) {
	c.writeErr.CompareAndSwap(nil, &err)
}

// writeLoop is the writer goroutine: it writes queued messages in order
// until Close, then writes what is still queued and the dialect's stop.
func (c *Conn) writeLoop() {
	defer c.wg.Done()
	defer close(c.writerDone)
	for {
		select {
		case cmd := <-c.out:
			c.writeCmd(cmd)
		case <-c.closing:
			c.drain()
			c.writeStop()
			return
		}
	}
}

// drain writes what is still queued when Close starts.
func (c *Conn) drain() {
	for {
		select {
		case cmd := <-c.out:
			c.writeCmd(cmd)
		default:
			return
		}
	}
}

// writeCmd builds and writes one queued message; after a failed write it
// only recycles.
func (c *Conn) writeCmd(cmd outCmd) {
	defer func() {
		if cmd.pcm != nil {
			select {
			case c.freeFrames <- cmd.pcm:
			default:
			}
		}
	}()
	if c.writeErr.Load() != nil {
		return
	}
	// A failed write is recorded before wmu is released: see readLoop.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	switch cmd.kind {
	case outAudio:
		c.wbuf = c.d.appendAudio(c.wbuf[:0], cmd.pcm, cmd.at)
		err = c.write(c.d.audioType(), c.wbuf, "audio")
	case outDTMF:
		c.wbuf = c.d.appendDTMF(c.wbuf[:0], cmd.digit, cmd.ms)
		err = c.write(websocket.MessageText, c.wbuf, "dtmf")
	case outMark:
		c.wbuf = c.d.appendMarkPlayed(c.wbuf[:0], cmd.mark)
		err = c.write(websocket.MessageText, c.wbuf, "mark")
	case outCleared:
		if c.d.echoMarksOnClear() {
			for _, m := range cmd.pending {
				c.wbuf = c.d.appendMarkPlayed(c.wbuf[:0], m)
				if err = c.write(websocket.MessageText, c.wbuf, "mark"); err != nil {
					break
				}
			}
		}
		if c.wbuf = c.d.appendCleared(c.wbuf[:0]); err == nil && len(c.wbuf) > 0 {
			err = c.write(websocket.MessageText, c.wbuf, "cleared")
		}
	}
	if err != nil {
		// Cut the connection, so that the reader (and with it ReadEvent)
		// reports the failure too.
		c.failWrite(err)
		_ = c.ws.CloseNow()
	}
}

// writeStop writes the dialect's last message, if it has one.
func (c *Conn) writeStop() {
	if c.writeErr.Load() != nil || c.botLeft.Load() {
		return
	}
	c.wbuf = c.d.appendStop(c.wbuf[:0])
	if len(c.wbuf) == 0 {
		return
	}
	if err := c.write(websocket.MessageText, c.wbuf, "stop"); err != nil && !connGone(err) {
		c.stopErr = err
	}
}

// write writes one message. It records when it started in writingSince,
// so that enqueue can cut a write that makes no progress (see
// checkStalled); the write then fails. (A context per write would cost
// several allocations per frame, and a timer goroutine per connection is
// what this design avoids.)
func (c *Conn) write(typ websocket.MessageType, b []byte, what string) error {
	c.writingSince.Store(time.Now().UnixNano())
	err := c.ws.Write(context.Background(), typ, b)
	c.writingSince.Store(0)
	if err != nil {
		if c.stalled.Load() {
			return fmt.Errorf("write %s to bot: no progress within %v: %w", what, c.writeTimeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("write %s to bot: %w", what, err)
	}
	if ce := c.logger.Check(zapcore.DebugLevel, "bot message sent"); ce != nil {
		ce.Write(zap.String("kind", what), zap.Int("size", len(b)))
	}
	return nil
}

// sendOpening writes the dialect's opening messages, before the goroutines
// start.
func (c *Conn) sendOpening(ctx context.Context) error {
	for _, m := range c.d.opening() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.write(m.typ, m.data, "opening"); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// Close ends the stream: the messages already queued are written, Twilio
// sends `stop` as the last message; then a normal close frame (status 1000)
// is sent and the bot's answer awaited for at most a second before the
// connection is cut. Close waits for the Conn's goroutines and unblocks a
// concurrent ReadEvent, which returns ErrClosed, as do all methods
// afterwards. Close is idempotent: later calls wait for the first and
// return its result.
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
	<-c.writerDone
	if c.botLeft.Load() || c.writeErr.Load() != nil {
		// The bot hung up or the connection failed before Close: there is
		// nothing left to close politely, and the reader has ended, so
		// nobody would read the bot's answer to a close frame.
		_ = c.ws.CloseNow()
		c.readCancel()
		c.wg.Wait()
		c.logger.Debug("bot connection closed after it failed or the bot left")
		return nil
	}

	// Cut the connection if the bot does not answer the close frame in
	// time: ending readCtx makes the library close the connection under
	// the reader's pending read, which also ends the handshake.
	var timedOut atomic.Bool
	timer := time.AfterFunc(closeTimeout, func() {
		timedOut.Store(true)
		c.readCancel()
	})
	err := c.ws.Close(websocket.StatusNormalClosure, "")
	timer.Stop()
	c.readCancel()
	_ = c.ws.CloseNow()
	c.wg.Wait()

	var stopErr, closeErr error
	if c.stopErr != nil {
		stopErr = fmt.Errorf("write stop to bot: %w", c.stopErr)
	}
	switch {
	case timedOut.Load():
		closeErr = fmt.Errorf("close bot connection: no answer to the close frame within %v", closeTimeout)
	case err != nil && !connGone(err) && websocket.CloseStatus(err) == -1:
		closeErr = fmt.Errorf("close bot connection: %w", err)
	}
	c.logger.Debug("bot connection closed", zap.Bool("close_timed_out", timedOut.Load()))
	return errors.Join(stopErr, closeErr)
}

// connGone reports whether err only says that the connection was already
// closed, by us or by the bot, so that there is nothing left to report.
func connGone(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
