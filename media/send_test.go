package media

import (
	"math/rand/v2"
	"testing"
	"time"
)

// sendAt drives an rtpClock the way sendLoop does at wall-clock time now,
// and returns the packets it sends (sequence number, timestamp, marker).
func sendAt(c *rtpClock, now time.Time) (sent []rtpSent, skipped int) {
	send, skip := c.due(now)
	if skip > 0 {
		c.skip(skip)
	}
	for range send {
		p := c.packet(nil)
		sent = append(sent, rtpSent{p.SequenceNumber, p.Timestamp, p.Marker})
		c.advance()
	}
	return sent, skip
}

type rtpSent struct {
	seq    uint16
	ts     uint32
	marker bool
}

// TestPacingFollowsWallClock wakes the send clock late by a random 0-15 ms
// every time, as a loaded scheduler does: the number of packets sent
// follows elapsed time, not the number of wake-ups, so there is no drift.
func TestPacingFollowsWallClock(t *testing.T) {
	start := time.Unix(1000, 0)
	c := newRTPClock(start)
	now := start
	total := 0
	for range 3000 {
		sent, skipped := sendAt(c, now)
		if skipped > 0 {
			t.Fatalf("skipped %d slots at %v with wake-ups at most 15 ms late", skipped, now.Sub(start))
		}
		total += len(sent)
		// Sleep until the next slot, and wake late.
		now = now.Add(c.wait(now) + time.Duration(rand.IntN(15))*time.Millisecond)
	}
	want := int(now.Sub(start)/FrameDuration) + 1 // slot 0 is due at start
	// The last wake-up's slots are sent; at most the slot due at now is not.
	if total < want-1 || total > want {
		t.Errorf("sent %d packets in %v; want %d, one per 20 ms of wall clock", total, now.Sub(start), want)
	}
}

// TestPacingAfterStall stalls the send loop for 300 ms: the next wake-up
// sends the last 100 ms of slots back to back, skips the older ones on
// purpose (counted), keeps sequence numbers contiguous and moves the RTP
// timestamp by the real elapsed media time.
func TestPacingAfterStall(t *testing.T) {
	start := time.Unix(1000, 0)
	c := newRTPClock(start)
	var all []rtpSent
	now := start
	for range 10 { // slots 0..9 on time
		sent, _ := sendAt(c, now)
		all = append(all, sent...)
		now = now.Add(FrameDuration)
	}
	if len(all) != 10 {
		t.Fatalf("sent %d packets in 10 on-time wake-ups; want 10", len(all))
	}
	// Slot 10 was due at 200 ms; the loop wakes at 500 ms instead, when
	// slot 25 is due: 16 slots are due, 5 are sent, 11 skipped.
	stalled := start.Add(500 * time.Millisecond)
	sent, skipped := sendAt(c, stalled)
	if len(sent) != maxCatchUp || skipped != 11 {
		t.Fatalf("after a 300 ms stall: sent %d, skipped %d; want %d sent and 11 skipped", len(sent), skipped, maxCatchUp)
	}
	last := all[len(all)-1]
	for i, p := range sent {
		if p.seq != last.seq+uint16(i+1) {
			t.Errorf("packet %d after the stall: seq %d; want %d (contiguous)", i, p.seq, last.seq+uint16(i+1))
		}
		slot := uint32(21 + i) // slots 21..25 are sent
		if want := all[0].ts + slot*rtpFrameTicks; p.ts != want {
			t.Errorf("packet %d after the stall: ts %d; want %d (slot %d on the media clock)", i, p.ts, want, slot)
		}
	}
	if !sent[0].marker || sent[1].marker {
		t.Errorf("markers after the gap = %v, %v; want only the first set", sent[0].marker, sent[1].marker)
	}
	// Back on time: the next slot (26) is due 20 ms after slot 25.
	if w := c.wait(stalled); w != 20*time.Millisecond {
		t.Errorf("wait after catching up = %v; want 20ms", w)
	}
	if again, _ := sendAt(c, stalled); len(again) != 0 {
		t.Errorf("sent %d more packets at the same instant; want none", len(again))
	}
}

// TestPacingShortStallCaughtUp: a stall of less than 100 ms loses nothing,
// every slot is sent.
func TestPacingShortStallCaughtUp(t *testing.T) {
	start := time.Unix(1000, 0)
	c := newRTPClock(start)
	sendAt(c, start)
	sent, skipped := sendAt(c, start.Add(80*time.Millisecond))
	if len(sent) != 4 || skipped != 0 {
		t.Errorf("after an 80 ms stall: sent %d, skipped %d; want 4 and 0", len(sent), skipped)
	}
}
