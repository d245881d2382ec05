package simulator

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/zaf/g711"
	"go.uber.org/zap"
)

// frameDuration is the duration of one audio frame in both dialects.
const frameDuration = 20 * time.Millisecond

// loudThreshold is the peak sample (of 32767) above which a frame counts as
// loud: about -30 dBFS, well above mu-law's idle noise.
const loudThreshold = 1000

// botConn is one WebSocket connection to the bot. Its reader runs on the
// HTTP handler's goroutine (run); it starts one writer goroutine once the
// stream has started and waits for it before run returns.
type botConn struct {
	bot *Bot
	ws  *websocket.Conn
	// ctx ends the writer. WebSocket reads and writes use a context that
	// is never cancelled (coder/websocket arms a timer per call for a
	// cancellable one); the connection is closed explicitly instead.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Reader state, owned by the run goroutine.
	readBuf []byte
	audio   []byte // decoded twilio payload
	ctrl    []byte // control messages sent by the reader
	started bool

	// Set once before the writer starts, read-only afterwards.
	dialect    string
	sidJSON    []byte // streamSid as a JSON string
	sampleRate int

	// qmu guards queue (echo mode). wake (size 1: a pending wake-up is
	// enough, extra ones are dropped) tells the writer that the head of the
	// queue changed.
	qmu   sync.Mutex
	queue frameQueue
	wake  chan struct{}

	// Counters, written by either goroutine, read by snapshots.
	framesIn, bytesIn, loudIn     atomic.Int64
	framesOut, marksSent          atomic.Int64
	marksEchoed, clears, clearAck atomic.Int64
	hungUp                        atomic.Bool

	// mu guards the record's descriptive fields.
	mu      sync.Mutex
	rec     CallRecord
	digits  []byte
	endedBy string
}

func newBotConn(b *Bot, ws *websocket.Conn) *botConn {
	ctx, cancel := context.WithCancel(b.ctx)
	c := &botConn{
		bot:     b,
		ws:      ws,
		ctx:     ctx,
		cancel:  cancel,
		readBuf: make([]byte, 4096),
		wake:    make(chan struct{}, 1),
		rec:     CallRecord{Started: time.Now(), Active: true},
	}
	if b.Protocol != ProtocolAuto {
		c.dialect = b.Protocol
		c.rec.Protocol = b.Protocol
	}
	ws.SetReadLimit(botReadLimit)
	return c
}

// run reads until the WebSocket closes, then stops the writer.
func (c *botConn) run() {
	var err error
	for {
		var typ websocket.MessageType
		var msg []byte
		typ, msg, err = c.readMessage()
		if err != nil {
			break
		}
		if typ == websocket.MessageBinary {
			err = c.handleBinary(msg)
		} else {
			err = c.handleText(msg)
		}
		if err != nil {
			c.setEnd("error", err)
			_ = c.ws.Close(websocket.StatusPolicyViolation, "protocol error")
			break
		}
		if c.hungUp.Load() {
			break
		}
	}
	c.cancel()
	c.wg.Wait()
	_ = c.ws.CloseNow()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.rec.Active = false
	c.rec.Ended = time.Now()
	if code := websocket.CloseStatus(err); code != -1 {
		c.rec.CloseCode = int(code)
	}
	if c.endedBy == "" {
		switch {
		case c.bot.ctx.Err() != nil:
			c.endedBy = "shutdown"
		case websocket.CloseStatus(err) != -1 || errors.Is(err, io.EOF):
			c.endedBy = "peer"
		default:
			c.endedBy = "error"
			c.rec.Error = err.Error()
		}
	}
}

// readMessage reads one message into the reusable read buffer.
func (c *botConn) readMessage() (websocket.MessageType, []byte, error) {
	typ, r, err := c.ws.Reader(context.Background())
	if err != nil {
		return 0, nil, err
	}
	n := 0
	for {
		if n == len(c.readBuf) {
			c.readBuf = append(c.readBuf, make([]byte, len(c.readBuf))...)
		}
		m, err := r.Read(c.readBuf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return typ, c.readBuf[:n], nil
		}
		if err != nil {
			return 0, nil, err
		}
	}
}

