package media

import (
	"math"
	"testing"

	"go.uber.org/goleak"

	tonegen "github.com/whatsappcalls/caddy-whatsapp-calls/internal/tone"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tone returns n samples of a sine at freq Hz and the given peak amplitude,
// starting at sample offset start.
func tone(rate, n, start int, freq, amp float64) []int16 {
	return tonegen.Sine(make([]int16, 0, n), rate, freq, amp, start, n)
}

// speechLike returns n samples of a voiced, speech-like signal: a harmonic
// series on a gliding pitch with a syllable-rate envelope.
func speechLike(rate, n, start int) []int16 {
	out := make([]int16, n)
	for i := range out {
		t := float64(start+i) / float64(rate)
		f0 := 140 + 30*math.Sin(2*math.Pi*3*t)
		var v float64
		for h := 1; float64(h)*f0 < float64(rate)/2 && h < 20; h++ {
			amp := (1 + math.Sin(2*math.Pi*float64(h)*0.7*t)) / float64(h)
			v += amp * math.Sin(2*math.Pi*float64(h)*f0*t)
		}
		env := 0.5 + 0.5*math.Sin(2*math.Pi*4*t)
		out[i] = int16(3000 * v * env)
	}
	return out
}

// goertzel returns the amplitude of the freq Hz component of x (a sine of
// peak amplitude A gives about A).
func goertzel(x []int16, rate int, freq float64) float64 { return tonegen.Amplitude(x, rate, freq) }

// rms returns the root mean square of x.
func rms(x []int16) float64 { return tonegen.RMS(x) }

// snr returns the signal-to-noise ratio in dB of got against want, after
// finding the delay (0..maxLag samples) that aligns them best and the gain
// that matches them.
func snr(want, got []int16, maxLag int) float64 {
	best := math.Inf(-1)
	for lag := 0; lag <= maxLag; lag++ {
		n := min(len(want), len(got)-lag)
		if n <= 0 {
			break
		}
		var sab, saa float64
		for i := 0; i < n; i++ {
			a, b := float64(want[i]), float64(got[i+lag])
			sab += a * b
			saa += a * a
		}
		g := sab / saa
		var sig, noise float64
		for i := 0; i < n; i++ {
			a, b := float64(want[i])*g, float64(got[i+lag])
			sig += a * a
			noise += (b - a) * (b - a)
		}
		if v := 10 * math.Log10(sig/(noise+1e-9)); v > best {
			best = v
		}
	}
	return best
}
