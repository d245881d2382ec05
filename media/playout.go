package media

import (
	"fmt"
	"sync"
)

// DefaultPlayoutLimit is how much bot audio a Session queues for the caller
// at most, in bytes of 16-bit PCM: 8 MiB, that is 4 min 22 s at 8 kHz,
// 2 min 11 s at 16 kHz and 87 s at 24 kHz. Real bots send their answers far
// faster than real time, so the queue is sized by memory, not by a few
// seconds; memory is only taken as the queue grows. A bot that queues more
// ends the call (see Playout.Push).
const DefaultPlayoutLimit = 8 << 20

// StartLead is the playout lead a Session gives each bot utterance, in
// 20 ms frames (see Playout.SetStartLead).
const StartLead = 2

// playoutInitial is the queue's starting size (and the size it shrinks back
// to once empty), in frames: 0.5 s, 8 KiB at 8 kHz. A bot that sends
// further ahead grows it by doubling; a call whose bot is quiet or speaks
// in real time keeps it small.
const playoutInitial = 25

// underrunWindow is the longest gap in the bot's audio that counts as an
// underrun rather than a pause. See Playout.
const underrunWindow = 5 // frames (100 ms)

// playoutMark is a bot mark queued behind the audio that precedes it.
type playoutMark[M any] struct {
	at   int64 // absolute sample position: due once this many samples were popped
	mark M
}

// Playout is the queue between the bot and the 20 ms send clock.
//
// Bot audio of any chunk size goes in with Push; Pop takes out one frame per
// tick. Marks go in with PushMark in order with the audio and come out of Pop
// once all audio pushed before them has been popped. Clear drops all queued
// audio at once and returns the marks that were still pending.
//
// Push never blocks, so the bot's WebSocket is read continuously and a clear
// takes effect at the next tick however far ahead the bot is. The queue is
// bounded by memory (the limit given to NewPlayout): a Push that would go
// over it queues nothing and fails with ErrPlayoutOverflow. Nothing is
// dropped silently; a Session ends the call as a bot failure.
//
// Less than one frame left: Pop holds a short piece back for one tick, in case
// the rest of it is on its way, and then plays it padded with silence (this
// also lets a bot that sends, say, 30 ms chunks in real time settle into a
// steady one-frame lead instead of a gap every other frame). A short piece
// followed by a mark is the end of an utterance and is played at once.
//
// Underruns: an underrun is a gap of at most 100 ms in the bot's audio, that
// is, the buffer ran dry while the bot was speaking (the previous tick played
// bot audio) and audio arrived again within five ticks. It is counted when the
// audio resumes. Longer gaps are pauses in speech, not underruns, and gaps
// after Clear are never counted.
//
// M is the mark type (bot.Mark in a Session); marks are opaque to the buffer.
// A Playout is safe for concurrent use by one pushing and one popping
// goroutine.
type Playout[M any] struct {
	frame   int // samples per 20 ms frame
	limit   int // most samples queued
	initial int // starting ring size, in samples

	mu      sync.Mutex
	buf     []int16 // ring buffer, grown by doubling up to limit
	head    int     // index of the oldest sample
	n       int     // samples queued
	pushed  int64   // samples ever pushed
	popped  int64   // samples ever popped (including discarded by Clear)
	marks   []playoutMark[M]
	lead    int  // frames queued before an utterance starts playing; see SetStartLead
	waited  int  // ticks an utterance start has waited for its lead
	held    bool // a short piece was held back on the previous tick
	playing bool // the previous tick played bot audio
	gap     int  // ticks since the last audio while in a possible underrun, 0 if none
	under   uint64
}

// NewPlayout returns a Playout for frames of frameSamples samples that
// queues up to limit samples (rounded up to whole frames, at least two).
func NewPlayout[M any](frameSamples, limit int) *Playout[M] {
	if frameSamples <= 0 {
		frameSamples = 1
	}
	frames := max((limit+frameSamples-1)/frameSamples, 2)
	initial := min(frames, playoutInitial) * frameSamples
	return &Playout[M]{
		frame:   frameSamples,
		limit:   frames * frameSamples,
		initial: initial,
		buf:     make([]int16, initial),
	}
}

// FrameSamples returns the frame size in samples.
func (p *Playout[M]) FrameSamples() int { return p.frame }

// Limit returns the most samples the Playout queues.
func (p *Playout[M]) Limit() int { return p.limit }

// Push appends pcm to the queue. If that would queue more than the limit,
// it queues nothing and returns an error wrapping ErrPlayoutOverflow.
func (p *Playout[M]) Push(pcm []int16) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n+len(pcm) > p.limit {
		return fmt.Errorf("%w: %d samples queued, %d more would pass the limit of %d",
			ErrPlayoutOverflow, p.n, len(pcm), p.limit)
	}
	if p.n+len(pcm) > len(p.buf) {
		p.grow(p.n + len(pcm))
	}
	tail := (p.head + p.n) % len(p.buf)
	c := copy(p.buf[tail:], pcm)
	copy(p.buf, pcm[c:])
	p.n += len(pcm)
	p.pushed += int64(len(pcm))
	return nil
}