// handleText handles one JSON message of either dialect. Twilio media,
// the only frequent message, takes a path that does not allocate.
func (c *botConn) handleText(msg []byte) error {
	ev, ok := jsonStringField(msg, `"event"`)
	if !ok {
		var probe struct {
			Event string `json:"event"`
		}
		if err := json.Unmarshal(msg, &probe); err != nil {
			return fmt.Errorf("decode bot message: %w", err)
		}
		ev = []byte(probe.Event)
	}
	switch string(ev) {
	case "media":
		if err := c.setDialect(ProtocolTwilio); err != nil {
			return err
		}
		return c.handleTwilioMedia(msg)
	case "connected":
		return c.setDialect(ProtocolTwilio)
	case "start":
		if err := c.setDialect(ProtocolTwilio); err != nil {
			return err
		}
		return c.handleTwilioStart(msg)
	case "dtmf":
		var m struct {
			DTMF struct {
				Digit string `json:"digit"`
			} `json:"dtmf"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			return fmt.Errorf("decode dtmf: %w", err)
		}
		c.handleDigit(m.DTMF.Digit)
	case "mark":
		var m struct {
			Mark struct {
				Name string `json:"name"`
			} `json:"mark"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			return fmt.Errorf("decode mark: %w", err)
		}
		c.handleMarkEcho(m.Mark.Name)
	case "stop":
		c.mu.Lock()
		c.rec.Stopped = true
		c.mu.Unlock()
	case "websocket:connected":
		if err := c.setDialect(ProtocolVonage); err != nil {
			return err
		}
		return c.handleVonageConnected(msg)
	case "websocket:dtmf":
		var m struct {
			Digit string `json:"digit"`
			DTMF  struct {
				Digit string `json:"digit"`
			} `json:"dtmf"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			return fmt.Errorf("decode websocket:dtmf: %w", err)
		}
		d := m.Digit
		if d == "" {
			d = m.DTMF.Digit
		}
		c.handleDigit(d)
	case "websocket:notify":
		var m struct {
			Payload struct {
				Name string `json:"name"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			return fmt.Errorf("decode websocket:notify: %w", err)
		}
		c.handleMarkEcho(m.Payload.Name)
	case "websocket:cleared":
		c.clearAck.Add(1)
	}
	// Unknown events are ignored, as the dialects require.
	return nil
}

func (c *botConn) setDialect(d string) error {
	if c.dialect == d {
		return nil
	}
	if c.dialect != "" {
		return fmt.Errorf("%w: got a %s message on a %s stream", ErrUnknownDialect, d, c.dialect)
	}
	c.dialect = d
	c.mu.Lock()
	c.rec.Protocol = d
	c.mu.Unlock()
	return nil
}

func (c *botConn) handleTwilioStart(msg []byte) error {
	var m struct {
		StreamSID string `json:"streamSid"`
		Start     struct {
			StreamSID        string         `json:"streamSid"`
			CallSID          string         `json:"callSid"`
			CustomParameters map[string]any `json:"customParameters"`
			MediaFormat      struct {
				Encoding   string `json:"encoding"`
				SampleRate int    `json:"sampleRate"`
			} `json:"mediaFormat"`
		} `json:"start"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		return fmt.Errorf("decode start: %w", err)
	}
	sid := m.Start.StreamSID
	if sid == "" {
		sid = m.StreamSID
	}
	if sid == "" {
		return fmt.Errorf("twilio start without streamSid")
	}
	if c.started {
		return nil // a repeated start changes nothing
	}
	params := stringMap(m.Start.CustomParameters)
	c.sidJSON, _ = json.Marshal(sid)
	c.sampleRate = 8000
	c.mu.Lock()
	c.rec.StreamSID = sid
	c.rec.CallSID = m.Start.CallSID
	c.rec.Parameters = params
	c.rec.CallID = params["whatsapp_call_id"]
	c.rec.From = params["from_number"]
	c.rec.To = params["to_number"]
	c.rec.SampleRate = 8000
	c.mu.Unlock()
	if enc := m.Start.MediaFormat.Encoding; enc != "" && enc != "audio/x-mulaw" {
		c.bot.logger.Warn("twilio stream with unexpected encoding", zap.String("encoding", enc))
	}
	c.startWriter()
	return nil
}

func (c *botConn) handleVonageConnected(msg []byte) error {
	var m map[string]any
	if err := json.Unmarshal(msg, &m); err != nil {
		return fmt.Errorf("decode websocket:connected: %w", err)
	}
	params := stringMap(m)
	rate, err := l16Rate(params["content-type"])
	if err != nil {
		return err
	}
	if c.started {
		rate = c.sampleRate // audio came first; the writer already uses this rate
	}
	c.sampleRate = rate
	c.mu.Lock()
	c.rec.CallID = params["whatsapp_call_id"]
	c.rec.From = params["from"]
	c.rec.To = params["to"]
	c.rec.SampleRate = rate
	delete(params, "event")
	c.rec.Parameters = params
	c.mu.Unlock()
	c.startWriter()
	return nil
}

// l16Rate reads the rate of a content type such as "audio/l16;rate=16000".
func l16Rate(contentType string) (int, error) {
	if contentType == "" {
		return 16000, nil
	}
	for p := range strings.SplitSeq(contentType, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(k, "rate") {
			continue
		}
		rate, err := strconv.Atoi(v)
		if err != nil || (rate != 8000 && rate != 16000 && rate != 24000) {
			return 0, fmt.Errorf("vonage content-type %q: want rate 8000, 16000 or 24000", contentType)
		}
		return rate, nil
	}
	return 16000, nil
}

func (c *botConn) handleTwilioMedia(msg []byte) error {
	payload, ok := jsonStringField(msg, `"payload"`)
	if !ok {
		var m struct {
			Media struct {
				Payload string `json:"payload"`
			} `json:"media"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			return fmt.Errorf("decode media: %w", err)
		}
		payload = []byte(m.Media.Payload)
	}
	need := base64.StdEncoding.DecodedLen(len(payload))
	if cap(c.audio) < need {
		c.audio = make([]byte, need)
	}
	n, err := base64.StdEncoding.Decode(c.audio[:need], payload)
	if err != nil {
		return fmt.Errorf("decode media payload: %w", err)
	}
	c.handleAudio(c.audio[:n])
	return nil
}

