package media

import (
	"math/rand/v2"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// Toward the caller: the 20 ms send clock.

const (
	// rtpFrameTicks is one 20 ms frame on the 48 kHz RTP clock.
	rtpFrameTicks = RTPClockRate / 1000 * frameMs
	// maxCatchUp is the most frames sent back to back after the send loop
	// was late (a stalled scheduler, a GC pause): up to 100 ms is caught up
	// in a burst that the caller's jitter buffer absorbs. Slots further
	// behind are skipped: their RTP timestamps are left out, so the caller
	// sees a gap of the length of the stall, and they are counted in
	// Stats.LateFrames. Skipping drops no bot audio; it plays later.
	maxCatchUp = 5
)

// pacer works out which 20 ms slots are due from the wall clock, not from
// how many ticks arrived: slot k is due at start + k*20 ms.
type pacer struct {
	start time.Time
	next  int64 // the next slot to send
}

// due returns how many slots to send now, at most maxCatchUp, and how many
// late slots to skip before them.
func (p *pacer) due(now time.Time) (send, skip int) {
	behind := int64(now.Sub(p.start)/FrameDuration) + 1 - p.next
	if behind <= 0 {
		return 0, 0
	}
	if behind > maxCatchUp {
		skip = int(behind - maxCatchUp)
		behind = maxCatchUp
	}
	return int(behind), skip
}

// wait returns how long until the next slot is due.
func (p *pacer) wait(now time.Time) time.Duration {
	return p.start.Add(time.Duration(p.next) * FrameDuration).Sub(now)
}

// rtpClock numbers the packets toward the caller: the timestamp of slot k
// is base + k*960 on the 48 kHz media clock, so skipped slots show as a
// timestamp gap while sequence numbers stay contiguous.
type rtpClock struct {
	pacer
	pkt rtp.Packet
}

func newRTPClock(start time.Time) *rtpClock {
	return &rtpClock{
		pacer: pacer{start: start},
		pkt: rtp.Packet{Header: rtp.Header{
			Version:        2,
			Marker:         true,
			PayloadType:    opusPayloadType, // pion sets the negotiated one
			SequenceNumber: uint16(rand.Uint32()),
			Timestamp:      rand.Uint32(),
		}},
	}
}

// skip leaves out n late slots.
func (c *rtpClock) skip(n int) {
	c.next += int64(n)
	c.pkt.Timestamp += uint32(n) * rtpFrameTicks
	c.pkt.Marker = true // a talkspurt restarts after a gap (RFC 3551 4.1)
}

// packet returns the packet for the next slot with payload, and moves on.
// The packet is valid until the next call.
func (c *rtpClock) packet(payload []byte) *rtp.Packet {
	c.pkt.Payload = payload
	return &c.pkt
}

// advance moves past the slot just sent.
func (c *rtpClock) advance() {
	c.next++
	c.pkt.Marker = false
	c.pkt.SequenceNumber++
	c.pkt.Timestamp += rtpFrameTicks
}

// sendLoop sends one Opus packet to the caller per 20 ms slot of wall-clock
// time and echoes marks whose audio has been sent.
func (s *Session) sendLoop() {
	defer s.wg.Done()
	clock := newRTPClock(time.Now())
	timer := time.NewTimer(0)
	defer timer.Stop()
	var due []bot.Mark
	var underruns uint64
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		}
		send, skip := clock.due(time.Now())
		if skip > 0 {
			clock.skip(skip)
			s.lateFrames.Add(uint64(skip))
			if ce := s.logger.Check(zapcore.DebugLevel, "send loop late: slots skipped"); ce != nil {
				ce.Write(zap.Int("skipped", skip))
			}
		}
		for range send {
			payload, marks := s.nextPayload(due[:0])
			due = marks
			if err := s.track.WriteRTP(clock.packet(payload)); err != nil {
				if ce := s.logger.Check(zapcore.DebugLevel, "write rtp"); ce != nil {
					ce.Write(zap.Error(err))
				}
			} else {
				s.packetsOut.Add(1)
			}
			clock.advance()
			for i, m := range due {
				if err := s.bot.WriteMarkPlayed(s.ctx, m); err != nil && s.botWriteFailed(err) {
					return
				}
				due[i] = bot.Mark{}
			}
		}
		if s.hooks.OnUnderrun != nil {
			if u := s.playout.Underruns(); u != underruns {
				underruns = u
				s.hooks.OnUnderrun()
			}
		}
		timer.Reset(max(clock.wait(time.Now()), 0))
	}
}
