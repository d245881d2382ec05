package media

import (
	"encoding/binary"
	"reflect"
	"testing"
	"time"
)

// teEvent is one RFC 4733 telephone-event packet.
type teEvent struct {
	ts   uint32
	code uint8
	end  bool
	dur  uint16
}

func (e teEvent) payload() []byte {
	p := make([]byte, 4)
	p[0] = e.code
	p[1] = 10 // volume
	if e.end {
		p[1] |= 0x80
	}
	binary.BigEndian.PutUint16(p[2:], e.dur)
	return p
}

// press returns the packets of one key press as a sender emits them: updates
// every 50 ms of duration step, then the end packet three times.
func press(ts uint32, code uint8, steps int, step uint16) []teEvent {
	var out []teEvent
	for i := 1; i <= steps; i++ {
		out = append(out, teEvent{ts: ts, code: code, dur: uint16(i) * step})
	}
	for range 3 {
		out = append(out, teEvent{ts: ts, code: code, end: true, dur: uint16(steps) * step})
	}
	return out
}

func concat(groups ...[]teEvent) []teEvent {
	var out []teEvent
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func TestDTMFDecoder(t *testing.T) {
	tests := []struct {
		name    string
		clock   uint32
		packets []teEvent
		want    []DTMFEvent
	}{
		{
			name:    "one press at 8 kHz",
			clock:   8000,
			packets: press(1000, 5, 4, 400),
			want:    []DTMFEvent{{Digit: "5", Duration: 200 * time.Millisecond}},
		},
		{
			name:    "one press at 48 kHz",
			clock:   48000,
			packets: press(1000, 5, 4, 2400),
			want:    []DTMFEvent{{Digit: "5", Duration: 200 * time.Millisecond}},
		},
		{
			name:  "123# with every code mapped",
			clock: 8000,
			packets: concat(
				press(1000, 1, 3, 400), press(5000, 2, 3, 400), press(9000, 3, 3, 400), press(13000, 11, 3, 400),
			),
			want: []DTMFEvent{
				{Digit: "1", Duration: 150 * time.Millisecond},
				{Digit: "2", Duration: 150 * time.Millisecond},
				{Digit: "3", Duration: 150 * time.Millisecond},
				{Digit: "#", Duration: 150 * time.Millisecond},
			},
		},
		{
			name:    "star and letters",
			clock:   8000,
			packets: concat(press(100, 10, 1, 800), press(9000, 12, 1, 800), press(18000, 15, 1, 800)),
			want: []DTMFEvent{
				{Digit: "*", Duration: 100 * time.Millisecond},
				{Digit: "A", Duration: 100 * time.Millisecond},
				{Digit: "D", Duration: 100 * time.Millisecond},
			},
		},
		{
			name:    "same digit twice",
			clock:   8000,
			packets: concat(press(1000, 7, 2, 400), press(5000, 7, 2, 400)),
			want: []DTMFEvent{
				{Digit: "7", Duration: 100 * time.Millisecond},
				{Digit: "7", Duration: 100 * time.Millisecond},
			},
		},
		{
			name:  "all end packets lost: reported when the next press starts",
			clock: 8000,
			packets: concat(
				press(1000, 4, 3, 400)[:3], press(5000, 6, 2, 400),
			),
			want: []DTMFEvent{
				{Digit: "4", Duration: 150 * time.Millisecond},
				{Digit: "6", Duration: 100 * time.Millisecond},
			},
		},
		{
			name:    "only end packets arrive",
			clock:   8000,
			packets: press(1000, 9, 2, 400)[2:],
			want:    []DTMFEvent{{Digit: "9", Duration: 100 * time.Millisecond}},
		},
		{
			name:  "reordered update after the end",
			clock: 8000,
			packets: []teEvent{
				{ts: 1000, code: 8, dur: 400},
				{ts: 1000, code: 8, end: true, dur: 1200},
				{ts: 1000, code: 8, dur: 800},
				{ts: 1000, code: 8, end: true, dur: 1200},
			},
			want: []DTMFEvent{{Digit: "8", Duration: 150 * time.Millisecond}},
		},
		{
			name:  "long press split into segments",
			clock: 48000,
			packets: []teEvent{
				{ts: 1000, code: 0, dur: 30000},
				{ts: 1000, code: 0, dur: 0xFFFF},
				{ts: 1000 + 0xFFFF, code: 0, dur: 24000},
				{ts: 1000 + 0xFFFF, code: 0, end: true, dur: 30465},
				{ts: 1000 + 0xFFFF, code: 0, end: true, dur: 30465},
			},
			want: []DTMFEvent{{Digit: "0", Duration: 2 * time.Second}},
		},
		{
			name:    "flash and other events ignored",
			clock:   8000,
			packets: concat(press(1000, 16, 2, 400), press(5000, 32, 2, 400)),
			want:    nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d DTMFDecoder
			var got []DTMFEvent
			for _, p := range tt.packets {
				got = d.Push(got, p.ts, p.payload(), tt.clock)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Push(...) events = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestDTMFDecoderIgnoresMalformed(t *testing.T) {
	var d DTMFDecoder
	for _, p := range [][]byte{nil, {1}, {1, 0x80, 0}} {
		if got := d.Push(nil, 1000, p, 8000); len(got) != 0 {
			t.Errorf("Push(%v) = %v; want nothing", p, got)
		}
	}
	if got := d.Push(nil, 1000, teEvent{code: 1, end: true, dur: 800}.payload(), 0); len(got) != 0 {
		t.Errorf("Push with clock 0 = %v; want nothing", got)
	}
}
