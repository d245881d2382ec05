package media

import (
	"fmt"
	"testing"

	"github.com/thesyncim/gopus"
)

// roundTrip encodes src in 20 ms frames at rate with complexity and decodes
// it again, returning the decoded audio and the packets.
func roundTrip(t testing.TB, rate, complexity int, src []int16) ([]int16, [][]byte) {
	t.Helper()
	return roundTripFEC(t, rate, complexity, false, src)
}

// roundTripFEC is roundTrip with the encoder's in-band FEC chosen.
func roundTripFEC(t testing.TB, rate, complexity int, fec bool, src []int16) ([]int16, [][]byte) {
	t.Helper()
	enc, err := newOpusEncoder(encoderConfig{rate: rate, complexity: complexity, fec: fec})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewOpusDecoder(rate)
	if err != nil {
		t.Fatal(err)
	}
	frame := rate / 50
	buf := make([]byte, MaxOpusPacket)
	pcm := make([]int16, rate*maxOpusDuration/1000)
	var out []int16
	var pkts [][]byte
	for off := 0; off+frame <= len(src); off += frame {
		n, err := enc.Encode(src[off:off+frame], buf)
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		pkts = append(pkts, append([]byte(nil), buf[:n]...))
		m, err := dec.Decode(buf[:n], pcm)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		out = append(out, pcm[:m]...)
	}
	return out, pkts
}

func TestSilenceFrameDecodesToSilence(t *testing.T) {
	for _, rate := range []int{8000, 16000, 24000} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			dec, err := NewOpusDecoder(rate)
			if err != nil {
				t.Fatal(err)
			}
			pcm := make([]int16, rate*maxOpusDuration/1000)
			for range 3 {
				n, err := dec.Decode(SilenceFrame(rate), pcm)
				if err != nil {
					t.Fatalf("Decode(silence) error %v", err)
				}
				if n != rate/50 {
					t.Fatalf("Decode(silence) = %d samples; want %d", n, rate/50)
				}
				if r := rms(pcm[:n]); r != 0 {
					t.Fatalf("Decode(silence) rms = %v; want 0", r)
				}
			}
		})
	}
}

func TestOpusRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		rate    int
		signal  func(rate, n int) []int16
		minSNR  float64 // dB
		toneHz  float64 // if set, also check the tone's level
		toneAmp float64
	}{
		{name: "8k tone", rate: 8000, signal: func(r, n int) []int16 { return tone(r, n, 0, 440, 8000) }, minSNR: 15, toneHz: 440, toneAmp: 8000},
		{name: "16k tone", rate: 16000, signal: func(r, n int) []int16 { return tone(r, n, 0, 1000, 8000) }, minSNR: 15, toneHz: 1000, toneAmp: 8000},
		{name: "24k tone", rate: 24000, signal: func(r, n int) []int16 { return tone(r, n, 0, 1000, 8000) }, minSNR: 15, toneHz: 1000, toneAmp: 8000},
		{name: "8k speech", rate: 8000, signal: func(r, n int) []int16 { return speechLike(r, n, 0) }, minSNR: 2},
		{name: "16k speech", rate: 16000, signal: func(r, n int) []int16 { return speechLike(r, n, 0) }, minSNR: 2},
		{name: "24k speech", rate: 24000, signal: func(r, n int) []int16 { return speechLike(r, n, 0) }, minSNR: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.signal(tt.rate, tt.rate) // 1 s
			out, _ := roundTrip(t, tt.rate, -1, src)
			skip := tt.rate / 5 // let the codec settle
			got := snr(src[skip:len(src)-tt.rate/50], out[skip:], tt.rate/50)
			if got < tt.minSNR {
				t.Errorf("round trip SNR = %.1f dB; want >= %.0f", got, tt.minSNR)
			}
			if tt.toneHz > 0 {
				if a := goertzel(out[skip:], tt.rate, tt.toneHz); a < 0.8*tt.toneAmp || a > 1.2*tt.toneAmp {
					t.Errorf("decoded %v Hz amplitude = %.0f; want about %.0f", tt.toneHz, a, tt.toneAmp)
				}
			}
		})
	}
}

// TestOpusComplexityQuality pins the reason for defaultComplexity: at each bot
// rate, the default complexity loses little against complexity 5.
func TestOpusComplexityQuality(t *testing.T) {
	for _, rate := range []int{8000, 16000, 24000} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			src := speechLike(rate, rate, 0)
			for i, v := range tone(rate, rate, 0, 1000, 2000) {
				src[i] += v
			}
			skip := rate / 5
			quality := func(c int) float64 {
				out, _ := roundTrip(t, rate, c, src)
				return snr(src[skip:len(src)-rate/50], out[skip:], rate/50)
			}
			def, ref, low := quality(defaultComplexity(rate)), quality(5), quality(1)
			t.Logf("rate %d: SNR at complexity 1 %.1f dB, 5 %.1f dB, default (%d) %.1f dB", rate, low, ref, defaultComplexity(rate), def)
			if def < ref-2 {
				t.Errorf("default complexity %d SNR %.1f dB; want within 2 dB of complexity 5 (%.1f dB)", defaultComplexity(rate), def, ref)
			}
		})
	}
}

