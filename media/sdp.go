package media

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// This file holds the few reads and edits of SDP text that pion does not
// make for us: what the caller's Opus fmtp asks of our encoder, the Opus
// fmtp of our answer, and the fingerprint lines WhatsApp accepts.

// opusOffer is what an offer says about the Opus stream it will receive
// from us and the one it will send (RFC 7587 section 6.1). A zero field
// means the offer did not say.
type opusOffer struct {
	// payloadType is Opus's payload type in the offer.
	payloadType int
	// maxAverageBitrate is the highest average bitrate, in bit/s, that the
	// caller wants to receive ("maxaveragebitrate").
	maxAverageBitrate int
	// maxPlaybackRate is the highest audio sample rate, in Hz, that the
	// caller renders ("maxplaybackrate"): audio bandwidth above half of it
	// is wasted.
	maxPlaybackRate int
	// useInbandFEC says that the caller's decoder uses in-band FEC
	// ("useinbandfec=1").
	useInbandFEC bool
	// useDTX says that the caller's decoder prefers discontinuous
	// transmission ("usedtx=1").
	useDTX bool
	// cbr says that the caller prefers constant bitrate ("cbr=1").
	cbr bool
	// stereo says that the caller prefers to receive stereo ("stereo=1").
	stereo bool
	// ptime and maxptime are the media-level a=ptime and a=maxptime, in ms.
	ptime, maxptime int
}

// audioSection returns the lines (without line ends) of the first active
// audio section of sdp: the m=audio line with a non-zero port and the
// lines that follow it up to the next m= line.
func audioSection(sdp string) []string {
	var lines []string
	in := false
	for line := range strings.Lines(sdp) {
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "m=") {
			if in {
				break
			}
			in = isActiveAudio(line)
		}
		if in {
			lines = append(lines, line)
		}
	}
	return lines
}

// isActiveAudio reports whether an m= line is an audio section that is not
// rejected (port 0).
func isActiveAudio(mline string) bool {
	return strings.HasPrefix(mline, "m=audio ") && !strings.HasPrefix(mline, "m=audio 0 ")
}

// opusPTOf returns the payload type of opus/48000 in the audio
// section lines.
func opusPTOf(section []string) (int, bool) {
	for _, line := range section {
		v, ok := strings.CutPrefix(line, "a=rtpmap:")
		if !ok {
			continue
		}
		pt, enc, ok := strings.Cut(v, " ")
		if !ok || !strings.HasPrefix(strings.ToLower(strings.TrimSpace(enc)), "opus/48000") {
			continue
		}
		if n, err := strconv.Atoi(pt); err == nil {
			return n, true
		}
	}
	return 0, false
}

// sdpHasOpus reports whether sdp has an active audio section with Opus.
func sdpHasOpus(sdp string) bool {
	_, ok := opusPTOf(audioSection(sdp))
	return ok
}

// parseOpusOffer reads what sdp's first active audio section says about
// Opus. It reports false if that section has no Opus. Parameter names are
// matched without regard to case and in any order; values that are not
// numbers are ignored, as RFC 7587 asks of unknown or malformed parameters.
func parseOpusOffer(sdp string) (opusOffer, bool) {
	section := audioSection(sdp)
	pt, ok := opusPTOf(section)
	if !ok {
		return opusOffer{}, false
	}
	o := opusOffer{payloadType: pt}
	fmtpPrefix := "a=fmtp:" + strconv.Itoa(pt) + " "
	for _, line := range section {
		switch {
		case strings.HasPrefix(line, fmtpPrefix):
			o.setParams(strings.TrimPrefix(line, fmtpPrefix))
		case strings.HasPrefix(line, "a=ptime:"):
			o.ptime = atoiOrZero(strings.TrimPrefix(line, "a=ptime:"))
		case strings.HasPrefix(line, "a=maxptime:"):
			o.maxptime = atoiOrZero(strings.TrimPrefix(line, "a=maxptime:"))
		}
	}
	return o, true
}

