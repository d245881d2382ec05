package media

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// dialects are the two bot wire formats, with the audio each test uses.
var dialects = []struct {
	name     string
	protocol bot.Protocol
	rate     int
	caller   callerConfig
	inHz     float64 // caller to bot
	outHz    float64 // bot to caller
}{
	{name: "twilio", protocol: bot.Twilio, rate: 8000, caller: callerConfig{tePT: 101, teClock: 8000}, inHz: 440, outHz: 600},
	{name: "vonage", protocol: bot.Vonage, rate: 16000, caller: callerConfig{tePT: 100, teClock: 48000}, inHz: 1000, outHz: 1500},
}

func TestSessionAnswer(t *testing.T) {
	leakCheck(t)
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Twilio, 8000)
	call := startCall(t, e, tb, callerConfig{tePT: 101, teClock: 8000})

	answer := call.s.Answer()
	var fingerprints, candidates int
	for line := range strings.Lines(answer) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=fingerprint:"):
			fingerprints++
			if !strings.HasPrefix(line, "a=fingerprint:sha-256 ") {
				t.Errorf("answer has %q; want only sha-256 fingerprints", line)
			}
		case strings.HasPrefix(line, "a=candidate:"):
			candidates++
			if !strings.Contains(line, " 127.0.0.1 ") {
				t.Errorf("answer candidate %q is not on loopback", line)
			}
		case strings.HasPrefix(line, "a=setup:") && line != "a=setup:active":
			t.Errorf("answer has %q; want a=setup:active", line)
		case line == "a=ice-lite":
			t.Error("answer says a=ice-lite; we are a full agent")
		}
	}
	for _, want := range []string{"a=setup:active", "a=rtpmap:111 opus/48000/2", "a=rtpmap:101 telephone-event/8000"} {
		if !strings.Contains(answer, want+"\r\n") {
			t.Errorf("answer lacks %q:\n%s", want, answer)
		}
	}
	if fingerprints == 0 || candidates == 0 {
		t.Errorf("answer has %d fingerprints and %d candidates; want some of each", fingerprints, candidates)
	}
	// WhatsApp's side is ICE-lite, so we must be the controlling agent.
	if role := call.s.sender.Transport().ICETransport().Role(); role != webrtc.ICERoleControlling {
		t.Errorf("our ICE role = %v; want controlling", role)
	}

	// The bot got Twilio's opening messages with the call's parameters.
	call.b.wait(call.ctx, t, "start", func() bool { return len(call.b.msgs) >= 2 })
	start := call.b.find("start")
	if len(start) != 1 || start[0].Start.CustomParameters["whatsapp_call_id"] != "wacid.TEST" {
		t.Errorf("bot start messages = %+v; want one with whatsapp_call_id", start)
	}
	call.b.checkWire(t)
}

func TestSessionAudio(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			leakCheck(t)
			e := newTestEngine(t, nil)
			tb := newTestBot(t, d.protocol, d.rate)
			call := startCall(t, e, tb, d.caller)
			ctx, b, c := call.ctx, call.b, call.c

			// Caller to bot: a tone encoded at 48 kHz arrives decoded at the
			// bot's rate, at the same frequency and level.
			const amp = 8000
			c.sendTone(d.inHz, amp)
			b.wait(ctx, t, "1.2 s of caller audio", func() bool { return len(b.audio) >= d.rate*6/5 })
			got := b.audioTail(d.rate / 2)
			if a := goertzel(got, d.rate, d.inHz); !within(a, amp, 0.25) {
				t.Errorf("bot received %v Hz at amplitude %.0f; want about %d", d.inHz, a, amp)
			}
			if a := goertzel(got, d.rate, d.inHz*1.5); a > amp/10 {
				t.Errorf("bot received %v Hz at amplitude %.0f; want little", d.inHz*1.5, a)
			}

			// Bot to caller: a tone sent in odd-sized chunks arrives at the
			// same frequency.
			from := c.receivedLen()
			b.sendAudio(ctx, t, tone(d.rate, d.rate, 0, d.outHz, amp), d.rate*3/80)
			waitFor(ctx, t, "the bot's tone at the caller", func() bool {
				return toneFrames(c.received(from), callerRate, d.outHz, amp/2) >= 30
			})
			heard := c.received(from)
			if a := maxToneLevel(heard, callerRate, d.outHz); !within(a, amp, 0.25) {
				t.Errorf("caller received %v Hz at amplitude %.0f; want about %d", d.outHz, a, amp)
			}

			st := call.s.Stats()
			if st.PacketsIn == 0 || st.PacketsOut == 0 || st.Duration <= 0 {
				t.Errorf("Stats() = %+v; want packets both ways and a duration", st)
			}
			b.checkWire(t)
		})
	}
}

