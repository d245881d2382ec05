// Package tone generates sine tones and measures them with the Goertzel
// algorithm, for tests and tools that check audio end to end.
package tone

import "math"

// Sine appends n samples of a sine at freq Hz and the given peak amplitude
// (0-32767) at rate Hz to dst, starting at sample index start.
func Sine(dst []int16, rate int, freq, amplitude float64, start, n int) []int16 {
	for i := range n {
		v := amplitude * math.Sin(2*math.Pi*freq*float64(start+i)/float64(rate))
		dst = append(dst, int16(v))
	}
	return dst
}

// Amplitude estimates the peak amplitude of the freq Hz component of x
// (Goertzel). A pure sine of amplitude A gives about A.
func Amplitude(x []int16, rate int, freq float64) float64 {
	if len(x) == 0 {
		return 0
	}
	w := 2 * math.Pi * freq / float64(rate)
	coeff := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s0 := float64(v) + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * math.Sqrt(math.Max(power, 0)) / float64(len(x))
}

// RMS returns the root mean square of x.
func RMS(x []int16) float64 {
	if len(x) == 0 {
		return 0
	}
	var sum float64
	for _, v := range x {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(len(x)))
}
