package caller

import (
	"fmt"

	"github.com/thesyncim/gopus"
)

// What WhatsApp's side sends, as its offer declares (MetaOpusFmtp): audio
// captured at 16 kHz (sprop-maxcapturerate), so wideband at most, at an
// average of 20 kbit/s (the bitrate it asks of us, maxaveragebitrate, and
// about what WhatsApp's clients send), in 20 ms packets (ptime), with
// in-band FEC (useinbandfec).
const (
	// MetaSampleRate is the rate of the PCM that Encoder and SendPCM take.
	MetaSampleRate = 16000
	// MetaFrameSamples is one 20 ms frame at MetaSampleRate.
	MetaFrameSamples = MetaSampleRate / 50
	// MetaBitrate is the encoder's average bitrate, in bit/s.
	MetaBitrate = 20000
	// metaPacketLoss is the loss the encoder plans FEC for, in percent.
	metaPacketLoss = 5
	// maxPacket bounds one encoded packet.
	maxPacket = 1500
)

// Encoder encodes audio the way the Meta-shaped peer sends it: mono Opus
// from 16 kHz PCM, 20 kbit/s, wideband, VoIP application, voice signal,
// in-band FEC. It is not safe for concurrent use.
type Encoder struct {
	enc *gopus.Encoder
	buf []byte
}

// NewEncoder returns an Encoder.
func NewEncoder() (*Encoder, error) {
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: MetaSampleRate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		return nil, fmt.Errorf("opus encoder: %w", err)
	}
	for _, set := range []func() error{
		func() error { return enc.SetBitrate(MetaBitrate) },
		func() error { return enc.SetSignal(gopus.SignalVoice) },
		func() error { return enc.SetMaxBandwidth(gopus.BandwidthWideband) },
		func() error { return enc.SetInBandFEC(gopus.InBandFECEnabled) },
		func() error { return enc.SetPacketLoss(metaPacketLoss) },
	} {
		if err := set(); err != nil {
			return nil, fmt.Errorf("opus encoder: %w", err)
		}
	}
	return &Encoder{enc: enc, buf: make([]byte, maxPacket)}, nil
}

// Encode encodes one 20 ms frame (MetaFrameSamples samples at
// MetaSampleRate). The packet is valid until the next call.
func (e *Encoder) Encode(pcm []int16) ([]byte, error) {
	if len(pcm) != MetaFrameSamples {
		return nil, fmt.Errorf("opus encode: %d samples; want %d (20 ms at %d Hz)", len(pcm), MetaFrameSamples, MetaSampleRate)
	}
	n, err := e.enc.EncodeInt16(pcm, e.buf)
	if err != nil {
		return nil, fmt.Errorf("opus encode: %w", err)
	}
	return e.buf[:n], nil
}
