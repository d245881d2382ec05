package media

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/rtp"

	wacaller "github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// This file holds the fault tests: callers and bots that misbehave, and many
// calls in a row. They reuse the harness of harness_test.go.

// TestFaultCallerMalformedRTP sends, between the caller's good audio,
// garbage Opus, payload types that were never negotiated, truncated and
// out-of-range telephone-events, replayed sequence numbers and a large
// sequence jump. The call must go on: the bot keeps getting 50 frames a
// second, the caller's tone still decodes cleanly afterwards, and a key
// press still arrives exactly once.
func TestFaultCallerMalformedRTP(t *testing.T) {
	leakCheck(t)
	const (
		tePT = 101
		amp  = 8000
		hz   = 440
	)
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Twilio, 8000)
	call := startCall(t, e, tb, callerConfig{tePT: tePT, teClock: 8000})
	ctx, b, c := call.ctx, call.b, call.c

	c.sendTone(hz, amp)
	b.wait(ctx, t, "0.3 s of caller audio", func() bool { return b.audioMsgs >= 15 })

	rng := rand.New(rand.NewPCG(1, 2))
	garbage := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	send := func(pt uint8, payload []byte, opus bool) {
		c.mu.Lock()
		ts := c.ts // the next good packet's timestamp
		c.mu.Unlock()
		if err := c.writePacket(payload, pt, ts, opus); err != nil {
			t.Fatalf("caller write: %v", err)
		}
	}
	replay := func(back uint16) {
		c.mu.Lock()
		h := rtp.Header{Version: 2, SequenceNumber: c.seq - back, Timestamp: c.ts - 960*uint32(back)}
		c.mu.Unlock()
		if err := c.track.write(&h, garbage(40), true); err != nil {
			t.Fatalf("caller write: %v", err)
		}
	}

	// One second of abuse, a burst every 20 ms, interleaved with the tone.
	framesBefore, inBefore := botFrames(b), call.s.Stats().PacketsIn
	start := time.Now()
	for i := range 50 {
		send(0, garbage(1+rng.IntN(400)), true) // garbage in the Opus payload type
		send(0, nil, true)                      // empty Opus
		send(0, []byte{0xFF}, true)             // a code 3 TOC with no frame count
		send(0, []byte{0x4B, 0x41}, true)       // a 60 ms TOC over one byte
		send(0, garbage(32), false)             // PT 0 (PCMU), never negotiated
		send(99, garbage(32), false)            // PT 99, never negotiated
		send(tePT, garbage(i%4), false)         // telephone-event shorter than 4 bytes
		send(tePT, []byte{200, 0x80, 0, 160}, false)
		if i%10 == 0 {
			replay(3) // an old sequence number: a replay or a very late packet
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	if err := call.s.Err(); err != nil {
		t.Fatalf("session ended during malformed RTP: %v", err)
	}
	if got, want := botFrames(b)-framesBefore, int(elapsed/FrameDuration)*4/5; got < want {
		t.Errorf("bot got %d frames in %v of malformed RTP; want at least %d (50/s)", got, elapsed, want)
	}
	if in := call.s.Stats().PacketsIn - inBefore; in < 50 {
		t.Errorf("PacketsIn grew by %d during the abuse; want the good packets counted", in)
	}

	// The caller restarts its sequence numbers 3000 ahead: a restart, not
	// 3000 lost packets, and the audio goes on.
	lostBefore := call.s.Stats().PacketsLost
	c.mu.Lock()
	c.seq += 3000
	c.mu.Unlock()
	framesBefore = botFrames(b)
	time.Sleep(600 * time.Millisecond)
	if got := botFrames(b) - framesBefore; got < 20 {
		t.Errorf("bot got %d frames in the 600 ms after a sequence jump; want about 30", got)
	}
	if lost := call.s.Stats().PacketsLost - lostBefore; lost > 10 {
		t.Errorf("a sequence restart counted %d lost packets; want it not counted as loss", lost)
	}
	tail := b.audioTail(8000 * 4 / 10)
	if a := goertzel(tail, 8000, hz); !within(a, amp, 0.25) {
		t.Errorf("after the abuse the bot hears %v Hz at amplitude %.0f; want about %d (decoder state recovered)", hz, a, amp)
	}

	// A key press after the truncated events is still decoded, once.
	c.sendDTMF(ctx, "7")
	b.wait(ctx, t, "the key press", func() bool { return countEvents(b.msgs, "dtmf") >= 1 })
	time.Sleep(100 * time.Millisecond)
	var digits []string
	for _, m := range b.find("dtmf") {
		if m.Dtmf != nil {
			digits = append(digits, m.Dtmf.Digit)
		}
	}
	if strings.Join(digits, "") != "7" {
		t.Errorf("bot got digits %q after malformed telephone-events; want [7]", digits)
	}
	if err := call.s.Err(); err != nil {
		t.Errorf("session ended: %v", err)
	}
	b.checkWire(t)
}

// botFrames returns how many audio messages the bot has received.
func botFrames(b *botSide) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.audioMsgs
}