func (c *botConn) handleBinary(msg []byte) error {
	switch c.dialect {
	case ProtocolTwilio:
		return nil // twilio streams ignore binary frames
	case "":
		if err := c.setDialect(ProtocolVonage); err != nil {
			return err
		}
	}
	if !c.started {
		// Audio before websocket:connected: assume the default rate.
		c.sampleRate = 16000
		c.mu.Lock()
		c.rec.SampleRate = 16000
		c.mu.Unlock()
		c.startWriter()
	}
	c.handleAudio(msg)
	return nil
}

// handleAudio counts a frame and, in echo mode, queues it for playback.
func (c *botConn) handleAudio(p []byte) {
	c.framesIn.Add(1)
	c.bytesIn.Add(int64(len(p)))
	if peak(p, c.dialect == ProtocolTwilio) > loudThreshold {
		c.loudIn.Add(1)
	}
	if c.bot.Mode != ModeEcho || !c.started || len(p) == 0 {
		return
	}
	c.qmu.Lock()
	wasEmpty := c.queue.len() == 0
	c.queue.push(time.Now().Add(time.Duration(c.bot.Delay)), p)
	c.qmu.Unlock()
	if wasEmpty {
		c.signal()
	}
}

func (c *botConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *botConn) handleDigit(d string) {
	if d == "" {
		return
	}
	c.mu.Lock()
	c.digits = append(c.digits, d...)
	c.mu.Unlock()
	switch d {
	case c.bot.HangupDigit:
		c.hangUp("hangup_digit")
	case c.bot.ClearDigit:
		c.clear()
	}
}

func (c *botConn) handleMarkEcho(name string) {
	c.marksEchoed.Add(1)
	c.mu.Lock()
	c.rec.LastMark = name
	c.mu.Unlock()
}

// clear drops the held audio and sends clear (reader goroutine only).
func (c *botConn) clear() {
	c.qmu.Lock()
	c.queue.reset()
	c.qmu.Unlock()
	c.signal()
	if c.dialect == ProtocolTwilio {
		c.ctrl = append(c.ctrl[:0], `{"event":"clear","streamSid":`...)
		c.ctrl = append(c.ctrl, c.sidJSON...)
		c.ctrl = append(c.ctrl, '}')
	} else {
		c.ctrl = append(c.ctrl[:0], `{"action":"clear"}`...)
	}
	if err := c.ws.Write(context.Background(), websocket.MessageText, c.ctrl); err == nil {
		c.clears.Add(1)
	}
}

// hangUp closes the WebSocket from the bot's side, which hangs up the call.
func (c *botConn) hangUp(reason string) {
	if c.hungUp.Swap(true) {
		return
	}
	c.setEnd(reason, nil)
	c.bot.logger.Info("bot hanging up", zap.String("reason", reason))
	_ = c.ws.Close(websocket.StatusNormalClosure, "bot hung up")
}

