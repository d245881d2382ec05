package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"syscall"
	"time"

	"github.com/thesyncim/gopus"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
)

// Parameters of the audio the callers send.
const (
	// callerRate is the rate the Pion-shaped callers synthesise and encode
	// their speech at (fullband Opus at 48 kHz). Meta-shaped callers use
	// caller.MetaSampleRate.
	callerRate = 48000
	// speechSeconds is the length of the synthesised clip, replayed in a
	// loop. It ends in a pause, so the loop is seamless.
	speechSeconds = 3
	// callerBitrate is the Opus bitrate of the Pion-shaped callers' audio.
	// Meta-shaped callers send caller.MetaBitrate.
	callerBitrate = 32000
	// frameNanos is the real-time budget of one 20 ms frame.
	frameNanos = float64(20 * time.Millisecond)
)

// vowels are first and second formant frequencies (Hz) of /a/, /i/, /u/,
// /e/ and /o/.
var vowels = [][2]float64{{730, 1090}, {270, 2290}, {300, 870}, {530, 1840}, {570, 840}}

// speechPCM synthesises seconds of speech-like mono audio at rate: 250 ms
// voiced syllables (a harmonic series on a gliding pitch, shaped by two
// vowel formants, with a little breath noise), every fourth one a pause.
// It is deterministic.
func speechPCM(rate, seconds int) []int16 {
	rng := rand.New(rand.NewPCG(1, 2))
	const syllable = 0.25 // seconds
	n := rate * seconds
	out := make([]int16, n)
	per := int(syllable * float64(rate))
	var phase float64 // of the fundamental, in cycles
	for i := range n {
		s := i / per
		pos := float64(i%per) / float64(per)
		if s%4 == 3 || i >= n-per { // pause; the clip ends in one
			continue
		}
		v := vowels[s%len(vowels)]
		f0 := 110 + 40*math.Sin(2*math.Pi*float64(s)/7) + 20*pos // gliding pitch
		phase += f0 / float64(rate)
		var x float64
		for k := 1; float64(k)*f0 < float64(rate)/2 && k <= 40; k++ {
			f := float64(k) * f0
			a := 1/(1+sq((f-v[0])/90)) + 0.6/(1+sq((f-v[1])/120)) + 0.05
			x += a / float64(k) * math.Sin(2*math.Pi*float64(k)*phase)
		}
		env := sq(math.Sin(math.Pi * pos)) // syllable envelope
		x = env * (0.5*x + 0.01*(rng.Float64()*2-1))
		out[i] = int16(math.Max(-1, math.Min(1, x)) * 12000)
	}
	return out
}

func sq(x float64) float64 { return x * x }

// callerCodec is how the load's callers encode their audio: the rate the
// speech is synthesised at and the encoder of one 20 ms frame at it.
type callerCodec struct {
	rate   int
	encode func(pcm []int16) ([]byte, error)
}

// frame returns the samples of one 20 ms frame.
func (c callerCodec) frame() int { return c.rate / 50 }

// newCallerCodec returns the codec of a caller shape. Meta: what WhatsApp
// sends, 16 kHz audio at 20 kbit/s, wideband (caller.Encoder). Pion: the
// first release's callers, fullband 48 kHz at callerBitrate with in-band
// FEC.
func newCallerCodec(shape caller.Shape) (callerCodec, error) {
	if shape == caller.Meta {
		enc, err := caller.NewEncoder()
		if err != nil {
			return callerCodec{}, err
		}
		return callerCodec{rate: caller.MetaSampleRate, encode: enc.Encode}, nil
	}
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: callerRate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		return callerCodec{}, fmt.Errorf("opus encoder: %w", err)
	}
	for _, set := range []func() error{
		func() error { return enc.SetBitrate(callerBitrate) },
		func() error { return enc.SetSignal(gopus.SignalVoice) },
		func() error { return enc.SetInBandFEC(gopus.InBandFECEnabled) },
		func() error { return enc.SetPacketLoss(5) },
	} {
		if err := set(); err != nil {
			return callerCodec{}, fmt.Errorf("opus encoder: %w", err)
		}
	}
	buf := make([]byte, media.MaxOpusPacket)
	return callerCodec{rate: callerRate, encode: func(pcm []int16) ([]byte, error) {
		n, err := enc.EncodeInt16(pcm, buf)
		if err != nil {
			return nil, fmt.Errorf("opus encode: %w", err)
		}
		return buf[:n], nil
	}}, nil
}

// encodeAll encodes pcm in 20 ms frames into packets.
func (c callerCodec) encodeAll(pcm []int16) ([][]byte, error) {
	f := c.frame()
	packets := make([][]byte, 0, len(pcm)/f)
	for off := 0; off+f <= len(pcm); off += f {
		p, err := c.encode(pcm[off : off+f])
		if err != nil {
			return nil, err
		}
		packets = append(packets, append([]byte(nil), p...))
	}
	return packets, nil
}

