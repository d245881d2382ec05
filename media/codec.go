package media

import (
	"fmt"
	"math"
	"time"

	"github.com/thesyncim/gopus"
)

// Encoder turns one 20 ms frame of mono 16-bit PCM into one Opus packet.
// pcm holds exactly one frame at the encoder's sample rate; out receives the
// packet (MaxOpusPacket bytes are always enough). It returns the packet length.
//
// The interface keeps the codec replaceable (for example by a cgo libopus
// build); the default implementation is pure Go.
type Encoder interface {
	Encode(pcm []int16, out []byte) (int, error)
}

// Decoder turns Opus packets into mono 16-bit PCM at the decoder's sample rate.
//
// Decode decodes pkt into pcm and returns the number of samples written. A nil
// or empty pkt runs packet loss concealment (PLC) for exactly len(pcm) samples,
// so len(pcm) must then be a multiple of 2.5 ms. For a real packet pcm must
// have room for the whole packet (up to 120 ms).
//
// DecodeFEC recovers the packet lost just before pkt from the in-band FEC
// (LBRR) data that pkt carries, producing len(pcm) samples. If pkt carries no
// FEC data it falls back to PLC. Decode pkt itself afterwards as usual.
type Decoder interface {
	Decode(pkt []byte, pcm []int16) (int, error)
	DecodeFEC(pkt []byte, pcm []int16) (int, error)
}

const (
	// RTPClockRate is the RTP clock of Opus (RFC 7587 section 4.1): it is
	// always 48 kHz whatever rate the codec runs at.
	RTPClockRate = 48000

	// FrameDuration is the duration of the Opus packets we send and of the
	// audio frames exchanged with the bot.
	FrameDuration = 20 * time.Millisecond

	// frameMs is FrameDuration in milliseconds.
	frameMs = 20

	// MaxOpusPacket is an output buffer size for Encoder.Encode: a packet of
	// one 20 ms frame is at most 1275 bytes (RFC 6716 section 3.2.1), and an
	// RTP packet must fit a 1500-byte MTU anyway.
	MaxOpusPacket = 1500

	// opusPacketLoss is the loss percentage announced to the encoder. libopus
	// (and gopus) only put in-band FEC (LBRR) into packets when the expected
	// loss is above zero and the bitrate clears a threshold that falls as the
	// loss rises; at 10 % our bitrates (opusBitrate) carry FEC at every rate,
	// which TestOpusFEC checks.
	opusPacketLoss = 10

	// maxOpusDuration is the longest Opus packet, 120 ms (RFC 6716 section 3.2.5).
	maxOpusDuration = 120 // ms
)

// silenceFrames are complete 20 ms Opus packets that decode to digital
// silence, one per CELT audio bandwidth (RFC 6716 section 3.1): a TOC byte
// (CELT-only, 20 ms, mono, one frame) followed by a range-coder payload whose
// silence flag is set. Sending one costs nothing, unlike encoding zeros. CELT
// has no mediumband configuration, so mediumband uses narrowband's.
var silenceFrames = [...][]byte{
	gopus.BandwidthNarrowband:    {0x98, 0xFF, 0xFE}, // config 19: CELT NB 20 ms
	gopus.BandwidthMediumband:    {0x98, 0xFF, 0xFE}, // config 19: CELT NB 20 ms
	gopus.BandwidthWideband:      {0xB8, 0xFF, 0xFE}, // config 23: CELT WB 20 ms
	gopus.BandwidthSuperwideband: {0xD8, 0xFF, 0xFE}, // config 27: CELT SWB 20 ms
	gopus.BandwidthFullband:      {0xF8, 0xFF, 0xFE}, // config 31: CELT FB 20 ms
}

// silenceFrame returns the pre-encoded 20 ms silence packet of bandwidth bw,
// which a Session sends while the bot is quiet. The caller must not modify it.
func silenceFrame(bw gopus.Bandwidth) []byte {
	if int(bw) >= len(silenceFrames) {
		bw = gopus.BandwidthFullband
	}
	return silenceFrames[bw]
}

// SilenceFrame returns a copy of the pre-encoded 20 ms Opus silence packet
// whose audio bandwidth is the one an encoder at sampleRate codes (8000:
// narrowband, 16000: wideband, 24000: super-wideband).
func SilenceFrame(sampleRate int) []byte {
	return append([]byte(nil), silenceFrame(bandwidthOf(sampleRate))...)
}