// TestFaultBotStalls has the bot accept the call and then read nothing,
// with small socket buffers so that writes block at once. Writes to the bot
// must time out, the session must end with ErrBotFailed (a write timeout)
// while the caller still gets its 50 packets a second, and Close must return.
func TestFaultBotStalls(t *testing.T) {
	leakCheck(t)
	const writeTimeout = 300 * time.Millisecond
	e := newTestEngine(t, nil)
	stalled := newStalledBot(t)
	c := newCaller(t, callerConfig{})
	ctx := testContext(t)
	s, err := e.NewSession(ctx, SessionConfig{
		CallID: "wacid.STALL",
		Offer:  c.offer,
		Bot: bot.Config{
			URL:          stalled.url,
			Protocol:     bot.Vonage,
			SampleRate:   24000, // the largest frames: the buffers fill fastest
			Call:         bot.CallInfo{CallID: "wacid.STALL"},
			DialTimeout:  2 * time.Second,
			WriteTimeout: writeTimeout,
			HTTPClient:   smallSendBufferClient(),
		},
	})
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c.accept(s.Answer())
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
	c.waitConnected(ctx)
	connected := time.Now()
	c.mu.Lock()
	rx0 := c.rxFrames
	c.mu.Unlock()
	c.sendTone(1000, 8000)

	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session still running 10 s after the bot stopped reading")
	}
	ran := time.Since(connected)
	err = s.Err()
	if !errors.Is(err, ErrBotFailed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err() = %v; want ErrBotFailed from a write timeout", err)
	}
	// The stall never held up the caller's side: the send loop does not
	// write to the bot unless a mark is due.
	c.mu.Lock()
	rx := c.rxFrames - rx0
	c.mu.Unlock()
	if want := int(ran/FrameDuration) * 3 / 5; rx < want {
		t.Errorf("caller got %d packets in the %v the bot stalled; want at least %d", rx, ran, want)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close() after a stall = %v; want nil (the bot connection was already cut)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close() hung after a bot stall")
	}
}

// stalledBot accepts WebSocket upgrades on sockets with a small receive
// buffer and then never reads.
type stalledBot struct {
	url  string
	stop chan struct{}
}

func newStalledBot(t *testing.T) *stalledBot {
	t.Helper()
	sb := &stalledBot{stop: make(chan struct{})}
	var wg sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		<-sb.stop // read nothing, ever
	}))
	srv.Listener = smallReadBufferListener{srv.Listener}
	srv.Start()
	sb.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/bot"
	t.Cleanup(func() {
		close(sb.stop)
		srv.Close()
		wg.Wait()
	})
	return sb
}

// smallReadBufferListener shrinks the receive buffer of accepted
// connections.
type smallReadBufferListener struct{ net.Listener }

