package simulator

import "math"

// Tone pattern of the bot's tone mode: beepOn of tone, then silence, every
// beepPeriod, with short ramps so that the beeps do not click.
const (
	beepOnMs     = 400
	beepPeriodMs = 1000
	beepRampMs   = 5
	// beepAmplitude is about -10 dBFS.
	beepAmplitude = 0.3 * math.MaxInt16
)

// toneGenerator produces the beep pattern sample by sample, keeping phase
// across frames. It allocates nothing after init.
type toneGenerator struct {
	phase, step float64
	pos         int // sample index within the period
	on, period  int
	ramp        int
}

func (g *toneGenerator) init(freq float64, rate int) {
	g.step = 2 * math.Pi * freq / float64(rate)
	g.on = rate * beepOnMs / 1000
	g.period = rate * beepPeriodMs / 1000
	g.ramp = max(1, rate*beepRampMs/1000)
	g.phase, g.pos = 0, 0
}

// fill writes the next len(pcm) samples.
func (g *toneGenerator) fill(pcm []int16) {
	for i := range pcm {
		var v float64
		if g.pos < g.on {
			gain := 1.0
			if g.pos < g.ramp {
				gain = float64(g.pos) / float64(g.ramp)
			} else if rem := g.on - g.pos; rem < g.ramp {
				gain = float64(rem) / float64(g.ramp)
			}
			v = beepAmplitude * gain * math.Sin(g.phase)
		}
		pcm[i] = int16(v)
		g.phase += g.step
		if g.phase >= 2*math.Pi {
			g.phase -= 2 * math.Pi
		}
		g.pos++
		if g.pos == g.period {
			g.pos = 0
		}
	}
}