// bandwidthOf returns the widest Opus audio bandwidth that audio sampled at
// rate Hz carries (RFC 6716 section 2: narrowband is 8 kHz sampling,
// mediumband 12, wideband 16, super-wideband 24, fullband 48).
func bandwidthOf(rate int) gopus.Bandwidth {
	switch {
	case rate >= 48000:
		return gopus.BandwidthFullband
	case rate >= 24000:
		return gopus.BandwidthSuperwideband
	case rate >= 16000:
		return gopus.BandwidthWideband
	case rate >= 12000:
		return gopus.BandwidthMediumband
	}
	return gopus.BandwidthNarrowband
}

// bandwidthRate returns the sample rate of an Opus audio bandwidth.
func bandwidthRate(bw gopus.Bandwidth) int {
	switch bw {
	case gopus.BandwidthNarrowband:
		return 8000
	case gopus.BandwidthMediumband:
		return 12000
	case gopus.BandwidthWideband:
		return 16000
	case gopus.BandwidthSuperwideband:
		return 24000
	}
	return 48000
}

// defaultComplexity returns the encoder complexity used when the
// configuration leaves it to us, chosen with BenchmarkOpusEncode and
// TestOpusComplexityQuality (codec_test.go). At 8 and 16 kHz Opus codes speech
// in SILK mode, where complexity 1 costs about half of complexity 5 for
// nearly the same quality. At 24 kHz it uses hybrid mode, whose gopus
// implementation adds audible noise below complexity 5.
func defaultComplexity(sampleRate int) int {
	if sampleRate > 16000 {
		return 5
	}
	return 1
}

// opusBitrate returns the encoder bitrate for a sample rate: enough for
// transparent speech at that bandwidth, where the encoder's automatic choice
// (about 60 kbit/s) would waste the caller's bandwidth.
func opusBitrate(sampleRate int) int {
	switch sampleRate {
	case 8000:
		return 24000
	case 16000:
		return 32000
	}
	return 40000
}

// validBotRate reports whether rate is a sample rate the bot side may use.
func validBotRate(rate int) bool {
	switch rate {
	case 8000, 16000, 24000:
		return true
	}
	return false
}

// opusEncoder is the gopus implementation of Encoder.
type opusEncoder struct {
	enc *gopus.Encoder
}

// NewOpusEncoder returns a mono Opus encoder that takes 20 ms frames at
// sampleRate (8000, 16000 or 24000 Hz). It is tuned for speech: VoIP
// application, voice signal, a bitrate fit for speech at that bandwidth.
// complexity is 0-10; a negative value selects the default for the rate.
// The encoder is not safe for concurrent use.
//
// In-band FEC is off: with gopus it costs about 20 % more encode time and
// five allocations (14 KB) per frame (BenchmarkOpusEncodeFEC), to protect
// only the caller's downlink, where WhatsApp's client conceals loss itself.
// The decoder still uses the FEC that callers send.
func NewOpusEncoder(sampleRate, complexity int) (Encoder, error) {
	return newOpusEncoder(encoderConfig{rate: sampleRate, complexity: complexity})
}

// encoderConfig configures newOpusEncoder.
type encoderConfig struct {
	// rate is the input sample rate: 8000, 16000 or 24000.
	rate int
	// complexity is 0-10; negative selects defaultComplexity(rate).
	complexity int
	// fec turns on in-band FEC (see NewOpusEncoder for why it is off).
	fec bool
	// maxBitrate, if positive, caps the average bitrate (the offer's
	// maxaveragebitrate; RFC 7587 section 6.1).
	maxBitrate int
	// maxPlaybackRate, if positive, caps the coded audio bandwidth to what
	// a receiver rendering at most that sample rate can play (the offer's
	// maxplaybackrate).
	maxPlaybackRate int
}

// opusMinBitrate is the lowest maxaveragebitrate RFC 7587 allows (section
// 6.1: 6000 to 510000).
const opusMinBitrate = 6000

// bitrate returns the average bitrate the encoder targets.
func (c encoderConfig) bitrate() int {
	b := opusBitrate(c.rate)
	if c.maxBitrate > 0 && c.maxBitrate < b {
		b = max(c.maxBitrate, opusMinBitrate)
	}
	return b
}

// bandwidth returns the widest audio bandwidth the encoder may code: what
// the input rate carries, narrowed to the receiver's maxplaybackrate.
func (c encoderConfig) bandwidth() gopus.Bandwidth {
	rate := c.rate
	if c.maxPlaybackRate > 0 && c.maxPlaybackRate < rate {
		rate = c.maxPlaybackRate
	}
	return bandwidthOf(rate)
}