func TestSessionMarksAndClear(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			leakCheck(t)
			e := newTestEngine(t, nil)
			tb := newTestBot(t, d.protocol, d.rate)
			call := startCall(t, e, tb, d.caller)
			ctx, b, c := call.ctx, call.b, call.c
			const amp = 8000

			// Marks are echoed in order, each once the audio before it has
			// been sent, which takes real time: 300 ms, then 200 ms more.
			sent := time.Now()
			b.sendAudio(ctx, t, tone(d.rate, d.rate*3/10, 0, d.outHz, amp), d.rate/25)
			b.sendMark(ctx, t, "m1")
			b.sendAudio(ctx, t, tone(d.rate, d.rate/5, 0, d.outHz, amp), d.rate/25)
			b.sendMark(ctx, t, "m2")
			b.wait(ctx, t, "two mark echoes", func() bool { return len(b.msgsWithMarksLocked()) >= 2 })
			if got := b.markEchoes(); !reflect.DeepEqual(got, []string{"m1", "m2"}) {
				t.Fatalf("mark echoes = %q; want [m1 m2]", got)
			}
			echoes := b.msgsWithMarks()
			if el := echoes[0].at.Sub(sent); el < 280*time.Millisecond {
				t.Errorf("m1 echoed %v after its 300 ms of audio was sent; want after the audio", el)
			}
			if el := echoes[1].at.Sub(sent); el < 480*time.Millisecond {
				t.Errorf("m2 echoed %v after its 500 ms of audio was sent; want after the audio", el)
			}

			// Clear cuts the audio within 40 ms and answers with the pending
			// marks (twilio) or websocket:cleared (vonage).
			from := c.receivedLen()
			b.sendAudio(ctx, t, tone(d.rate, d.rate*3/2, 0, d.outHz, amp), d.rate/50)
			b.sendMark(ctx, t, "pending")
			waitFor(ctx, t, "the caller hearing the tone", func() bool {
				return toneFrames(c.received(from), callerRate, d.outHz, amp/2) >= 10
			})
			cleared := c.receivedLen()
			b.sendClear(ctx, t)
			switch d.protocol {
			case bot.Twilio:
				b.wait(ctx, t, "the pending mark", func() bool { return len(b.msgsWithMarksLocked()) >= 3 })
				if got := b.markEchoes(); !reflect.DeepEqual(got, []string{"m1", "m2", "pending"}) {
					t.Errorf("mark echoes after clear = %q; want [m1 m2 pending]", got)
				}
			case bot.Vonage:
				b.wait(ctx, t, "websocket:cleared", func() bool { return hasEvent(b.msgs, "websocket:cleared") })
				if got := b.markEchoes(); !reflect.DeepEqual(got, []string{"m1", "m2"}) {
					t.Errorf("notify echoes after clear = %q; want [m1 m2] (pending audio was dropped, not played)", got)
				}
			}
			waitFor(ctx, t, "300 ms after the clear", func() bool { return c.receivedLen()-cleared >= 15*callerFrame })
			after := c.received(cleared)
			if n := toneFrames(after, callerRate, d.outHz, amp/4); n > 2 {
				t.Errorf("caller heard %d frames of tone after the clear; want at most 2 (40 ms)", n)
			}
			b.checkWire(t)
		})
	}
}