// setParams applies one fmtp parameter list ("key=value;key=value").
func (o *opusOffer) setParams(params string) {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "maxaveragebitrate":
			o.maxAverageBitrate = atoiOrZero(v)
		case "maxplaybackrate":
			o.maxPlaybackRate = atoiOrZero(v)
		case "useinbandfec":
			o.useInbandFEC = v == "1"
		case "usedtx":
			o.useDTX = v == "1"
		case "cbr":
			o.cbr = v == "1"
		case "stereo":
			o.stereo = v == "1"
		}
	}
}

// atoiOrZero parses a non-negative decimal number, or returns 0.
func atoiOrZero(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// answerOpusFmtp returns the Opus fmtp of our answer, which says what we
// receive and what we send (RFC 7587 section 6.1; pion would otherwise echo
// the offer's parameters, which describe the caller, not us):
//
//   - minptime=10: we decode packets of any duration from 2.5 to 120 ms.
//   - useinbandfec=1: our decoder recovers a lost packet from the FEC
//     (LBRR) data of the next one, so the caller's FEC is worth sending.
//   - maxplaybackrate: we decode straight to the bot's sample rate
//     (decodeRate), so audio above half of it would waste the caller's
//     uplink.
//   - sprop-maxcapturerate: the encoder takes audio at the bot's rate and
//     codes no more bandwidth than the offer allows (captureRate).
//   - stereo=0 and sprop-stereo=0: we decode and send mono.
//
// We leave out maxaveragebitrate (we take any bitrate), cbr (we send
// variable bitrate, the default) and usedtx: we send a packet every 20 ms,
// silence included, because WhatsApp ends a call that goes without media.
func answerOpusFmtp(decodeRate, captureRate int) string {
	return fmt.Sprintf("minptime=10;useinbandfec=1;maxplaybackrate=%d;sprop-maxcapturerate=%d;stereo=0;sprop-stereo=0",
		decodeRate, captureRate)
}

// setOpusFmtp replaces the Opus fmtp line of sdp's active audio sections
// with "a=fmtp:<pt> " + fmtp, right after Opus's rtpmap line. It fails if
// sdp has no Opus.
func setOpusFmtp(sdp, fmtp string) (string, error) {
	pt, ok := opusPTOf(audioSection(sdp))
	if !ok {
		return "", errors.New("sdp has no opus to set the fmtp of")
	}
	rtpmap := "a=rtpmap:" + strconv.Itoa(pt) + " "
	fmtpPrefix := "a=fmtp:" + strconv.Itoa(pt) + " "
	var b strings.Builder
	b.Grow(len(sdp) + len(fmtp))
	in := false
	for line := range strings.Lines(sdp) {
		if strings.HasPrefix(line, "m=") {
			in = isActiveAudio(line)
		}
		if in && strings.HasPrefix(line, fmtpPrefix) {
			continue
		}
		b.WriteString(line)
		if in && strings.HasPrefix(line, rtpmap) {
			eol := line[len(strings.TrimRight(line, "\r\n")):]
			if eol == "" {
				eol = "\r\n"
				b.WriteString(eol)
			}
			b.WriteString(fmtpPrefix + fmtp + eol)
		}
	}
	return b.String(), nil
}

// onlySHA256Fingerprints removes every a=fingerprint line that is not
// sha-256: WhatsApp accepts only sha-256. It fails if none is left.
func onlySHA256Fingerprints(sdp string) (string, error) {
	var b strings.Builder
	b.Grow(len(sdp))
	found := false
	for line := range strings.Lines(sdp) {
		if v, ok := strings.CutPrefix(line, "a=fingerprint:"); ok {
			alg, _, _ := strings.Cut(v, " ")
			if !strings.EqualFold(alg, "sha-256") {
				continue
			}
			found = true
		}
		b.WriteString(line)
	}
	if !found {
		return "", errors.New("answer has no sha-256 fingerprint")
	}
	return b.String(), nil
}
