package media

import (
	"context"
	"time"

	"github.com/pion/rtp"
)

// The caller's stream, put back in order and delivered to the bot on a
// 20 ms cadence.

const (
	// reorderDepth is the most packets held while one before them is
	// missing: two 20 ms packets. A third later packet releases them, the
	// missing one counted as lost.
	reorderDepth = 2
	// reorderWait is the longest a packet waits for a missing one before
	// it: 40 ms. The reorder window is thus 40 ms of packets or of time,
	// whichever comes first; reordering on real networks is within a few
	// packets, and a longer window would add its length to every loss.
	reorderWait = 40 * time.Millisecond
	// maxBacklog is how many decoded frames a periodic tick leaves for
	// later: frames released together after a reorder wait are spread over
	// the next tick or packet, not sent in one burst.
	maxBacklog = 2
)

// heldPacket is one caller RTP packet waiting in the reorder buffer.
type heldPacket struct {
	seq   uint16
	kind  payloadKind
	clock uint32 // telephone-event clock rate
	raw   []byte // the whole packet, owned by the buffer
	at    time.Time
}

// reorder puts the caller's packets (Opus and telephone-event share one
// sequence) back in order within a small window. Duplicates and packets
// that arrive after their turn was given up are dropped and counted.
type reorder struct {
	started bool
	next    uint16       // the next sequence number to release
	held    []heldPacket // in sequence order
	spare   [][]byte
	late    uint64 // packets that arrived after their turn
	dups    uint64 // duplicates
}

// push stores a copy of raw, the packet with sequence number seq that
// arrived at now. It returns false for a duplicate or a late packet.
func (r *reorder) push(seq uint16, kind payloadKind, clock uint32, raw []byte, now time.Time) bool {
	if !r.started {
		r.started = true
		r.next = seq
	}
	d := int16(seq - r.next)
	if d < 0 {
		r.late++
		return false
	}
	dist := uint16(d)
	i := len(r.held)
	for i > 0 && uint16(r.held[i-1].seq-r.next) > dist {
		i--
	}
	if i > 0 && r.held[i-1].seq == seq {
		r.dups++
		return false
	}
	var b []byte
	if n := len(r.spare); n > 0 {
		b, r.spare = r.spare[n-1][:0], r.spare[:n-1]
	}
	p := heldPacket{seq: seq, kind: kind, clock: clock, raw: append(b, raw...), at: now}
	r.held = append(r.held, heldPacket{})
	copy(r.held[i+1:], r.held[i:])
	r.held[i] = p
	return true
}

// pop releases the next packet if it is due: it is the next in sequence,
// more than reorderDepth packets are held, or the first held packet has
// waited reorderWait. The packet is copied into dst; lost is the number of
// packets given up just before it (0 after a restarted sequence, a jump
// of more than maxSeqJump).
func (r *reorder) pop(now time.Time, dst []byte) (p heldPacket, lost int, ok bool) {
	if len(r.held) == 0 {
		return heldPacket{}, 0, false
	}
	h := r.held[0]
	gap := int(uint16(h.seq - r.next))
	if gap > 0 && len(r.held) <= reorderDepth && now.Sub(h.at) < reorderWait {
		return heldPacket{}, 0, false
	}
	copy(r.held, r.held[1:])
	r.held[len(r.held)-1] = heldPacket{}
	r.held = r.held[:len(r.held)-1]
	r.next = h.seq + 1
	r.spare = append(r.spare, h.raw)
	p = h
	p.raw = append(dst[:0], h.raw...)
	if gap > maxSeqJump {
		gap = 0
	}
	return p, gap, true
}

// timedFrame is one 20 ms frame for the bot and its media time.
type timedFrame struct {
	pcm []int16
	ms  int64
}

// frameFIFO holds decoded caller frames until the next tick. It implements
// audioWriter.
type frameFIFO struct {
	frames []timedFrame
	free   [][]int16
}

// WriteAudioAt queues a copy of pcm.
func (f *frameFIFO) WriteAudioAt(_ context.Context, pcm []int16, ms int64) error {
	var b []int16
	if n := len(f.free); n > 0 {
		b, f.free = f.free[n-1][:0], f.free[:n-1]
	}
	f.frames = append(f.frames, timedFrame{pcm: append(b, pcm...), ms: ms})
	return nil
}

// botAudio is where the caller path delivers frames: a *bot.Conn.
type botAudio interface {
	WriteAudioAt(ctx context.Context, pcm []int16, ms int64) error
}

// callerPath is the caller-to-bot pipeline after the RTP reader: reorder
// buffer, Opus decoding with FEC and PLC (inbound), and the 20 ms cadence.
// The RTP reader pushes each packet and ticks with flush set, so audio
// reaches the bot as soon as it is in order, adding no latency (the bench
// showed that holding in-order frames for the tick adds 10 to 40 ms per
// direction under load). The delivery loop ticks every 20 ms without
// flush: it releases packets that waited out the reorder window and
// spreads what they release.
type callerPath struct {
	ro    reorder
	in    *inbound
	fifo  *frameFIFO
	bot   botAudio
	raw   []byte
	pkt   rtp.Packet
	dtmf  func([]DTMFEvent) error // key presses, in order with the audio
	evbuf []DTMFEvent
	lost  uint64
}

func newCallerPath(dec Decoder, rate int, b botAudio, dtmf func([]DTMFEvent) error) *callerPath {
	fifo := &frameFIFO{}
	return &callerPath{
		in:   newInbound(dec, rate, fifo),
		fifo: fifo,
		bot:  b,
		raw:  make([]byte, 0, maxRTPPacket),
		dtmf: dtmf,
	}
}

// tick releases every packet that is due at now, decodes it (concealing
// losses), and sends the bot every decoded frame (flush) or one frame, more
// if more than maxBacklog would be left waiting. It returns an error only
// when writing to the bot failed.
func (c *callerPath) tick(ctx context.Context, now time.Time, flush bool) error {
	for {
		h, lost, ok := c.ro.pop(now, c.raw)
		if !ok {
			break
		}
		c.raw = h.raw
		c.lost += uint64(lost)
		if err := c.pkt.Unmarshal(h.raw); err != nil {
			continue
		}
		switch h.kind {
		case payloadOpus:
			if err := c.in.opus(ctx, &c.pkt, lost > 0); err != nil {
				return err
			}
		case payloadTelephoneEvent:
			c.evbuf = c.in.dtmf.Push(c.evbuf[:0], c.pkt.Timestamp, c.pkt.Payload, h.clock)
			if len(c.evbuf) > 0 && c.dtmf != nil {
				if err := c.dtmf(c.evbuf); err != nil {
					return err
				}
			}
		}
	}
	n := len(c.fifo.frames)
	if n == 0 {
		return nil
	}
	send := max(1, n-maxBacklog)
	if flush {
		send = n
	}
	for i := range send {
		f := c.fifo.frames[i]
		if err := c.bot.WriteAudioAt(ctx, f.pcm, f.ms); err != nil {
			return err
		}
	}
	for i := range send {
		c.fifo.free = append(c.fifo.free, c.fifo.frames[i].pcm)
	}
	k := copy(c.fifo.frames, c.fifo.frames[send:])
	clear(c.fifo.frames[k:])
	c.fifo.frames = c.fifo.frames[:k]
	return nil
}