func TestSessionDTMF(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			leakCheck(t)
			e := newTestEngine(t, nil)
			tb := newTestBot(t, d.protocol, d.rate)
			var hooked atomic.Int32
			call := startCall(t, e, tb, d.caller, func(sc *SessionConfig) {
				sc.Hooks.OnDTMF = func(DTMFEvent) { hooked.Add(1) }
			})
			ctx, b, c := call.ctx, call.b, call.c

			c.sendTone(d.inHz, 4000) // DTMF shares the audio's sequence numbers
			c.sendDTMF(ctx, "123#")
			event := map[bot.Protocol]string{bot.Twilio: "dtmf", bot.Vonage: "websocket:dtmf"}[d.protocol]
			b.wait(ctx, t, "four digits", func() bool { return countEvents(b.msgs, event) >= 4 })
			time.Sleep(100 * time.Millisecond) // room for a wrong duplicate to show up
			var digits []string
			for _, m := range b.find(event) {
				switch d.protocol {
				case bot.Twilio:
					if m.Dtmf == nil || m.Dtmf.Track != "inbound_track" {
						t.Errorf("dtmf message %+v; want dtmf.track inbound_track", m)
						continue
					}
					digits = append(digits, m.Dtmf.Digit)
				case bot.Vonage:
					digits = append(digits, m.Digit)
					if m.Duration == nil || *m.Duration != 100 {
						t.Errorf("websocket:dtmf duration = %v; want 100 (ms)", m.Duration)
					}
				}
			}
			if !reflect.DeepEqual(digits, []string{"1", "2", "3", "#"}) {
				t.Errorf("bot got digits %q; want [1 2 3 #], each once", digits)
			}
			if st := call.s.Stats(); st.DTMFCount != 4 || st.PacketsLost != 0 {
				t.Errorf("Stats() DTMFCount %d PacketsLost %d; want 4 and 0", st.DTMFCount, st.PacketsLost)
			}
			if n := hooked.Load(); n != 4 {
				t.Errorf("OnDTMF called %d times; want 4", n)
			}
			b.checkWire(t)
		})
	}
}

func TestSessionBotHangup(t *testing.T) {
	leakCheck(t)
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Twilio, 8000)
	call := startCall(t, e, tb, callerConfig{})
	call.c.sendTone(440, 4000)

	if err := call.b.ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("bot close: %v", err)
	}
	select {
	case <-call.s.Done():
	case <-call.ctx.Done():
		t.Fatal("session did not end after the bot hung up")
	}
	if err := call.s.Err(); !errors.Is(err, ErrBotHangup) {
		t.Errorf("Err() = %v; want ErrBotHangup", err)
	}
	if err := call.s.Close(); err != nil {
		t.Errorf("Close() = %v; want nil", err)
	}
	if err := call.s.Err(); !errors.Is(err, ErrBotHangup) {
		t.Errorf("Err() after Close = %v; want still ErrBotHangup", err)
	}
}

func TestSessionCloseStopsBot(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			leakCheck(t)
			e := newTestEngine(t, nil)
			tb := newTestBot(t, d.protocol, d.rate)
			call := startCall(t, e, tb, d.caller)
			call.c.sendTone(d.inHz, 4000)
			call.b.wait(call.ctx, t, "some audio", func() bool { return call.b.audioMsgs >= 5 })

			if err := call.s.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			if err := call.s.Close(); err != nil {
				t.Errorf("second Close() = %v; want nil", err)
			}
			select {
			case <-call.s.Done():
			default:
				t.Error("Done not closed after Close")
			}
			if err := call.s.Err(); !errors.Is(err, ErrClosed) {
				t.Errorf("Err() = %v; want ErrClosed", err)
			}
			select {
			case <-call.b.closed:
			case <-call.ctx.Done():
				t.Fatal("bot connection still open after Close")
			}
			if call.b.closeStatus != websocket.StatusNormalClosure {
				t.Errorf("bot saw close status %v; want %v", call.b.closeStatus, websocket.StatusNormalClosure)
			}
			msgs := call.b.events()
			if d.protocol == bot.Twilio {
				if last := msgs[len(msgs)-1]; last.Event != "stop" || last.StreamSid == "" {
					t.Errorf("last bot message %+v; want stop with the streamSid", last)
				}
			}
			call.b.checkWire(t)
		})
	}
}