func (c *botConn) setEnd(by string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.endedBy == "" {
		c.endedBy = by
		if err != nil {
			c.rec.Error = err.Error()
		}
	}
}

func (c *botConn) startWriter() {
	if c.started {
		return
	}
	c.started = true
	c.queue.init(queueCapacity(time.Duration(c.bot.Delay)))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.write()
	}()
}

// write is the writer goroutine: it sends audio and marks until ctx ends.
func (c *botConn) write() {
	var hangup <-chan time.Time
	if d := time.Duration(c.bot.HangupAfter); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		hangup = t.C
	}
	w := &botWriter{
		conn:      c,
		markEvery: int64(time.Duration(c.bot.MarkInterval) / frameDuration),
	}
	if c.bot.Mode == ModeTone {
		w.toneLoop(hangup)
	} else {
		w.echoLoop(hangup)
	}
}

// botWriter holds the writer goroutine's reusable buffers.
type botWriter struct {
	conn      *botConn
	markEvery int64
	out       []byte
	pcm       []int16
	frame     []byte
	tone      toneGenerator
}

func (w *botWriter) echoLoop(hangup <-chan time.Time) {
	c := w.conn
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		c.qmu.Lock()
		f := c.queue.peek()
		if f == nil {
			c.qmu.Unlock()
			select {
			case <-c.wake:
				continue
			case <-hangup:
				c.hangUp("hangup_after")
				return
			case <-c.ctx.Done():
				return
			}
		}
		if wait := time.Until(f.due); wait > 0 {
			c.qmu.Unlock()
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-c.wake:
				timer.Stop()
			case <-hangup:
				c.hangUp("hangup_after")
				return
			case <-c.ctx.Done():
				return
			}
			continue
		}
		w.encodeAudio(f.data)
		c.queue.pop()
		c.qmu.Unlock()
		if !w.send() {
			return
		}
	}
}

func (w *botWriter) toneLoop(hangup <-chan time.Time) {
	c := w.conn
	w.tone.init(w.conn.bot.Frequency, c.sampleRate)
	samples := c.sampleRate / 50
	w.pcm = make([]int16, samples)
	if c.dialect == ProtocolTwilio {
		w.frame = make([]byte, samples)
	} else {
		w.frame = make([]byte, 2*samples)
	}
	ticker := time.NewTicker(frameDuration)
	defer ticker.Stop()
	for {
		w.tone.fill(w.pcm)
		if c.dialect == ProtocolTwilio {
			for i, s := range w.pcm {
				w.frame[i] = g711.EncodeUlawFrame(s)
			}
		} else {
			for i, s := range w.pcm {
				binary.LittleEndian.PutUint16(w.frame[2*i:], uint16(s))
			}
		}
		w.encodeAudio(w.frame)
		if !w.send() {
			return
		}
		select {
		case <-ticker.C:
		case <-hangup:
			c.hangUp("hangup_after")
			return
		case <-c.ctx.Done():
			return
		}
	}
}

// encodeAudio builds the audio message for p into w.out.
func (w *botWriter) encodeAudio(p []byte) {
	c := w.conn
	if c.dialect == ProtocolTwilio {
		w.out = appendTwilioMedia(w.out[:0], c.sidJSON, p)
	} else {
		w.out = append(w.out[:0], p...)
	}
}

// send writes w.out, then a mark every markEvery frames. It reports false
// when the connection is gone.
func (w *botWriter) send() bool {
	c := w.conn
	typ := websocket.MessageText
	if c.dialect == ProtocolVonage {
		typ = websocket.MessageBinary
	}
	if err := c.ws.Write(context.Background(), typ, w.out); err != nil {
		return false
	}
	n := c.framesOut.Add(1)
	if w.markEvery <= 0 || n%w.markEvery != 0 {
		return true
	}
	seq := c.marksSent.Load() + 1
	w.out = appendMark(w.out[:0], c.dialect, c.sidJSON, c.bot.Mode, seq)
	if err := c.ws.Write(context.Background(), websocket.MessageText, w.out); err != nil {
		return false
	}
	c.marksSent.Add(1)
	return true
}