// grow reallocates the ring to hold at least need samples, doubling, at
// most the limit. p.mu is held.
func (p *Playout[M]) grow(need int) {
	size := len(p.buf)
	for size < need {
		size *= 2
	}
	buf := make([]int16, min(size, p.limit))
	c := copy(buf, p.buf[p.head:min(p.head+p.n, len(p.buf))])
	copy(buf[c:p.n], p.buf)
	p.buf, p.head = buf, 0
}

// shrink gives back the memory of a grown ring once it is empty. p.mu is
// held.
func (p *Playout[M]) shrink() {
	if p.n == 0 && len(p.buf) > p.initial {
		p.buf, p.head = make([]int16, p.initial), 0
	}
}

// PushMark queues m behind the audio pushed so far.
func (p *Playout[M]) PushMark(m M) {
	p.mu.Lock()
	p.marks = append(p.marks, playoutMark[M]{at: p.pushed, mark: m})
	p.mu.Unlock()
}

// Pop fills frame (FrameSamples long) with the next 20 ms of bot audio and
// reports whether there was any; if not, frame is left untouched and the
// caller sends silence. Marks whose preceding audio has now all been popped
// are appended to due, in order.
func (p *Playout[M]) Pop(frame []int16, due []M) (bool, []M) {
	p.mu.Lock()
	defer p.mu.Unlock()

	ok := false
	switch {
	case p.n > 0 && p.startsShort():
		// An utterance starts with less than its lead queued: wait (at
		// most lead ticks) for the audio right behind it.
		p.waited++
	case p.n >= p.frame:
		p.read(frame[:p.frame])
		ok = true
	case p.n > 0 && (p.held || p.markAtEnd()):
		k := p.n
		p.read(frame[:k])
		clear(frame[k:p.frame])
		ok = true
		// The tick it was held for is the end of an utterance, not a gap.
		p.gap = 0
	case p.n > 0:
		p.held = true
	}
	if ok {
		p.held = false
		p.waited = 0
		if p.gap > 0 {
			p.under++
		}
		p.gap = 0
		p.playing = true
		p.shrink()
	} else {
		switch {
		case p.playing:
			p.gap = 1
		case p.gap > 0 && p.gap < underrunWindow:
			p.gap++
		default:
			p.gap = 0
		}
		p.playing = false
	}
	for len(p.marks) > 0 && p.marks[0].at <= p.popped {
		due = append(due, p.marks[0].mark)
		p.marks[0] = playoutMark[M]{}
		p.marks = p.marks[1:]
	}
	if len(p.marks) == 0 {
		p.marks = nil
	}
	return ok, due
}

// Clear drops all queued audio and returns the marks that were pending, in
// order. The next Pop returns no audio.
func (p *Playout[M]) Clear() []M {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.popped += int64(p.n)
	p.head, p.n = 0, 0
	p.held, p.playing, p.gap, p.waited = false, false, 0, 0
	var pending []M
	if len(p.marks) > 0 {
		pending = make([]M, len(p.marks))
		for i, m := range p.marks {
			pending[i] = m.mark
		}
	}
	p.marks = nil
	p.shrink()
	return pending
}

// Buffered returns the number of samples queued.
func (p *Playout[M]) Buffered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// Underruns returns the number of underruns so far (see Playout).
func (p *Playout[M]) Underruns() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.under
}

// read moves len(dst) queued samples into dst. p.mu is held.
func (p *Playout[M]) read(dst []int16) {
	c := copy(dst, p.buf[p.head:min(p.head+len(dst), len(p.buf))])
	copy(dst[c:], p.buf)
	p.head = (p.head + len(dst)) % len(p.buf)
	p.n -= len(dst)
	p.popped += int64(len(dst))
	if p.n == 0 {
		p.head = 0
	}
}

// SetStartLead makes an utterance (audio after silence, not after an
// underrun) start playing only once frames frames are queued, or after
// frames ticks: a bot that sends in real time then has a small cushion
// against scheduling jitter for the rest of the utterance, at the cost of
// that much added latency. 0 (the default) plays at once.
func (p *Playout[M]) SetStartLead(frames int) {
	p.mu.Lock()
	p.lead = max(frames, 0)
	p.mu.Unlock()
}

// startsShort reports whether an utterance is starting with less than its
// lead queued and may still wait. p.mu is held.
func (p *Playout[M]) startsShort() bool {
	return p.lead > 0 && !p.playing && p.gap == 0 && p.n < p.lead*p.frame &&
		p.waited < p.lead && !p.markAtEnd()
}

// markAtEnd reports whether a mark sits right after the queued audio, which
// means the short piece is the end of an utterance. p.mu is held.
func (p *Playout[M]) markAtEnd() bool {
	for _, m := range p.marks {
		if m.at == p.pushed {
			return true
		}
	}
	return false
}