func TestSessionCallerGone(t *testing.T) {
	leakCheck(t)
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Twilio, 8000)
	call := startCall(t, e, tb, callerConfig{})
	call.c.sendTone(440, 4000)

	call.c.close()
	select {
	case <-call.s.Done():
	case <-time.After(testGrace + 5*time.Second):
		t.Fatal("session did not end after the caller went away")
	}
	if err := call.s.Err(); !errors.Is(err, ErrMediaFailed) {
		t.Errorf("Err() = %v; want ErrMediaFailed", err)
	}
	if err := call.s.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
}

func TestSessionDisconnectGrace(t *testing.T) {
	leakCheck(t)
	const iceTimeout = 400 * time.Millisecond
	e := newTestEngineOpts(t, nil, engineOptions{iceDisconnected: iceTimeout})
	tb := newTestBot(t, bot.Twilio, 8000)
	call := startCall(t, e, tb, callerConfig{cuttable: true})

	// A caller that is quiet but alive answers our consent checks.
	time.Sleep(3 * iceTimeout)
	if err := call.s.Err(); err != nil {
		t.Fatalf("quiet caller: session ended with %v", err)
	}

	// A caller that vanishes ends the call once ICE has been disconnected
	// for the grace period.
	cut := time.Now()
	call.c.cut()
	select {
	case <-call.s.Done():
	case <-call.ctx.Done():
		t.Fatal("session did not end after the caller vanished")
	}
	// ICE notices the silence after about iceTimeout (measured from the last
	// packet, up to a keepalive interval before the cut); the grace follows.
	if el, min := time.Since(cut), iceTimeout/2+testGrace; el < min {
		t.Errorf("session ended %v after the caller vanished; want after ICE timeout plus grace (>= %v)", el, min)
	}
	if err := call.s.Err(); !errors.Is(err, ErrMediaFailed) || !strings.Contains(err.Error(), "disconnected") {
		t.Errorf("Err() = %v; want ErrMediaFailed after disconnection", err)
	}
}

func TestNewSessionErrors(t *testing.T) {
	leakCheck(t)
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Twilio, 8000)

	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "ws://" + l.Addr().String() + "/bot"
	_ = l.Close()

	tests := []struct {
		name    string
		caller  callerConfig
		offer   string // overrides the caller's offer
		url     string // overrides the bot URL
		codec   Codec
		wantErr error
	}{
		{name: "bot not listening", url: deadURL, wantErr: ErrBotUnavailable},
		{name: "garbage offer", offer: "v=0\r\nnonsense\r\n", wantErr: ErrBadOffer},
		{name: "pcmu offer, codec opus", caller: callerConfig{pcmuOnly: true}, codec: CodecOpus, wantErr: ErrBadOffer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			offer := tt.offer
			if offer == "" {
				offer = newCaller(t, tt.caller).offer
			}
			cfg := tb.config()
			cfg.DialTimeout = 300 * time.Millisecond
			if tt.url != "" {
				cfg.URL = tt.url
			}
			s, err := e.NewSession(ctx, SessionConfig{CallID: "wacid.BAD", Offer: offer, Bot: cfg, Codec: tt.codec})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("NewSession() error = %v; want %v", err, tt.wantErr)
			}
			if s != nil {
				t.Error("NewSession() returned a session with an error")
				_ = s.Close()
			}
		})
	}
	// A failed setup leaves no bot connection open.
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, b := range tb.all {
		select {
		case <-b.closed:
		case <-time.After(5 * time.Second):
			t.Error("a bot connection from a failed setup is still open")
		}
	}
}

