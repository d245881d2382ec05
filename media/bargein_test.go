package media

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// TestBargeInFarAhead is the barge-in case real bots create: the bot sends a
// 30 s answer at 10x real time, with a mark after every second of audio,
// and clears once the caller has heard one second of it. The whole answer
// is queued (and counted in Stats), the clear takes effect at once however
// far ahead the bot is, every pending mark is echoed (twilio) or
// websocket:cleared is sent (vonage), and nothing leaks.
func TestBargeInFarAhead(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			leakCheck(t)
			e := newTestEngine(t, nil)
			tb := newTestBot(t, d.protocol, d.rate)
			call := startCall(t, e, tb, d.caller)
			ctx, b, c := call.ctx, call.b, call.c
			const amp = 8000
			answer := tone(d.rate, 30*d.rate, 0, d.outHz, amp)

			from := c.receivedLen()
			chunk := d.rate / 10 // 100 ms every 10 ms: 10x real time
			var marks []string
			sent := 0
			for sent < len(answer) {
				b.sendAudio(ctx, t, answer[sent:sent+chunk], chunk)
				sent += chunk
				if sent%d.rate == 0 {
					name := "s" + strconv.Itoa(sent/d.rate)
					b.sendMark(ctx, t, name)
					marks = append(marks, name)
				}
				if toneFrames(c.received(from), callerRate, d.outHz, amp/2) >= 50 {
					break // the caller heard one second: barge in
				}
				time.Sleep(10 * time.Millisecond)
			}
			if sent >= len(answer) {
				t.Fatal("the caller never heard one second of the answer")
			}
			if sent < 5*d.rate {
				t.Fatalf("the bot was only %d ms ahead at the barge-in; want several seconds", sent*1000/d.rate)
			}
			// Metrics still count queued audio, however much there is.
			waitFor(ctx, t, "the queued answer counted", func() bool {
				return call.s.Stats().BufferedMs >= sent*1000/d.rate-2000
			})

			cleared := c.receivedLen()
			b.sendClear(ctx, t)
			switch d.protocol {
			case bot.Twilio:
				b.wait(ctx, t, "every mark echoed", func() bool { return len(b.msgsWithMarksLocked()) >= len(marks) })
				if got := b.markEchoes(); !reflect.DeepEqual(got, marks) {
					t.Errorf("mark echoes = %q; want every mark, in order: %q", got, marks)
				}
			case bot.Vonage:
				b.wait(ctx, t, "websocket:cleared", func() bool { return hasEvent(b.msgs, "websocket:cleared") })
				// Played notifies were echoed before; the dropped ones are
				// answered by websocket:cleared alone.
				if got := b.markEchoes(); len(got) > 1 || !slices.Equal(got, marks[:len(got)]) {
					t.Errorf("notify echoes = %q; want at most the first second's, %q", got, marks[:1])
				}
			}
			if got := call.s.Stats().BufferedMs; got != 0 {
				t.Errorf("BufferedMs after the clear = %d; want 0", got)
			}
			waitFor(ctx, t, "300 ms after the clear", func() bool { return c.receivedLen()-cleared >= 15*callerFrame })
			// The frame in flight when the clear was sent, and at most one
			// more: the clear is applied by the next 20 ms tick.
			if n := toneFrames(c.received(cleared), callerRate, d.outHz, amp/4); n > 2 {
				t.Errorf("caller heard %d frames of the answer after the clear; want at most 2 (the frame in flight and one)", n)
			}
			if err := call.s.Err(); err != nil {
				t.Errorf("session ended: %v", err)
			}
			b.checkWire(t)
		})
	}
}

// TestBotGoodbyePlayed has the bot send its goodbye (600 ms, far faster
// than real time) and close the WebSocket at once, as bots do. The caller
// hears all of it before the session ends with ErrBotHangup, named once.
func TestBotGoodbyePlayed(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			leakCheck(t)
			e := newTestEngine(t, nil)
			tb := newTestBot(t, d.protocol, d.rate)
			call := startCall(t, e, tb, d.caller)
			ctx, b, c := call.ctx, call.b, call.c
			const amp = 8000

			from := c.receivedLen()
			b.sendAudio(ctx, t, tone(d.rate, d.rate*6/10, 0, d.outHz, amp), d.rate/50)
			closed := time.Now()
			if err := b.ws.Close(websocket.StatusNormalClosure, "goodbye"); err != nil {
				t.Fatalf("bot close: %v", err)
			}
			select {
			case <-call.s.Done():
			case <-ctx.Done():
				t.Fatal("session did not end after the bot's goodbye")
			}
			took := time.Since(closed)
			err := call.s.Err()
			if !errors.Is(err, ErrBotHangup) {
				t.Fatalf("Err() = %v; want ErrBotHangup", err)
			}
			if n := strings.Count(err.Error(), "bot hung up"); n != 1 {
				t.Errorf("Err() = %q names the hang-up %d times; want once", err, n)
			}
			if took < 500*time.Millisecond {
				t.Errorf("session ended %v after the bot closed; want after its 600 ms goodbye played", took)
			}
			time.Sleep(100 * time.Millisecond) // let the last packets arrive
			if n := toneFrames(c.received(from), callerRate, d.outHz, amp/2); n < 28 {
				t.Errorf("caller heard %d frames of the 30-frame goodbye; want all of it (28 or more)", n)
			}
		})
	}
}