// newOpusEncoder builds the gopus encoder that cfg describes.
func newOpusEncoder(cfg encoderConfig) (Encoder, error) {
	if !validBotRate(cfg.rate) {
		return nil, fmt.Errorf("opus encoder: sample rate %d not 8000, 16000 or 24000", cfg.rate)
	}
	complexity := cfg.complexity
	if complexity < 0 {
		complexity = defaultComplexity(cfg.rate)
	}
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{
		SampleRate:  cfg.rate,
		Channels:    1,
		Application: gopus.ApplicationVoIP,
	})
	if err != nil {
		return nil, fmt.Errorf("opus encoder: %w", err)
	}
	if err := enc.SetComplexity(complexity); err != nil {
		return nil, fmt.Errorf("opus encoder: complexity %d: %w", complexity, err)
	}
	if err := enc.SetSignal(gopus.SignalVoice); err != nil {
		return nil, fmt.Errorf("opus encoder: %w", err)
	}
	if cfg.fec {
		if err := enc.SetInBandFEC(gopus.InBandFECEnabled); err != nil {
			return nil, fmt.Errorf("opus encoder: %w", err)
		}
		if err := enc.SetPacketLoss(opusPacketLoss); err != nil {
			return nil, fmt.Errorf("opus encoder: %w", err)
		}
	}
	if err := enc.SetBitrate(cfg.bitrate()); err != nil {
		return nil, fmt.Errorf("opus encoder: %w", err)
	}
	if bw := cfg.bandwidth(); bw < bandwidthOf(cfg.rate) {
		if err := enc.SetMaxBandwidth(bw); err != nil {
			return nil, fmt.Errorf("opus encoder: max bandwidth: %w", err)
		}
	}
	return &opusEncoder{enc: enc}, nil
}

// Encode implements Encoder.
func (e *opusEncoder) Encode(pcm []int16, out []byte) (int, error) {
	n, err := e.enc.EncodeInt16(pcm, out)
	if err != nil {
		return 0, fmt.Errorf("opus encode: %w", err)
	}
	return n, nil
}

// Reset clears the encoder state, as at the start of a new stream.
func (e *opusEncoder) Reset() { e.enc.Reset() }

// opusDecoder is the gopus implementation of Decoder.
type opusDecoder struct {
	dec     *gopus.Decoder
	scratch []float32 // DecodeFEC output before conversion to int16
}

// NewOpusDecoder returns a mono Opus decoder whose output is at sampleRate
// (8000, 16000 or 24000 Hz); Opus decodes any stream straight to that rate.
// The decoder is not safe for concurrent use.
func NewOpusDecoder(sampleRate int) (Decoder, error) {
	if !validBotRate(sampleRate) {
		return nil, fmt.Errorf("opus decoder: sample rate %d not 8000, 16000 or 24000", sampleRate)
	}
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(sampleRate, 1))
	if err != nil {
		return nil, fmt.Errorf("opus decoder: %w", err)
	}
	return &opusDecoder{
		dec:     dec,
		scratch: make([]float32, sampleRate*maxOpusDuration/1000),
	}, nil
}

// Decode implements Decoder.
func (d *opusDecoder) Decode(pkt []byte, pcm []int16) (int, error) {
	if len(pkt) == 0 {
		pkt = nil
	}
	n, err := d.dec.DecodeInt16(pkt, pcm)
	if err != nil {
		return 0, fmt.Errorf("opus decode: %w", err)
	}
	return n, nil
}

// DecodeFEC implements Decoder.
func (d *opusDecoder) DecodeFEC(pkt []byte, pcm []int16) (int, error) {
	if len(pcm) > len(d.scratch) {
		return 0, fmt.Errorf("opus fec decode: %d samples exceed %d ms", len(pcm), maxOpusDuration)
	}
	buf := d.scratch[:len(pcm)]
	n, err := d.dec.DecodeWithFEC(pkt, buf, true)
	if err != nil {
		return 0, fmt.Errorf("opus fec decode: %w", err)
	}
	floatToInt16(pcm[:n], buf[:n])
	return n, nil
}

// floatToInt16 converts normalized float samples to 16-bit PCM with rounding
// and saturation.
func floatToInt16(dst []int16, src []float32) {
	for i, v := range src {
		s := math.Round(float64(v) * 32768)
		switch {
		case s > math.MaxInt16:
			dst[i] = math.MaxInt16
		case s < math.MinInt16:
			dst[i] = math.MinInt16
		default:
			dst[i] = int16(s)
		}
	}
}