func (l smallReadBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	return c, err
}

// smallSendBufferClient returns an HTTP client whose connections have a
// small send buffer.
func smallSendBufferClient() *http.Client {
	dialer := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetWriteBuffer(4096)
			}
			return c, err
		},
	}}
}

// TestFaultBotFloodsAudio has the bot send ten seconds of audio as fast as
// it can. The playout queue takes it all at once (it is bounded by memory,
// far above ten seconds), the caller must keep getting 50 packets a second,
// and the call must go on.
func TestFaultBotFloodsAudio(t *testing.T) {
	leakCheck(t)
	const rate, amp, hz = 16000, 8000, 1500
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Vonage, rate)
	call := startCall(t, e, tb, callerConfig{})
	ctx, b, c := call.ctx, call.b, call.c

	// The bot writes ten seconds as fast as the connection takes it.
	floodCtx, stopFlood := context.WithCancel(ctx)
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		pcm := tone(rate, 10*rate, 0, hz, amp)
		raw := make([]byte, 2*len(pcm))
		for i, v := range pcm {
			raw[2*i], raw[2*i+1] = byte(v), byte(uint16(v)>>8)
		}
		const chunk = 2 * rate / 50
		for off := 0; off < len(raw); off += chunk {
			if err := b.ws.Write(floodCtx, websocket.MessageBinary, raw[off:off+chunk]); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		stopFlood()
		<-flooded
	})

	c.mu.Lock()
	rx0 := c.rxFrames
	from := len(c.rx)
	c.mu.Unlock()
	start := time.Now()
	var maxBuffered int
	for time.Since(start) < 1200*time.Millisecond {
		maxBuffered = max(maxBuffered, call.s.Stats().BufferedMs)
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	// All ten seconds are queued at once (the socket is read continuously),
	// less what was played meanwhile.
	if maxBuffered < 8000 || maxBuffered > 10000 {
		t.Errorf("playout held at most %d ms of the 10 s flood; want nearly all of it queued", maxBuffered)
	}
	c.mu.Lock()
	rx := c.rxFrames - rx0
	c.mu.Unlock()
	if want := int(elapsed/FrameDuration) * 4 / 5; rx < want || rx > int(elapsed/FrameDuration)+10 {
		t.Errorf("caller got %d packets in %v of bot flood; want about %d (paced at 50/s)", rx, elapsed, int(elapsed/FrameDuration))
	}
	if a := maxToneLevel(c.received(from), callerRate, hz); !within(a, amp, 0.25) {
		t.Errorf("caller heard the flooded tone at amplitude %.0f; want about %d", a, amp)
	}
	if err := call.s.Err(); err != nil {
		t.Errorf("session ended during the flood: %v", err)
	}
}

// TestFaultBotOverflowsPlayout has a bot queue more audio than the
// playout limit (here 1 s, by SessionConfig.PlayoutLimit): the call ends as
// a bot failure that names the overflow, and the bot is closed.
func TestFaultBotOverflowsPlayout(t *testing.T) {
	leakCheck(t)
	const rate = 16000
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Vonage, rate)
	call := startCall(t, e, tb, callerConfig{}, func(cfg *SessionConfig) { cfg.PlayoutLimit = 2 * rate })
	ctx, b := call.ctx, call.b

	b.sendAudio(ctx, t, tone(rate, 3*rate, 0, 1000, 8000), rate/50)
	select {
	case <-call.s.Done():
	case <-ctx.Done():
		t.Fatal("session still running after the bot queued 3 s over a 1 s limit")
	}
	err := call.s.Err()
	if !errors.Is(err, ErrBotFailed) || !errors.Is(err, ErrPlayoutOverflow) {
		t.Fatalf("session ended with %v; want ErrBotFailed wrapping ErrPlayoutOverflow", err)
	}
	if !strings.Contains(err.Error(), "1s of audio at 16000 Hz") {
		t.Errorf("error %q does not name the limit", err)
	}
}