func TestSessionOverUDPMux(t *testing.T) {
	leakCheck(t)
	mux, err := NewUDPMux(0, loopback, nil)
	if err != nil {
		t.Fatalf("NewUDPMux: %v", err)
	}
	t.Cleanup(func() { _ = mux.Close() })
	port := mux.GetListenAddresses()[0].(*net.UDPAddr).Port
	e := newTestEngine(t, func(c *EngineConfig) { c.UDPMux = mux })
	tb := newTestBot(t, bot.Twilio, 8000)

	// Two calls share the one port.
	for range 2 {
		call := startCall(t, e, tb, callerConfig{})
		if !strings.Contains(call.s.Answer(), " 127.0.0.1 "+itoa(port)+" typ host") {
			t.Errorf("answer candidates do not use the mux port %d:\n%s", port, call.s.Answer())
		}
		call.c.sendTone(440, 4000)
		call.b.wait(call.ctx, t, "caller audio", func() bool { return call.b.audioMsgs >= 5 })
	}
}

func TestEnginePublicIPs(t *testing.T) {
	leakCheck(t)
	e := newTestEngine(t, func(c *EngineConfig) { c.PublicIPs = []string{"203.0.113.7"} })
	tb := newTestBot(t, bot.Twilio, 8000)
	ctx := testContext(t)
	c := newCaller(t, callerConfig{})
	s, err := e.NewSession(ctx, SessionConfig{CallID: "wacid.NAT", Offer: c.offer, Bot: tb.config()})
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer s.Close()
	answer := s.Answer()
	if !strings.Contains(answer, " 203.0.113.7 ") || strings.Contains(answer, " 127.0.0.1 ") {
		t.Errorf("answer candidates are not the public IP only:\n%s", answer)
	}
}

func TestEngineCloseClosesSessions(t *testing.T) {
	leakCheck(t)
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Twilio, 8000)
	call := startCall(t, e, tb, callerConfig{})
	if err := e.Close(); err != nil {
		t.Fatalf("Engine.Close() = %v", err)
	}
	select {
	case <-call.s.Done():
	default:
		t.Error("session still running after Engine.Close")
	}
	c := newCaller(t, callerConfig{})
	if _, err := e.NewSession(call.ctx, SessionConfig{Offer: c.offer, Bot: tb.config()}); !errors.Is(err, ErrClosed) {
		t.Errorf("NewSession after Close error = %v; want ErrClosed", err)
	}
}

// msgsWithMarks returns the mark echoes (twilio mark, vonage notify).
func (b *botSide) msgsWithMarks() []botMsg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.msgsWithMarksLocked()
}

func (b *botSide) msgsWithMarksLocked() []botMsg {
	var out []botMsg
	for _, m := range b.msgs {
		if m.Event == "mark" || m.Event == "websocket:notify" {
			out = append(out, m)
		}
	}
	return out
}

func hasEvent(msgs []botMsg, event string) bool { return countEvents(msgs, event) > 0 }

func countEvents(msgs []botMsg, event string) int {
	n := 0
	for _, m := range msgs {
		if m.Event == event {
			n++
		}
	}
	return n
}

// waitFor polls cond until it is true, or fails the test when ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// maxToneLevel returns the highest freq amplitude over 100 ms windows of x.
func maxToneLevel(x []int16, rate int, freq float64) float64 {
	win, step := rate/10, rate/50
	best := 0.0
	for off := 0; off+win <= len(x); off += step {
		best = max(best, goertzel(x[off:off+win], rate, freq))
	}
	return best
}

func itoa(n int) string { return strconv.Itoa(n) }
