package media

import (
	"errors"
	"reflect"
	"testing"
)

const testFrame = 160 // 20 ms at 8 kHz

// ramp returns n samples counting up from start, so order is checkable.
func ramp(start, n int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(start + i)
	}
	return out
}

// playoutOp is one step of a playout script.
type playoutOp struct {
	push  []int16  // Push these samples
	mark  string   // PushMark this
	clear []string // Clear, expecting these pending marks (nil: none)
	pop   *popWant // Pop, expecting this
	isClr bool
}

type popWant struct {
	ok    bool
	first int16 // first sample, if ok
	last  int16 // last sample, if ok
	due   []string
}

func TestPlayout(t *testing.T) {
	pop := func(ok bool, first, last int16, due ...string) playoutOp {
		return playoutOp{pop: &popWant{ok: ok, first: first, last: last, due: due}}
	}
	silent := func(due ...string) playoutOp { return playoutOp{pop: &popWant{due: due}} }
	push := func(start, n int) playoutOp { return playoutOp{push: ramp(start, n)} }
	mark := func(m string) playoutOp { return playoutOp{mark: m} }
	clr := func(pending ...string) playoutOp { return playoutOp{isClr: true, clear: pending} }

	tests := []struct {
		name          string
		ops           []playoutOp
		wantUnderruns uint64
	}{
		{
			name: "chunks of any size come out as frames in order",
			ops: []playoutOp{
				push(0, 50), push(50, 270), push(320, 10),
				pop(true, 0, 159), pop(true, 160, 319),
				silent(),          // 10 samples left: held one tick
				pop(true, 320, 0), // then played, padded with silence
				silent(), silent(),
			},
		},
		{
			name: "a held piece joins audio that arrives in time",
			ops: []playoutOp{
				push(0, 240), pop(true, 0, 159),
				silent(), // 80 left, held
				push(240, 240),
				pop(true, 160, 319), pop(true, 320, 479),
			},
			wantUnderruns: 1,
		},
		{
			name: "marks come out after the audio before them",
			ops: []playoutOp{
				push(0, 320), mark("a"), push(320, 160), mark("b"), mark("c"),
				pop(true, 0, 159), pop(true, 160, 319, "a"), pop(true, 320, 479, "b", "c"), silent(),
			},
		},
		{
			name: "a mark on an empty buffer is due at the next pop",
			ops:  []playoutOp{mark("x"), silent("x"), silent()},
		},
		{
			name: "a short piece before a mark plays at once",
			ops: []playoutOp{
				push(0, 200), mark("end"),
				pop(true, 0, 159), pop(true, 160, 0, "end"), silent(),
			},
		},
		{
			name: "clear drops audio and returns pending marks",
			ops: []playoutOp{
				push(0, 160), mark("played"), push(160, 800), mark("p1"), push(960, 160), mark("p2"),
				pop(true, 0, 159, "played"),
				clr("p1", "p2"),
				silent(), silent(),
				push(5000, 160), pop(true, 5000, 5159),
			},
		},
		{
			name: "clear with nothing pending",
			ops:  []playoutOp{push(0, 100), clr(), silent()},
		},
		{
			name: "short gaps are underruns, pauses are not",
			ops: []playoutOp{
				push(0, 160), pop(true, 0, 159),
				silent(), // gap of one tick
				push(0, 160), pop(true, 0, 159),
				silent(), silent(), silent(), silent(), silent(), // 100 ms gap
				push(0, 160), pop(true, 0, 159),
				silent(), silent(), silent(), silent(), silent(), silent(), // 120 ms: a pause
				push(0, 160), pop(true, 0, 159),
			},
			wantUnderruns: 2,
		},
		{
			name: "gaps after clear are not underruns",
			ops: []playoutOp{
				push(0, 480), pop(true, 0, 159), clr(), silent(), push(0, 160), pop(true, 0, 159),
			},
		},
		{
			name: "the end of an utterance is not an underrun",
			ops: []playoutOp{
				push(0, 200), pop(true, 0, 159), silent(), pop(true, 160, 0), silent(), silent(),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPlayout[string](testFrame, 8000)
			frame := make([]int16, testFrame)
			for i, op := range tt.ops {
				switch {
				case op.push != nil:
					if err := p.Push(op.push); err != nil {
						t.Fatalf("op %d: Push error %v", i, err)
					}
				case op.mark != "":
					p.PushMark(op.mark)
				case op.isClr:
					if got := p.Clear(); !reflect.DeepEqual(got, op.clear) {
						t.Fatalf("op %d: Clear() = %q; want %q", i, got, op.clear)
					}
				case op.pop != nil:
					for j := range frame {
						frame[j] = -1
					}
					ok, due := p.Pop(frame, nil)
					w := op.pop
					if ok != w.ok || !reflect.DeepEqual(due, w.due) {
						t.Fatalf("op %d: Pop() = %v, %q; want %v, %q", i, ok, due, w.ok, w.due)
					}
					if ok && (frame[0] != w.first || frame[testFrame-1] != w.last) {
						t.Fatalf("op %d: Pop() frame %d..%d; want %d..%d", i, frame[0], frame[testFrame-1], w.first, w.last)
					}
					if !ok && frame[0] != -1 {
						t.Fatalf("op %d: Pop() without audio wrote to the frame", i)
					}
				}
			}
			if got := p.Underruns(); got != tt.wantUnderruns {
				t.Errorf("Underruns() = %d; want %d", got, tt.wantUnderruns)
			}
		})
	}
}

