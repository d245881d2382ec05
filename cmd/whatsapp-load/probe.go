package main

import (
	"sync"
	"time"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
)

// Echo latency probe. Every call's audio is a loop of probeCycle packets:
// probeSilencePackets of encoded digital silence, then speech that starts
// loud (mid-syllable). The send time of the first speech packet and the
// arrival time of the first loud echoed packet after it give one round-trip
// echo latency.
const (
	// probeSilencePackets is the 1 s of silence before each onset.
	probeSilencePackets = 50
	// probeSignalPackets is the 3 s of speech after each onset.
	probeSignalPackets = 150
	// probeCycle is the length of the loop: one probe every 4 s.
	probeCycle = probeSilencePackets + probeSignalPackets
	// probeDecodeRate is the rate echoed packets are decoded at to judge
	// their loudness; 8 kHz is the cheapest.
	probeDecodeRate = 8000
	// loudPeak is the peak sample magnitude from which a decoded packet is
	// audible. The speech peaks near 12000; echoed silence stays near 0.
	loudPeak = 1000
	// probeTimeout is how long an onset waits for its echo before it counts
	// as missed (the next onset comes 4 s later at the earliest).
	probeTimeout = 2 * time.Second
)

// probePackets encodes the probe loop once: probeSilencePackets of silence
// then probeSignalPackets of speech starting mid-syllable, as 20 ms Opus
// packets as a caller of shape sends them (see newCallerCodec).
func probePackets(shape caller.Shape) ([][]byte, error) {
	codec, err := newCallerCodec(shape)
	if err != nil {
		return nil, err
	}
	f := codec.frame()
	onset := codec.rate / 8 // the middle of the first syllable: loud at once
	speech := speechPCM(codec.rate, speechSeconds)
	pcm := make([]int16, probeSilencePackets*f, probeCycle*f)
	pcm = append(pcm, speech[onset:]...)
	pcm = append(pcm, speech[:onset]...)
	return codec.encodeAll(pcm[:probeCycle*f])
}

// peak returns the largest sample magnitude of pcm.
func peak(pcm []int16) int {
	m := 0
	for _, s := range pcm {
		v := int(s)
		if v < 0 {
			v = -v
		}
		m = max(m, v)
	}
	return m
}

// probe measures one call's echo latency. onset is called by the pacer,
// observe by the caller's read goroutine.
type probe struct {
	dec media.Decoder
	pcm []int16

	mu     sync.Mutex
	armed  bool
	sentAt time.Time
	rtts   []time.Duration
	missed int
}

// newProbe returns a probe with its own decoder.
func newProbe() (*probe, error) {
	dec, err := media.NewOpusDecoder(probeDecodeRate)
	if err != nil {
		return nil, err
	}
	// Room for the longest Opus packet, 120 ms.
	return &probe{dec: dec, pcm: make([]int16, probeDecodeRate*120/1000)}, nil
}

// onset records that the first loud packet of a probe is sent at. A probe
// still waiting for its echo counts as missed.
func (p *probe) onset(at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.armed {
		p.missed++
	}
	p.armed, p.sentAt = true, at
}

// observe looks at one echoed packet arriving at at: while a probe waits,
// the first packet that decodes loud completes it.
func (p *probe) observe(payload []byte, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.armed {
		return
	}
	if at.Sub(p.sentAt) > probeTimeout {
		p.armed = false
		p.missed++
		return
	}
	n, err := p.dec.Decode(payload, p.pcm)
	if err != nil || peak(p.pcm[:n]) < loudPeak {
		return
	}
	p.rtts = append(p.rtts, at.Sub(p.sentAt))
	p.armed = false
}

// results returns the measured round trips and the probes missed, as of
// now: a probe still waiting is missed only once probeTimeout passed.
func (p *probe) results(now time.Time) ([]time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	missed := p.missed
	if p.armed && now.Sub(p.sentAt) > probeTimeout {
		missed++
	}
	return append([]time.Duration(nil), p.rtts...), missed
}
