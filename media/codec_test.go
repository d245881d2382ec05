package media

import (
	"fmt"
	"testing"

	"github.com/thesyncim/gopus"

	wacaller "github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
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
	for bw, frame := range silenceFrames {
		for _, rate := range []int{8000, 16000, 24000} {
			t.Run(fmt.Sprintf("%v/%d", gopus.Bandwidth(bw), rate), func(t *testing.T) {
				if got := tocBandwidth(frame[0]); got != min(gopus.Bandwidth(bw), gopus.BandwidthFullband) && !(bw == int(gopus.BandwidthMediumband) && got == gopus.BandwidthNarrowband) {
					t.Errorf("silence frame TOC 0x%02x declares %v; want %v", frame[0], got, gopus.Bandwidth(bw))
				}
				dec, err := NewOpusDecoder(rate)
				if err != nil {
					t.Fatal(err)
				}
				pcm := make([]int16, rate*maxOpusDuration/1000)
				for range 3 {
					n, err := dec.Decode(frame, pcm)
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
}

// tocBandwidth returns the audio bandwidth an Opus TOC byte declares (RFC
// 6716 section 3.1, table 2).
func tocBandwidth(toc byte) gopus.Bandwidth {
	cfg := toc >> 3
	switch {
	case cfg < 12: // SILK: NB 0-3, MB 4-7, WB 8-11
		return gopus.Bandwidth(cfg / 4)
	case cfg < 16: // Hybrid: SWB 12-13, FB 14-15
		return gopus.BandwidthSuperwideband + gopus.Bandwidth(cfg-12)/2
	}
	// CELT: NB 16-19, WB 20-23, SWB 24-27, FB 28-31
	return []gopus.Bandwidth{gopus.BandwidthNarrowband, gopus.BandwidthWideband, gopus.BandwidthSuperwideband, gopus.BandwidthFullband}[(cfg-16)/4]
}

// TestEncoderHonoursOffer runs speech-like bot audio through the outbound
// pipeline (encoder, hangover, silence frames) with the limits of each offer
// and checks every packet: the average bitrate of the audible ones stays at
// or under the offer's maxaveragebitrate, and no packet's TOC declares more
// bandwidth than the offer's maxplaybackrate allows, silence included.
func TestEncoderHonoursOffer(t *testing.T) {
	meta, _ := parseOpusOffer(wacaller.CapturedOffer)
	tests := []struct {
		name        string
		offer       opusOffer
		rate        int
		maxKbps     float64
		maxBW       gopus.Bandwidth
		wantBitrate int
		reachBW     bool // the speech must reach maxBW: the cap, not the input, limits it
	}{
		{name: "meta twilio", offer: meta, rate: 8000, maxKbps: 20, maxBW: gopus.BandwidthNarrowband, wantBitrate: 20000, reachBW: true},
		{name: "meta vonage 16k", offer: meta, rate: 16000, maxKbps: 20, maxBW: gopus.BandwidthWideband, wantBitrate: 20000, reachBW: true},
		{name: "meta vonage 24k", offer: meta, rate: 24000, maxKbps: 20, maxBW: gopus.BandwidthWideband, wantBitrate: 20000, reachBW: true},
		{name: "narrowband caller", offer: opusOffer{maxPlaybackRate: 8000}, rate: 24000, maxKbps: 40, maxBW: gopus.BandwidthNarrowband, wantBitrate: 40000, reachBW: true},
		{name: "12 kbit/s", offer: opusOffer{maxAverageBitrate: 12000}, rate: 16000, maxKbps: 12, maxBW: gopus.BandwidthWideband, wantBitrate: 12000},
		{name: "below the RFC minimum", offer: opusOffer{maxAverageBitrate: 1000}, rate: 8000, maxKbps: 6.5, maxBW: gopus.BandwidthNarrowband, wantBitrate: 6000},
		{name: "no limits 24k", offer: opusOffer{}, rate: 24000, maxKbps: 40, maxBW: gopus.BandwidthSuperwideband, wantBitrate: 40000, reachBW: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := encoderConfig{rate: tt.rate, complexity: -1, maxBitrate: tt.offer.maxAverageBitrate, maxPlaybackRate: tt.offer.maxPlaybackRate}
			if got := cfg.bitrate(); got != tt.wantBitrate {
				t.Errorf("bitrate() = %d; want %d", got, tt.wantBitrate)
			}
			enc, err := newOpusEncoder(cfg)
			if err != nil {
				t.Fatal(err)
			}
			frame := tt.rate / 50
			p := NewPlayout[bot.Mark](frame, 10*tt.rate)
			out := newOutbound(enc, p, silenceFrame(cfg.bandwidth()))
			// 4 s of speech, a pause, 2 s more: silence frames and the
			// encoder's hangover are in the stream too.
			push := func(pcm []int16) {
				if err := p.Push(pcm); err != nil {
					t.Fatal(err)
				}
			}
			var bytes, audible, silent int
			widest := gopus.BandwidthNarrowband
			tick := func(n int) {
				for range n {
					payload, _ := out.next(nil)
					if bw := tocBandwidth(payload[0]); bw > tt.maxBW {
						t.Fatalf("packet TOC 0x%02x declares %v; want at most %v", payload[0], bw, tt.maxBW)
					}
					if string(payload) == string(out.silence) {
						silent++
						continue
					}
					bytes += len(payload)
					audible++
					widest = max(widest, tocBandwidth(payload[0]))
				}
			}
			push(speechLike(tt.rate, 4*tt.rate, 0))
			tick(200)
			tick(50)
			push(speechLike(tt.rate, 2*tt.rate, 4*tt.rate))
			tick(100)
			if silent == 0 {
				t.Error("no silence frame in the pause")
			}
			if tt.reachBW && widest != tt.maxBW {
				t.Errorf("widest packet bandwidth %v; want %v", widest, tt.maxBW)
			}
			kbps := float64(bytes*8) / (float64(audible) * FrameDuration.Seconds()) / 1000
			t.Logf("%d audible packets at %.1f kbit/s on average, %d silence frames", audible, kbps, silent)
			if kbps > tt.maxKbps {
				t.Errorf("average bitrate %.1f kbit/s; want at most %.1f", kbps, tt.maxKbps)
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