// TestFaultBotGarbageIgnored has the bot send malformed and unknown messages
// of every kind. They must be ignored: the call goes on, the caller still
// hears the bot's tone sent after them, and the bot still gets the caller's
// audio at 50 frames a second.
func TestFaultBotGarbageIgnored(t *testing.T) {
	deep := strings.Repeat("[", 200000) // deeper than any JSON decoder goes
	common := []string{
		"not json at all",
		`{"event":`,
		`{"event":"media"}}`,
		`[]`, `null`, `"media"`, `{}`, `42`,
		`{"event":"media","media":{"payload":"AAAA"}} trailing`,
		"\xff\xfe invalid utf-8 \x00",
		deep,
		`{"nested":` + deep,
	}
	tests := []struct {
		name     string
		protocol bot.Protocol
		rate     int
		garbage  []string // text messages
		binary   bool     // also send binary garbage
	}{
		{name: "twilio", protocol: bot.Twilio, rate: 8000, binary: true, garbage: append([]string{
			`{"event":123}`,
			`{"event":null,"media":{"payload":"AAAA"}}`,
			`{"event":"media","media":{"payload":12345}}`,
			`{"event":"media","media":"oops"}`,
			`{"event":"media","media":{"payload":"!!! not base64 !!!"}}`,
			`{"event":"media","media":{"payload":""}}`,
			`{"event":"media","media":{"payload":"\u0041"}}`,
			`{"event":"mark"}`,
			`{"event":"mark","mark":{"name":42}}`,
			`{"event":"mark","mark":{"name":"\ud800"}}`,
			`{"event":"start","start":{"streamSid":"MZbogus"}}`,
			`{"event":"dtmf","dtmf":{"digit":"9"}}`,
			`{"event":"unknownEvent","foo":[1,2,{"x":[3]}]}`,
			`{"event":"stop"}`,
		}, common...)},
		{name: "vonage", protocol: bot.Vonage, rate: 16000, garbage: append([]string{
			`{"action":123}`,
			`{"action":"unknown","payload":{}}`,
			`{"action":["notify"]}`,
			`{"event":"websocket:dtmf","digit":"5"}`,
		}, common...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			const amp, outHz, inHz = 8000, 600, 1000
			e := newTestEngine(t, nil)
			tb := newTestBot(t, tt.protocol, tt.rate)
			call := startCall(t, e, tb, callerConfig{})
			ctx, b, c := call.ctx, call.b, call.c
			c.sendTone(inHz, amp)
			b.wait(ctx, t, "caller audio", func() bool { return b.audioMsgs >= 5 })

			framesBefore, clockBefore := botFrames(b), c.clock()
			start := time.Now()
			rng := rand.New(rand.NewPCG(3, 4))
			for _, g := range tt.garbage {
				b.send(ctx, t, websocket.MessageText, []byte(g))
			}
			if tt.binary {
				for _, n := range []int{0, 1, 3, 160, 4096} {
					p := make([]byte, n)
					for i := range p {
						p[i] = byte(rng.Uint32())
					}
					b.send(ctx, t, websocket.MessageBinary, p)
				}
			}
			// Then good audio: the caller must hear it.
			from := c.receivedLen()
			b.sendAudio(ctx, t, tone(tt.rate, tt.rate/2, 0, outHz, amp), tt.rate/50)
			waitFor(ctx, t, "the bot's tone at the caller", func() bool {
				return toneFrames(c.received(from), callerRate, outHz, amp/2) >= 15
			})
			if a := maxToneLevel(c.received(from), callerRate, outHz); !within(a, amp, 0.25) {
				t.Errorf("caller heard the bot's tone at amplitude %.0f after the garbage; want about %d", a, amp)
			}
			time.Sleep(200 * time.Millisecond)
			elapsed := time.Since(start)
			sent := int((c.clock() - clockBefore) / callerFrame)
			if got, want := botFrames(b)-framesBefore, sent*4/5; got < want {
				t.Errorf("bot got %d frames of caller audio in the %v after the garbage, of %d the caller sent; want at least %d", got, elapsed, sent, want)
			}
			if err := call.s.Err(); err != nil {
				t.Fatalf("session ended after garbage: %v", err)
			}
			b.checkWire(t)
		})
	}
}