func TestOpusFEC(t *testing.T) {
	for _, rate := range []int{8000, 16000, 24000} {
		src := speechLike(rate, rate, 0)
		_, pkts := roundTripFEC(t, rate, -1, true, src)
		withFEC := 0
		for _, p := range pkts {
			if gopus.PacketHasLBRR(p) {
				withFEC++
			}
		}
		if withFEC < len(pkts)/2 {
			t.Errorf("rate %d: %d of %d packets carry in-band FEC; want most", rate, withFEC, len(pkts))
		}
	}

	const rate = 16000
	frame := rate / 50
	src := speechLike(rate, rate, 0)
	_, pkts := roundTripFEC(t, rate, -1, true, src)
	const lostFrame = 25
	if !gopus.PacketHasLBRR(pkts[lostFrame+1]) {
		t.Fatal("the packet after the lost one carries no in-band FEC")
	}
	recover := func(fec bool) []int16 {
		dec, err := NewOpusDecoder(rate)
		if err != nil {
			t.Fatal(err)
		}
		pcm := make([]int16, rate*maxOpusDuration/1000)
		var out []int16
		for i, p := range pkts[:lostFrame+2] {
			var n int
			switch {
			case i != lostFrame:
				n, err = dec.Decode(p, pcm)
			case fec:
				n, err = dec.DecodeFEC(pkts[i+1], pcm[:frame])
			default:
				n, err = dec.Decode(nil, pcm[:frame])
			}
			if err != nil {
				t.Fatalf("decode frame %d: %v", i, err)
			}
			out = append(out, pcm[:n]...)
		}
		return out
	}
	ref, _ := roundTrip(t, rate, -1, src[:(lostFrame+2)*frame])
	lost := func(x []int16) []int16 { return x[lostFrame*frame : (lostFrame+1)*frame] }
	fecSNR := snr(lost(ref), lost(recover(true)), 0)
	plcSNR := snr(lost(ref), lost(recover(false)), 0)
	if fecSNR <= plcSNR {
		t.Errorf("lost frame SNR with FEC = %.1f dB, with PLC = %.1f dB; want FEC better", fecSNR, plcSNR)
	}
}

func TestNewOpusCodecErrors(t *testing.T) {
	tests := []struct {
		name       string
		rate       int
		complexity int
	}{
		{name: "rate 44100", rate: 44100, complexity: 1},
		{name: "rate 48000", rate: 48000, complexity: 1},
		{name: "complexity 11", rate: 16000, complexity: 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewOpusEncoder(tt.rate, tt.complexity); err == nil {
				t.Errorf("NewOpusEncoder(%d, %d) error = nil; want an error", tt.rate, tt.complexity)
			}
		})
	}
	if _, err := NewOpusDecoder(44100); err == nil {
		t.Error("NewOpusDecoder(44100) error = nil; want an error")
	}
}

// BenchmarkOpusEncode measures one 20 ms speech frame at each bot rate and
// complexity; it is how defaultComplexity was chosen.
func BenchmarkOpusEncode(b *testing.B) {
	for _, rate := range []int{8000, 16000, 24000} {
		for _, c := range []int{0, 1, 3, 5, 10} {
			b.Run(fmt.Sprintf("rate=%d/complexity=%d", rate, c), func(b *testing.B) {
				benchEncode(b, rate, c, false)
			})
		}
	}
}

// BenchmarkOpusEncodeFEC compares encoding with and without in-band FEC at
// the default complexity; it is why NewOpusEncoder leaves FEC off.
func BenchmarkOpusEncodeFEC(b *testing.B) {
	for _, rate := range []int{8000, 16000} {
		for _, fec := range []bool{false, true} {
			b.Run(fmt.Sprintf("rate=%d/fec=%t", rate, fec), func(b *testing.B) {
				benchEncode(b, rate, -1, fec)
			})
		}
	}
}

// benchEncode encodes 20 ms frames of speech-like audio at rate.
func benchEncode(b *testing.B, rate, complexity int, fec bool) {
	enc, err := newOpusEncoder(encoderConfig{rate: rate, complexity: complexity, fec: fec})
	if err != nil {
		b.Fatal(err)
	}
	frame := rate / 50
	src := speechLike(rate, 50*frame, 0)
	buf := make([]byte, MaxOpusPacket)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		off := (i % 50) * frame
		if _, err := enc.Encode(src[off:off+frame], buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpusBaseline is the bare codec cost per 20 ms frame, the floor
// under both pipelines: decoding the caller's 48 kHz stream (the packets
// BenchmarkInbound uses) straight to the bot rate, and encoding a frame at
// the bot rate.
func BenchmarkOpusBaseline(b *testing.B) {
	for _, rate := range []int{8000, 16000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			frame := rate / 50
			src := speechLike(rate, 50*frame, 0)
			pkts := callerPackets(b, speechLike(callerRate, callerRate, 0), 20)
			enc, err := NewOpusEncoder(rate, -1)
			if err != nil {
				b.Fatal(err)
			}
			dec, err := NewOpusDecoder(rate)
			if err != nil {
				b.Fatal(err)
			}
			pcm := make([]int16, rate*maxOpusDuration/1000)
			buf := make([]byte, MaxOpusPacket)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := dec.Decode(pkts[i%len(pkts)].Payload, pcm); err != nil {
					b.Fatal(err)
				}
				off := (i % 50) * frame
				if _, err := enc.Encode(src[off:off+frame], buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
