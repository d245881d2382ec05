package main

import (
	"testing"
	"time"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
)

func TestProbePackets(t *testing.T) {
	for _, shape := range []caller.Shape{caller.Meta, caller.Pion} {
		t.Run(shape.String(), func(t *testing.T) {
			packets, err := probePackets(shape)
			if err != nil {
				t.Fatal(err)
			}
			if len(packets) != probeCycle {
				t.Fatalf("%d packets; want %d", len(packets), probeCycle)
			}
			dec, err := media.NewOpusDecoder(probeDecodeRate)
			if err != nil {
				t.Fatal(err)
			}
			pcm := make([]int16, probeDecodeRate/50)
			peaks := make([]int, len(packets))
			for i, p := range packets {
				n, err := dec.Decode(p, pcm)
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				peaks[i] = peak(pcm[:n])
			}
			// The tail of the previous loop may ring into the first frames; the
			// rest of the silence must be quiet.
			for i := 5; i < probeSilencePackets; i++ {
				if peaks[i] >= loudPeak {
					t.Errorf("silence packet %d decodes with peak %d; want < %d", i, peaks[i], loudPeak)
				}
			}
			if peaks[probeSilencePackets] < loudPeak {
				t.Errorf("onset packet decodes with peak %d; want >= %d at once", peaks[probeSilencePackets], loudPeak)
			}
			loud := 0
			for _, v := range peaks[probeSilencePackets:] {
				if v >= loudPeak {
					loud++
				}
			}
			if loud < probeSignalPackets/2 {
				t.Errorf("%d of %d signal packets loud; want most", loud, probeSignalPackets)
			}
		})
	}
}

func TestPeak(t *testing.T) {
	tests := []struct {
		pcm  []int16
		want int
	}{
		{nil, 0},
		{[]int16{1, -3, 2}, 3},
		{[]int16{-32768, 100}, 32768},
	}
	for _, tt := range tests {
		if got := peak(tt.pcm); got != tt.want {
			t.Errorf("peak(%v) = %d; want %d", tt.pcm, got, tt.want)
		}
	}
}

func TestProbe(t *testing.T) {
	packets, err := probePackets(caller.Meta)
	if err != nil {
		t.Fatal(err)
	}
	quiet, loud := packets[probeSilencePackets-1], packets[probeSilencePackets]
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	tests := []struct {
		name       string
		run        func(p *probe)
		now        time.Time
		wantRTTs   []time.Duration
		wantMissed int
	}{
		{
			name: "loud echo before onset is ignored",
			run: func(p *probe) {
				p.observe(loud, at(0))
			},
			now: at(time.Second),
		},
		{
			name: "first loud echo after onset",
			run: func(p *probe) {
				p.onset(at(0))
				p.observe(quiet, at(10*time.Millisecond))
				p.observe(loud, at(45*time.Millisecond))
				p.observe(loud, at(65*time.Millisecond)) // probe done
			},
			now:      at(time.Second),
			wantRTTs: []time.Duration{45 * time.Millisecond},
		},
		{
			name: "two probes",
			run: func(p *probe) {
				p.onset(at(0))
				p.observe(loud, at(30*time.Millisecond))
				p.onset(at(4 * time.Second))
				p.observe(loud, at(4*time.Second+50*time.Millisecond))
			},
			now:      at(5 * time.Second),
			wantRTTs: []time.Duration{30 * time.Millisecond, 50 * time.Millisecond},
		},
		{
			name: "onset while waiting misses the first",
			run: func(p *probe) {
				p.onset(at(0))
				p.onset(at(4 * time.Second))
				p.observe(loud, at(4*time.Second+20*time.Millisecond))
			},
			now:        at(5 * time.Second),
			wantRTTs:   []time.Duration{20 * time.Millisecond},
			wantMissed: 1,
		},
		{
			name: "echo after the timeout is missed",
			run: func(p *probe) {
				p.onset(at(0))
				p.observe(loud, at(probeTimeout+time.Millisecond))
			},
			now:        at(3 * time.Second),
			wantMissed: 1,
		},
		{
			name: "pending probe at the end is missed only after the timeout",
			run: func(p *probe) {
				p.onset(at(0))
				p.observe(quiet, at(20*time.Millisecond))
			},
			now: at(time.Second),
		},
		{
			name: "pending probe past the timeout at the end is missed",
			run: func(p *probe) {
				p.onset(at(0))
			},
			now:        at(probeTimeout + time.Millisecond),
			wantMissed: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newProbe()
			if err != nil {
				t.Fatal(err)
			}
			tt.run(p)
			rtts, missed := p.results(tt.now)
			if len(rtts) != len(tt.wantRTTs) || missed != tt.wantMissed {
				t.Fatalf("results = %v, %d missed; want %v, %d", rtts, missed, tt.wantRTTs, tt.wantMissed)
			}
			for i := range rtts {
				if rtts[i] != tt.wantRTTs[i] {
					t.Errorf("rtt %d = %v; want %v", i, rtts[i], tt.wantRTTs[i])
				}
			}
		})
	}
}