// TestFaultBotBreaksConnection has the bot end the connection badly. Each
// way must end the session promptly with the documented error, and Close
// must return.
func TestFaultBotBreaksConnection(t *testing.T) {
	tests := []struct {
		name    string
		raw     bool                 // use a hand-written bot to write raw frames
		breakIt func(*faultCall)     // what the bot does
		want    []error              // Err() must wrap each
		status  websocket.StatusCode // close status the bot must see; 0 means don't care
	}{
		{
			name: "text message over the read limit",
			breakIt: func(fc *faultCall) {
				fc.writeBig(websocket.MessageText, `{"event":"media","media":{"payload":"`, bot.DefaultReadLimit+1000)
			},
			want:   []error{ErrBotFailed, bot.ErrMessageTooBig},
			status: websocket.StatusMessageTooBig,
		},
		{
			name:    "binary message over the read limit",
			breakIt: func(fc *faultCall) { fc.writeBig(websocket.MessageBinary, "", 2*bot.DefaultReadLimit) },
			want:    []error{ErrBotFailed, bot.ErrMessageTooBig},
			status:  websocket.StatusMessageTooBig,
		},
		{
			name: "tcp close in the middle of a frame",
			raw:  true,
			breakIt: func(fc *faultCall) {
				// A text frame header announcing 1000 bytes, then 10 of them.
				fc.writeRaw([]byte{0x81, 126, 0x03, 0xE8, '{', '"', 'e', 'v', 'e', 'n', 't', '"', ':', '"'})
				_ = fc.raw.Close()
			},
			want: []error{ErrBotHangup},
		},
		{
			name: "tcp reset without a close frame",
			raw:  true,
			breakIt: func(fc *faultCall) {
				_ = fc.raw.(*net.TCPConn).SetLinger(0)
				_ = fc.raw.Close()
			},
			want: []error{ErrBotHangup},
		},
		{
			name:    "reserved opcode",
			raw:     true,
			breakIt: func(fc *faultCall) { fc.writeRaw([]byte{0x83, 0x00}) },
			want:    []error{ErrBotHangup},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			e := newTestEngine(t, nil)
			fc := &faultCall{t: t}
			var cfg bot.Config
			if tt.raw {
				rb := newRawBot(t)
				cfg = bot.Config{URL: rb.url, Protocol: bot.Twilio, Call: bot.CallInfo{CallID: "wacid.RAW"}, DialTimeout: 2 * time.Second}
				fc.start(e, cfg)
				fc.raw = rb.accepted(fc.ctx)
			} else {
				tb := newTestBot(t, bot.Twilio, 8000)
				cfg = tb.config()
				fc.start(e, cfg)
				fc.b = tb.accepted(fc.ctx)
			}
			fc.c.accept(fc.s.Answer())
			if err := fc.s.WaitConnected(fc.ctx); err != nil {
				t.Fatalf("WaitConnected: %v", err)
			}
			fc.c.sendTone(440, 4000)
			time.Sleep(100 * time.Millisecond)

			tt.breakIt(fc)
			select {
			case <-fc.s.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("session still running 5 s after the bot broke the connection")
			}
			err := fc.s.Err()
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("Err() = %v; want it to wrap %v", err, want)
				}
			}
			closed := make(chan error, 1)
			go func() { closed <- fc.s.Close() }()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Close() hung")
			}
			if tt.status != 0 {
				select {
				case <-fc.b.closed:
				case <-time.After(5 * time.Second):
					t.Fatal("bot connection still open")
				}
				fc.b.mu.Lock()
				got := fc.b.closeStatus
				fc.b.mu.Unlock()
				if got != tt.status {
					t.Errorf("bot saw close status %v; want %v", got, tt.status)
				}
			}
		})
	}
}

