package media

import (
	"strconv"
	"strings"

	"github.com/pion/webrtc/v4"
	"github.com/zaf/g711"
)

// PCMU passthrough: when the caller offers G.711 mu-law (WhatsApp does with
// the number setting calling.audio.additional_codecs) and the bot speaks
// the twilio dialect (8 kHz mu-law), no codec runs. The caller's samples
// reach the bot and the bot's reach the caller as the same mu-law codes:
// the pipeline in between (reorder buffer, playout queue, marks, clear)
// holds them as 16-bit PCM, and G.711 expansion is a 256-entry table whose
// round trip is exact (every code but 0x7F, negative zero, comes back as
// itself; 0x7F comes back as 0xFF, positive zero). Silence toward the
// caller is 0xFF.

const (
	// pcmuPayloadType is PCMU's static payload type (RFC 3551).
	pcmuPayloadType = 0
	// pcmuClockRate is PCMU's RTP clock and sample rate.
	pcmuClockRate = 8000
	// pcmuFrameBytes is one 20 ms PCMU packet: one byte per sample.
	pcmuFrameBytes = pcmuClockRate * frameMs / 1000
	// pcmuSilence is mu-law zero (positive), the code linear 0 encodes to.
	pcmuSilence = 0xFF
)

// pcmuCodec is G.711 mu-law as pion's default media engine registers it:
// no fmtp (RFC 3551 defines none), so any PCMU/8000 in an offer is an exact
// match.
var pcmuCodec = webrtc.RTPCodecCapability{
	MimeType:  webrtc.MimeTypePCMU,
	ClockRate: pcmuClockRate,
}

// Codec selects the audio codec toward the caller.
type Codec string

const (
	// CodecAuto answers PCMU when the offer carries it and the bot speaks
	// the twilio dialect (PCMU passthrough, no transcoding), and Opus
	// otherwise. The empty Codec means CodecAuto.
	CodecAuto Codec = "auto"
	// CodecOpus always answers Opus, even if PCMU is offered.
	CodecOpus Codec = "opus"
)

// ParseCodec returns the Codec named s: "auto" (or "") or "opus".
func ParseCodec(s string) (Codec, bool) {
	switch Codec(s) {
	case "", CodecAuto:
		return CodecAuto, true
	case CodecOpus:
		return CodecOpus, true
	}
	return "", false
}

// sdpHasPCMU reports whether sdp's first active audio section offers
// PCMU/8000.
func sdpHasPCMU(sdp string) bool {
	for _, line := range audioSection(sdp) {
		v, ok := strings.CutPrefix(line, "a=rtpmap:")
		if !ok {
			continue
		}
		pt, enc, ok := strings.Cut(v, " ")
		if !ok {
			continue
		}
		if _, err := strconv.Atoi(pt); err == nil && strings.HasPrefix(strings.ToLower(strings.TrimSpace(enc)), "pcmu/8000") {
			return true
		}
	}
	// PT 0 is PCMU without an rtpmap line too (RFC 3551 static type).
	for _, line := range audioSection(sdp) {
		if strings.HasPrefix(line, "m=audio ") {
			f := strings.Fields(line)
			for _, pt := range f[min(3, len(f)):] {
				if pt == "0" {
					return true
				}
			}
		}
	}
	return false
}

// pcmuEncoder implements Encoder for PCMU: one mu-law byte per sample.
type pcmuEncoder struct{}

// Encode implements Encoder.
func (pcmuEncoder) Encode(pcm []int16, out []byte) (int, error) {
	out = out[:len(pcm)]
	for i, s := range pcm {
		out[i] = g711.EncodeUlawFrame(s)
	}
	return len(pcm), nil
}

// pcmuDecoder implements Decoder for PCMU. Lost audio is concealed with
// silence: G.711 carries no FEC, and silence is what the bot's voice
// activity detection handles best (a repeated frame would read as speech).
type pcmuDecoder struct{}

// Decode implements Decoder: pkt's mu-law codes as PCM, or silence for
// len(pcm) samples when pkt is empty. A packet longer than pcm is cut.
func (pcmuDecoder) Decode(pkt []byte, pcm []int16) (int, error) {
	if len(pkt) == 0 {
		clear(pcm)
		return len(pcm), nil
	}
	n := min(len(pkt), len(pcm))
	for i, u := range pkt[:n] {
		pcm[i] = g711.DecodeUlawFrame(u)
	}
	return n, nil
}

// DecodeFEC implements Decoder: PCMU has no FEC, so the lost packet is
// silence.
func (pcmuDecoder) DecodeFEC(_ []byte, pcm []int16) (int, error) {
	clear(pcm)
	return len(pcm), nil
}

// pcmuSilenceFrame is the 20 ms packet sent while the bot is quiet.
var pcmuSilenceFrame = func() []byte {
	b := make([]byte, pcmuFrameBytes)
	for i := range b {
		b[i] = pcmuSilence
	}
	return b
}()