// speechPackets encodes the synthetic speech once into 20 ms Opus packets
// as a caller of shape would send them.
func speechPackets(shape caller.Shape) ([][]byte, error) {
	codec, err := newCallerCodec(shape)
	if err != nil {
		return nil, err
	}
	return codec.encodeAll(speechPCM(codec.rate, speechSeconds))
}

// OpusCost is the result of -opus-cost, printed as one JSON line.
type OpusCost struct {
	// Kind is "opus-cost".
	Kind string `json:"kind"`
	// Caller is the shape of the callers whose packets are decoded (meta:
	// 16 kHz audio at 20 kbit/s; pion: 48 kHz at 32 kbit/s).
	Caller string `json:"caller,omitempty"`
	// Frames is the number of 20 ms frames measured.
	Frames int `json:"frames"`
	// Complexity is the encoder complexity, -1 for the media package's
	// default at 8 kHz.
	Complexity int `json:"complexity"`
	// DecodeNS is the CPU time to decode one caller packet to 8 kHz PCM.
	DecodeNS float64 `json:"decode_ns_per_frame"`
	// EncodeNS is the CPU time to encode one 8 kHz frame.
	EncodeNS float64 `json:"encode_ns_per_frame"`
	// FrameNS is DecodeNS + EncodeNS.
	FrameNS float64 `json:"ns_per_frame"`
	// CoresPerCall is FrameNS / 20 ms: the cores one call's transcoding
	// keeps busy.
	CoresPerCall float64 `json:"cores_per_call"`
}

// Human returns the cost as one line for people.
func (o OpusCost) Human() string {
	c := "media default"
	if o.Complexity >= 0 {
		c = fmt.Sprint(o.Complexity)
	}
	return fmt.Sprintf("opus: decode %s caller packet->8k %.0f ns + encode 8k (complexity %s) %.0f ns = %.0f ns per 20 ms frame = %.5f cores/call (%d frames)",
		o.Caller, o.DecodeNS, c, o.EncodeNS, o.FrameNS, o.CoresPerCall, o.Frames)
}

// threadCPU returns the CPU time of the calling OS thread.
func threadCPU() (time.Duration, error) {
	const rusageThread = 1 // RUSAGE_THREAD (Linux)
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// measureOpusCost decodes frames packets of the callers' 48 kHz speech
// straight to 8 kHz and re-encodes each frame at 8 kHz with the media
// package's codec (what a call in the twilio dialect does every 20 ms),
// timing decode and encode with the thread's CPU clock.
func measureOpusCost(frames, complexity int, shape caller.Shape) (OpusCost, error) {
	if frames <= 0 {
		return OpusCost{}, fmt.Errorf("-frames %d: want a positive number", frames)
	}
	packets, err := speechPackets(shape)
	if err != nil {
		return OpusCost{}, err
	}
	dec, err := media.NewOpusDecoder(8000)
	if err != nil {
		return OpusCost{}, fmt.Errorf("decoder: %w", err)
	}
	enc, err := media.NewOpusEncoder(8000, complexity)
	if err != nil {
		return OpusCost{}, fmt.Errorf("encoder: %w", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// Decode everything, then encode everything, so that each loop is
	// timed once and the clock's resolution does not matter.
	const frame8k = 8000 / 50
	pcm := make([]int16, frames*frame8k)
	out := make([]byte, media.MaxOpusPacket)
	t0, err := threadCPU()
	if err != nil {
		return OpusCost{}, err
	}
	for i := range frames {
		n, err := dec.Decode(packets[i%len(packets)], pcm[i*frame8k:(i+1)*frame8k])
		if err != nil {
			return OpusCost{}, err
		}
		if n != frame8k {
			return OpusCost{}, fmt.Errorf("decoded %d samples; want %d", n, frame8k)
		}
	}
	t1, err := threadCPU()
	if err != nil {
		return OpusCost{}, err
	}
	for i := range frames {
		if _, err := enc.Encode(pcm[i*frame8k:(i+1)*frame8k], out); err != nil {
			return OpusCost{}, err
		}
	}
	t2, err := threadCPU()
	if err != nil {
		return OpusCost{}, err
	}
	decodeCPU, encodeCPU := t1-t0, t2-t1
	c := OpusCost{
		Kind:       kindOpusCost,
		Caller:     shape.String(),
		Frames:     frames,
		Complexity: complexity,
		DecodeNS:   round(float64(decodeCPU)/float64(frames), 0),
		EncodeNS:   round(float64(encodeCPU)/float64(frames), 0),
	}
	c.FrameNS = c.DecodeNS + c.EncodeNS
	c.CoresPerCall = round(c.FrameNS/frameNanos, 5)
	return c, nil
}