// faultCall is a call whose bot is about to misbehave.
type faultCall struct {
	t   *testing.T
	ctx context.Context
	s   *Session
	c   *caller
	b   *botSide // harness bot
	raw net.Conn // hand-written bot

	writes sync.WaitGroup
}

func (fc *faultCall) start(e *Engine, cfg bot.Config) {
	fc.t.Helper()
	fc.ctx = testContext(fc.t)
	fc.c = newCaller(fc.t, callerConfig{})
	s, err := e.NewSession(fc.ctx, SessionConfig{CallID: cfg.Call.CallID, Offer: fc.c.offer, Bot: cfg})
	if err != nil {
		fc.t.Fatalf("NewSession: %v", err)
	}
	fc.s = s
	fc.t.Cleanup(func() {
		_ = s.Close()
		fc.writes.Wait()
	})
}

// writeBig has the harness bot send one message of size bytes that starts
// with prefix, without waiting for the write, which the session cuts short.
func (fc *faultCall) writeBig(typ websocket.MessageType, prefix string, size int) {
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = 'A'
	}
	copy(msg, prefix)
	fc.writes.Add(1)
	go func() {
		defer fc.writes.Done()
		_ = fc.b.ws.Write(fc.ctx, typ, msg)
	}()
}

// writeRaw writes bytes as they are to the hand-written bot's socket.
func (fc *faultCall) writeRaw(p []byte) {
	fc.t.Helper()
	if _, err := fc.raw.Write(p); err != nil {
		fc.t.Fatalf("raw bot write: %v", err)
	}
}

// rawBot completes WebSocket upgrades by hand and hands out the raw
// connections, so that a test can write what no WebSocket library would.
// Everything the session sends is read and discarded.
type rawBot struct {
	url   string
	conns chan net.Conn
}

func newRawBot(t *testing.T) *rawBot {
	t.Helper()
	rb := &rawBot{conns: make(chan net.Conn, 4)}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		all []net.Conn
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		nc, brw, err := upgradeByHand(w, r)
		if err != nil {
			t.Errorf("raw bot upgrade: %v", err)
			return
		}
		defer nc.Close()
		mu.Lock()
		all = append(all, nc)
		mu.Unlock()
		rb.conns <- nc
		_, _ = io.Copy(io.Discard, brw)
	}))
	rb.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/bot"
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range all {
			_ = c.Close()
		}
		mu.Unlock()
		srv.Close()
		wg.Wait()
	})
	return rb
}

func (rb *rawBot) accepted(ctx context.Context) net.Conn {
	select {
	case c := <-rb.conns:
		return c
	case <-ctx.Done():
		return nil
	}
}

// upgradeByHand answers a WebSocket upgrade (RFC 6455 section 4.2.2) and
// returns the hijacked connection.
func upgradeByHand(w http.ResponseWriter, r *http.Request) (net.Conn, *bufio.ReadWriter, error) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return nil, nil, errors.New("not a websocket upgrade")
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("cannot hijack")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]))
	if err := brw.Flush(); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, brw, nil
}

