package tone

import (
	"math"
	"testing"
)

func TestAmplitude(t *testing.T) {
	tests := []struct {
		name       string
		rate       int
		freq, give float64
		probe      float64
		want       float64
	}{
		{"on frequency 8k", 8000, 1000, 8000, 1000, 8000},
		{"on frequency 48k", 48000, 440, 12000, 440, 12000},
		{"off frequency", 16000, 1000, 8000, 1700, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := Sine(nil, tt.rate, tt.freq, tt.give, 0, tt.rate/2)
			got := Amplitude(x, tt.rate, tt.probe)
			if math.Abs(got-tt.want) > 0.05*tt.give {
				t.Errorf("Amplitude(%v Hz tone, %v Hz) = %.0f; want %.0f", tt.freq, tt.probe, got, tt.want)
			}
		})
	}
	if got := RMS(Sine(nil, 8000, 1000, 1000, 0, 8000)); math.Abs(got-1000/math.Sqrt2) > 5 {
		t.Errorf("RMS(sine of 1000) = %.1f; want %.1f", got, 1000/math.Sqrt2)
	}
}