// TestPlayoutLimit checks the memory bound: the queue grows as needed up to
// its limit, keeps every sample in order across the growth, refuses (and
// keeps nothing of) a push that would pass the limit, and shrinks back once
// empty.
func TestPlayoutLimit(t *testing.T) {
	const limit = 20 * playoutInitial * testFrame // 40 s at 8 kHz
	p := NewPlayout[string](testFrame, limit)
	if got := p.Limit(); got != limit {
		t.Fatalf("Limit() = %d; want %d", got, limit)
	}
	if got := len(p.buf); got != playoutInitial*testFrame {
		t.Fatalf("initial ring = %d samples; want %d (2 s), memory is taken as needed", got, playoutInitial*testFrame)
	}
	frame := make([]int16, testFrame)
	// Pop a few frames first so that the ring wraps before it grows.
	if err := p.Push(ramp(0, 3*testFrame)); err != nil {
		t.Fatal(err)
	}
	var got []int16
	for range 2 {
		p.Pop(frame, nil)
		got = append(got, frame...)
	}
	const chunk = 7919 // a prime, so chunks straddle the ring's end
	pushed := 3 * testFrame
	for pushed+chunk <= limit+2*testFrame {
		if err := p.Push(ramp(pushed, chunk)); err != nil {
			t.Fatalf("Push at %d queued samples: %v", p.Buffered(), err)
		}
		pushed += chunk
	}
	before := p.Buffered()
	p.PushMark("after-limit")
	err := p.Push(ramp(pushed, chunk))
	if !errors.Is(err, ErrPlayoutOverflow) {
		t.Fatalf("Push past the limit = %v; want ErrPlayoutOverflow", err)
	}
	if p.Buffered() != before {
		t.Errorf("a refused Push queued %d samples; want none", p.Buffered()-before)
	}
	for p.Buffered() > 0 {
		ok, due := p.Pop(frame, nil)
		if !ok {
			continue
		}
		got = append(got, frame...)
		if len(due) > 0 && p.Buffered() > 0 {
			t.Errorf("mark due with %d samples still queued", p.Buffered())
		}
	}
	for i := 0; i < pushed; i++ {
		if got[i] != int16(i) {
			t.Fatalf("sample %d = %d; want %d: audio lost or reordered across growth", i, got[i], int16(i))
		}
	}
	if got := len(p.buf); got != playoutInitial*testFrame {
		t.Errorf("ring after draining = %d samples; want it back to %d", got, playoutInitial*testFrame)
	}
}

func TestPlayoutAllocs(t *testing.T) {
	p := NewPlayout[string](testFrame, 8000)
	in := ramp(0, 237)
	frame := make([]int16, testFrame)
	due := make([]string, 0, 4)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := p.Push(in); err != nil {
			t.Fatal(err)
		}
		for p.Buffered() >= testFrame {
			p.Pop(frame, due[:0])
		}
	})
	if allocs != 0 {
		t.Errorf("Push+Pop allocations = %v; want 0", allocs)
	}
}

// TestPlayoutStartLead: with a lead of two frames, an utterance that starts
// with one frame queued waits until the second arrives (or two ticks), one
// that starts with two plays at once, and a resumption after an underrun
// does not wait.
func TestPlayoutStartLead(t *testing.T) {
	frame := make([]int16, testFrame)
	p := NewPlayout[string](testFrame, 100*testFrame)
	p.SetStartLead(2)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// One frame queued: held for the second, which arrives a tick later.
	must(p.Push(ramp(0, testFrame)))
	if ok, _ := p.Pop(frame, nil); ok {
		t.Fatal("utterance started with one of two lead frames queued")
	}
	must(p.Push(ramp(testFrame, testFrame)))
	if ok, _ := p.Pop(frame, nil); !ok || frame[0] != 0 {
		t.Fatalf("Pop with the lead queued = %v, first sample %d; want the first frame", ok, frame[0])
	}
	// Played one of two: the other plays, then the queue runs dry for one
	// tick (an underrun); the resumption plays at once, without a lead.
	if ok, _ := p.Pop(frame, nil); !ok {
		t.Fatal("second frame not played")
	}
	if ok, _ := p.Pop(frame, nil); ok {
		t.Fatal("audio from an empty queue")
	}
	must(p.Push(ramp(0, testFrame)))
	if ok, _ := p.Pop(frame, nil); !ok {
		t.Error("resumption after an underrun waited for a lead")
	}
	if got := p.Underruns(); got != 1 {
		t.Errorf("Underruns() = %d; want 1", got)
	}
	// After a pause (silence past the underrun window), a lone frame
	// waits at most two ticks, then plays.
	for range underrunWindow + 1 {
		p.Pop(frame, nil)
	}
	must(p.Push(ramp(0, testFrame)))
	waited := 0
	for ok := false; !ok; waited++ {
		ok, _ = p.Pop(frame, nil)
		if waited > 3 {
			t.Fatal("a lone frame never played")
		}
	}
	if waited != 3 {
		t.Errorf("a lone frame played on tick %d; want 3 (two ticks of lead first)", waited)
	}
	// A lone frame followed by a mark (a whole short utterance) plays at once.
	for range underrunWindow + 1 {
		p.Pop(frame, nil)
	}
	must(p.Push(ramp(0, testFrame/2)))
	p.PushMark("end")
	if ok, due := p.Pop(frame, nil); !ok || len(due) != 1 {
		t.Errorf("short utterance with its mark = %v, %v; want played at once with the mark due", ok, due)
	}
}