// TestFaultSequentialCalls runs many short calls in a row through one
// Engine and bot, each connecting, exchanging a few frames both ways and
// closing, and checks that no goroutine or file descriptor is left behind.
//
// The caller here is a full ICE agent (internal/caller, Pion shape): it
// sends its own connectivity checks, so a call connects in a few
// milliseconds instead of waiting out pion's 200 ms check interval against
// an ICE-lite caller. The session's resources are the same either way.
func TestFaultSequentialCalls(t *testing.T) {
	leakCheck(t)
	n := 1000 // about 3.5 s, or 14 s with -race, on two cores
	if testing.Short() {
		n = 100
	}
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Twilio, 8000)

	shortCall(t, e, tb, -1) // warm up lazily started package state
	goroutines, fds := settle(t, 0, 0)

	start := time.Now()
	var firstTenth, lastTenth time.Duration // a growing cost would show here
	for i := range n {
		callStart := time.Now()
		shortCall(t, e, tb, i)
		if t.Failed() {
			return
		}
		switch d := time.Since(callStart); {
		case i < n/10:
			firstTenth += d
		case i >= n-n/10:
			lastTenth += d
		}
	}
	took := time.Since(start)
	tb.mu.Lock()
	tb.all = nil // the closed bot sides are not needed any more
	tb.mu.Unlock()
	afterG, afterFD := settle(t, goroutines, fds)
	t.Logf("%d calls in %v (%v each; first tenth %v, last tenth %v); goroutines %d -> %d, fds %d -> %d",
		n, took.Round(time.Millisecond), (took / time.Duration(n)).Round(time.Microsecond),
		(firstTenth / time.Duration(n/10)).Round(time.Microsecond), (lastTenth / time.Duration(n/10)).Round(time.Microsecond),
		goroutines, afterG, fds, afterFD)
	if afterG > goroutines {
		t.Errorf("%d goroutines after %d calls; want at most the %d before", afterG, n, goroutines)
	}
	if afterFD > fds {
		t.Errorf("%d open file descriptors after %d calls; want at most the %d before", afterFD, n, fds)
	}
}

// shortCall runs one call: connect, three frames of caller audio to the bot,
// one packet to the caller, close.
func shortCall(t *testing.T, e *Engine, tb *testBot, i int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := wacaller.New(wacaller.Config{Shape: wacaller.Pion})
	if err != nil {
		t.Fatalf("call %d: caller: %v", i, err)
	}
	defer c.Close()
	s, err := e.NewSession(ctx, SessionConfig{CallID: fmt.Sprintf("wacid.SEQ%d", i), Offer: c.Offer(), Bot: tb.config()})
	if err != nil {
		t.Fatalf("call %d: NewSession: %v", i, err)
	}
	defer s.Close()
	b := tb.accepted(ctx)
	if err := c.SetAnswer(s.Answer()); err != nil {
		t.Fatalf("call %d: %v", i, err)
	}
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatalf("call %d: WaitConnected: %v", i, err)
	}
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("call %d: caller: %v", i, err)
	}
	for range 3 {
		if err := c.SendOpus(SilenceFrame(48000)); err != nil {
			t.Fatalf("call %d: SendOpus: %v", i, err)
		}
	}
	b.wait(ctx, t, "three frames", func() bool { return b.audioMsgs >= 3 })
	waitFor(ctx, t, "a packet at the caller", func() bool { return c.Received() >= 1 })
	if err := s.Close(); err != nil {
		t.Fatalf("call %d: Close: %v", i, err)
	}
	if err := s.Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("call %d: Err() = %v; want ErrClosed", i, err)
	}
	select { // the bot saw the end: its server goroutine is done
	case <-b.closed:
	case <-ctx.Done():
		t.Fatalf("call %d: the bot connection is still open after Close", i)
	}
}

// settle waits up to five seconds for the goroutine and file descriptor
// counts to drop to at most the given ones (0 means just let things settle)
// and returns them.
func settle(t *testing.T, goroutines, fds int) (int, int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		g, f := runtime.NumGoroutine(), openFDs(t)
		if (goroutines > 0 && g <= goroutines && f <= fds) || time.Now().After(deadline) {
			return g, f
		}
		if goroutines == 0 {
			// A baseline: wait until two readings agree.
			time.Sleep(100 * time.Millisecond)
			if g2, f2 := runtime.NumGoroutine(), openFDs(t); g2 == g && f2 == f {
				return g, f
			}
			continue
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(entries)
}
