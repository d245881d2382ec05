package media

import (
	"testing"
	"time"
)

// TestSessionHoldPlayout checks the accept gate: while playout is held, the
// caller hears only silence and no mark is echoed, however much the bot has
// sent; once StartPlayout is called, the whole greeting is heard from its
// first frame and then the mark is echoed.
func TestSessionHoldPlayout(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			leakCheck(t)
			e := newTestEngine(t, nil)
			tb := newTestBot(t, d.protocol, d.rate)
			call := startCall(t, e, tb, d.caller, func(cfg *SessionConfig) { cfg.HoldPlayout = true })
			ctx, b, c := call.ctx, call.b, call.c
			const amp = 8000
			head, body := d.outHz*1.5, d.outHz

			// The greeting: 200 ms of one tone, then 400 ms of another, sent
			// at once (faster than real time), then a mark.
			greeting := append(tone(d.rate, d.rate/5, 0, head, amp), tone(d.rate, d.rate*2/5, 0, body, amp)...)
			b.sendAudio(ctx, t, greeting, d.rate/10)
			b.sendMark(ctx, t, "greeting")

			waitFor(ctx, t, "600 ms of caller audio while held", func() bool { return c.receivedLen() >= 30*callerFrame })
			held := c.received(0)
			if n := toneFrames(held, callerRate, head, amp/10) + toneFrames(held, callerRate, body, amp/10); n > 0 {
				t.Errorf("caller heard %d frames of the greeting while playout was held; want none", n)
			}
			if got := b.markEchoes(); len(got) != 0 {
				t.Errorf("mark echoes while held = %q; want none", got)
			}
			if st := call.s.Stats(); st.BufferedMs < 550 {
				t.Errorf("Stats().BufferedMs = %d while held; want the whole 600 ms greeting queued", st.BufferedMs)
			}

			from := c.receivedLen()
			started := time.Now()
			call.s.StartPlayout()
			b.wait(ctx, t, "the greeting's mark", func() bool { return len(b.msgsWithMarksLocked()) >= 1 })
			if el := time.Since(started); el < 550*time.Millisecond {
				t.Errorf("mark echoed %v after StartPlayout; want after the 600 ms greeting", el)
			}
			waitFor(ctx, t, "100 ms after the greeting", func() bool { return c.receivedLen()-from >= 35*callerFrame })
			heard := c.received(from)
			headFrames, bodyFrames := toneFrames(heard, callerRate, head, amp/2), toneFrames(heard, callerRate, body, amp/2)
			if headFrames < 8 || bodyFrames < 18 {
				t.Errorf("caller heard %d frames of the greeting's head and %d of its body; want about 10 and 20", headFrames, bodyFrames)
			}
			if first := firstToneFrame(heard, callerRate, head, amp/2); first < 0 || first > firstToneFrame(heard, callerRate, body, amp/2) {
				t.Errorf("greeting's head starts at frame %d, after its body; want it first", first)
			}
			b.checkWire(t)
		})
	}
}

// firstToneFrame returns the index of the first 20 ms frame of x (at rate)
// whose freq component is above threshold, or -1.
func firstToneFrame(x []int16, rate int, freq, threshold float64) int {
	frame := rate / 50
	for i, off := 0, 0; off+frame <= len(x); i, off = i+1, off+frame {
		if goertzel(x[off:off+frame], rate, freq) > threshold {
			return i
		}
	}
	return -1
}