// appendTwilioMedia appends a twilio media message carrying ulaw.
func appendTwilioMedia(dst, sidJSON, ulaw []byte) []byte {
	dst = append(dst, `{"event":"media","streamSid":`...)
	dst = append(dst, sidJSON...)
	dst = append(dst, `,"media":{"payload":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, ulaw)
	return append(dst, `"}}`...)
}

// appendMark appends a twilio mark or a vonage notify named <mode>-<seq>.
func appendMark(dst []byte, dialect string, sidJSON []byte, mode string, seq int64) []byte {
	if dialect == ProtocolTwilio {
		dst = append(dst, `{"event":"mark","streamSid":`...)
		dst = append(dst, sidJSON...)
		dst = append(dst, `,"mark":{"name":"`...)
	} else {
		dst = append(dst, `{"action":"notify","payload":{"name":"`...)
	}
	dst = append(dst, mode...)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, seq, 10)
	return append(dst, `"}}`...)
}

// snapshot returns the connection's record.
func (c *botConn) snapshot() CallRecord {
	c.mu.Lock()
	rec := c.rec
	rec.Parameters = maps.Clone(c.rec.Parameters)
	rec.Digits = string(c.digits)
	rec.EndedBy = c.endedBy
	c.mu.Unlock()
	rec.FramesIn = c.framesIn.Load()
	rec.BytesIn = c.bytesIn.Load()
	rec.LoudFramesIn = c.loudIn.Load()
	rec.FramesOut = c.framesOut.Load()
	rec.MarksSent = c.marksSent.Load()
	rec.MarksEchoed = c.marksEchoed.Load()
	rec.ClearsSent = c.clears.Load()
	rec.ClearsAcked = c.clearAck.Load()
	return rec
}

// peak returns the largest absolute sample of a mu-law or L16 frame.
func peak(p []byte, ulaw bool) int {
	m := 0
	if ulaw {
		for _, b := range p {
			s := int(g711.DecodeUlawFrame(b))
			m = max(m, s, -s)
		}
		return m
	}
	for i := 0; i+1 < len(p); i += 2 {
		s := int(int16(binary.LittleEndian.Uint16(p[i:])))
		m = max(m, s, -s)
	}
	return m
}

// jsonStringField finds the string value of key (quoted, such as
// `"event"`) in a JSON object without decoding it. It reports false when
// the key is absent or the value is not a plain string without escapes, so
// that the caller falls back to encoding/json.
func jsonStringField(msg []byte, key string) ([]byte, bool) {
	rest := msg
	for {
		i := bytes.Index(rest, []byte(key))
		if i < 0 {
			return nil, false
		}
		rest = rest[i+len(key):]
		j := skipSpace(rest, 0)
		if j >= len(rest) || rest[j] != ':' {
			continue
		}
		j = skipSpace(rest, j+1)
		if j >= len(rest) || rest[j] != '"' {
			return nil, false
		}
		val := rest[j+1:]
		end := bytes.IndexByte(val, '"')
		if end < 0 || bytes.IndexByte(val[:end], '\\') >= 0 {
			return nil, false
		}
		return val[:end], true
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringMap flattens a JSON object's values to strings.
func stringMap(m map[string]any) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case string:
			out[k] = v
		case nil:
			out[k] = ""
		default:
			b, _ := json.Marshal(v)
			out[k] = string(b)
		}
	}
	return out
}

// queueCapacity sizes the echo queue: twice the delay in frames, at least
// 64 frames. When it is full the oldest frame is dropped.
func queueCapacity(delay time.Duration) int {
	return max(64, 2*int(delay/frameDuration))
}

// frameQueue is a ring of audio frames whose buffers are reused.
type frameQueue struct {
	slots []queuedFrame
	head  int
	n     int
}

type queuedFrame struct {
	due  time.Time
	data []byte
}

func (q *frameQueue) init(capacity int) { q.slots = make([]queuedFrame, capacity) }

func (q *frameQueue) len() int { return q.n }

// push appends a copy of p, dropping the oldest frame when full.
func (q *frameQueue) push(due time.Time, p []byte) {
	if q.n == len(q.slots) {
		q.pop()
	}
	s := &q.slots[(q.head+q.n)%len(q.slots)]
	s.due = due
	s.data = append(s.data[:0], p...)
	q.n++
}

func (q *frameQueue) peek() *queuedFrame {
	if q.n == 0 {
		return nil
	}
	return &q.slots[q.head]
}

func (q *frameQueue) pop() {
	if q.n == 0 {
		return
	}
	q.head = (q.head + 1) % len(q.slots)
	q.n--
}

func (q *frameQueue) reset() {
	q.head, q.n = 0, 0
}
