package media

import (
	"encoding/binary"
	"time"
)

// DTMFEvent is one completed key press received as RFC 4733 telephone-event
// RTP.
type DTMFEvent struct {
	// Digit is one of 0-9, *, #, A-D.
	Digit string
	// Duration is how long the key was held, from the event's duration field.
	Duration time.Duration
}

// dtmfDigits maps RFC 4733 section 3.2 event codes 0-15 to their keys.
var dtmfDigits = [16]string{
	"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "A", "B", "C", "D",
}

// DTMFDecoder turns RFC 4733 telephone-event packets into key presses.
//
// A key press is carried by several packets that share one RTP timestamp (the
// start of the event) with a growing duration field; the last one has the E
// (end) bit set and is usually sent three times. The decoder reports each
// press exactly once, when its first end packet arrives. If every end packet
// of a press is lost, the press is reported when the next event starts.
// Events above 15 (flash and the other RFC 4733 tones) are ignored. A press
// longer than the 16-bit duration field can express is split by the sender
// into segments (RFC 4733 section 2.5.1.3); those are joined into one press.
//
// The zero value is ready to use. A DTMFDecoder is not safe for concurrent use.
type DTMFDecoder struct {
	active    bool   // an event has started and is not yet reported
	ts        uint32 // RTP timestamp of the current event (or segment)
	code      uint8
	dur       uint32 // duration of the current segment, in clock units
	base      uint32 // duration of earlier segments of a long event
	reported  bool   // the event at ts has been reported
	clockRate uint32 // clock of the current event
}

// Push feeds one telephone-event RTP packet (its timestamp, payload and the
// negotiated clock rate, 8000 or 48000) and appends any press that completed
// to dst. Malformed payloads are ignored.
func (d *DTMFDecoder) Push(dst []DTMFEvent, ts uint32, payload []byte, clockRate uint32) []DTMFEvent {
	if len(payload) < 4 || clockRate == 0 {
		return dst
	}
	code := payload[0]
	end := payload[1]&0x80 != 0
	dur := uint32(binary.BigEndian.Uint16(payload[2:4]))
	if code > 15 {
		return dst
	}
	if d.reported && ts == d.ts {
		// A retransmitted end packet of a press already reported.
		return dst
	}
	if d.active && ts != d.ts {
		if code == d.code && d.dur == 0xFFFF && ts == d.ts+0xFFFF {
			// The next segment of a long press.
			d.base += d.dur
			d.ts, d.dur = ts, dur
			return d.finish(dst, end)
		}
		// A new event began while the previous one never ended: report the
		// previous one with the last duration seen.
		dst = d.report(dst)
	}
	if !d.active || ts != d.ts {
		d.active, d.reported = true, false
		d.ts, d.code, d.base, d.dur = ts, code, 0, 0
		d.clockRate = clockRate
	}
	if dur > d.dur {
		d.dur = dur
	}
	return d.finish(dst, end)
}

// finish reports the current event if end is set.
func (d *DTMFDecoder) finish(dst []DTMFEvent, end bool) []DTMFEvent {
	if !end {
		return dst
	}
	return d.report(dst)
}

// report appends the current event and marks it reported.
func (d *DTMFDecoder) report(dst []DTMFEvent) []DTMFEvent {
	total := uint64(d.base) + uint64(d.dur)
	dst = append(dst, DTMFEvent{
		Digit:    dtmfDigits[d.code],
		Duration: time.Duration(total * uint64(time.Second) / uint64(d.clockRate)),
	})
	d.active = false
	d.reported = true
	return dst
}
