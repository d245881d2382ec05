package caller

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// CapturedOffer is a real WhatsApp offer, captured from Meta's servers
// (session.sdp of a user-initiated connect webhook; see the project's
// PROTOCOLS.md, "Media: a real WhatsApp offer"). It is kept verbatim, with
// CRLF line ends as on the wire. Its candidates are Meta's public relays:
// nothing in a test may connect to them.
const CapturedOffer = "v=0\r\n" +
	"o=- 1760681506762 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE audio\r\n" +
	"a=msid-semantic: WMS c3867497-e6f7-4408-82b7-80dbd11b94cf\r\n" +
	"a=ice-lite\r\n" +
	"m=audio 3484 UDP/TLS/RTP/SAVPF 111 126\r\n" +
	"c=IN IP4 57.144.215.49\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=candidate:3935165743 1 udp 2122260223 57.144.215.49 3484 typ host generation 0 network-cost 50\r\n" +
	"a=candidate:2617197009 1 udp 2122262783 2a03:2880:f36b:131:face:b00c:0:699c 3484 typ host generation 0 network-cost 50\r\n" +
	"a=ice-ufrag:AeinEGDfvqBctbtM\r\n" +
	"a=ice-pwd:F6/jjqL0/8/Dzluc0IoZEQ==\r\n" +
	"a=fingerprint:sha-256 A2:EC:E2:C4:E4:FE:75:63:39:0D:77:45:DF:70:64:BC:F9:96:73:DE:F4:92:E5:78:D0:5B:1F:8F:E7:46:D3:C6\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:audio\r\n" +
	"a=sendrecv\r\n" +
	"a=msid:c3867497-e6f7-4408-82b7-80dbd11b94cf WhatsAppTrack1\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"a=rtcp-fb:111 transport-cc\r\n" +
	"a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1\r\n" +
	"a=rtpmap:126 telephone-event/8000\r\n" +
	"a=maxptime:20\r\n" +
	"a=ptime:20\r\n" +
	"a=ssrc:1047224411 cname:WhatsAppAudioStream1\r\n"

// The parts of CapturedOffer that the Meta-shaped peer reuses as they are.
const (
	// MetaOpusFmtp is the Opus fmtp of WhatsApp's offer.
	MetaOpusFmtp = "maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1"
	// metaMid is the offer's only media section's mid (and BUNDLE group).
	metaMid = "audio"
	// metaStreamID and metaTrackID are the offer's msid.
	metaStreamID = "c3867497-e6f7-4408-82b7-80dbd11b94cf"
	metaTrackID  = "WhatsAppTrack1"
)

// offerParams are the values of one peer that replace Meta's in
// CapturedOffer: everything that makes the offer reachable and
// authenticates it, nothing that shapes the negotiation.
type offerParams struct {
	ufrag, pwd  string
	fingerprint string // "sha-256 AA:BB:..."
	ssrc        uint32
	port        int
	ipv4        netip.Addr
	ipv6        netip.Addr // optional
	candidates  []string   // "candidate:..." values, without "a="
}

// metaOffer returns CapturedOffer with p's address, candidates, ICE
// credentials, fingerprint and SSRC in place of Meta's. Every other line is
// Meta's, byte for byte.
func metaOffer(p offerParams) string {
	var b strings.Builder
	candidatesDone := false
	for line := range strings.Lines(CapturedOffer) {
		text := strings.TrimSuffix(line, "\r\n")
		switch {
		case strings.HasPrefix(text, "m=audio "):
			_, rest, _ := strings.Cut(strings.TrimPrefix(text, "m=audio "), " ")
			line = "m=audio " + strconv.Itoa(p.port) + " " + rest + "\r\n"
		case strings.HasPrefix(text, "c=IN IP4 "):
			line = "c=IN IP4 " + p.ipv4.String() + "\r\n"
		case strings.HasPrefix(text, "a=candidate:"):
			if candidatesDone {
				continue
			}
			candidatesDone = true
			var cb strings.Builder
			for _, c := range p.candidates {
				cb.WriteString("a=" + c + "\r\n")
			}
			line = cb.String()
		case strings.HasPrefix(text, "a=ice-ufrag:"):
			line = "a=ice-ufrag:" + p.ufrag + "\r\n"
		case strings.HasPrefix(text, "a=ice-pwd:"):
			line = "a=ice-pwd:" + p.pwd + "\r\n"
		case strings.HasPrefix(text, "a=fingerprint:"):
			line = "a=fingerprint:" + p.fingerprint + "\r\n"
		case strings.HasPrefix(text, "a=ssrc:"):
			_, cname, _ := strings.Cut(text, " ")
			line = "a=ssrc:" + strconv.FormatUint(uint64(p.ssrc), 10) + " " + cname + "\r\n"
		}
		b.WriteString(line)
	}
	return b.String()
}

// paramsFromLocal reads a peer's values for metaOffer from its own (pion's)
// local description, taking only host candidates on port.
func paramsFromLocal(sdp string) (offerParams, error) {
	var p offerParams
	for line := range strings.Lines(sdp) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			p.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			p.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "a=fingerprint:sha-256 "):
			p.fingerprint = strings.TrimPrefix(line, "a=fingerprint:")
		case strings.HasPrefix(line, "a=ssrc:") && p.ssrc == 0:
			v, _, _ := strings.Cut(strings.TrimPrefix(line, "a=ssrc:"), " ")
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return p, fmt.Errorf("ssrc %q: %w", v, err)
			}
			p.ssrc = uint32(n)
		case strings.HasPrefix(line, "a=candidate:"):
			if err := p.addCandidate(strings.TrimPrefix(line, "a=")); err != nil {
				return p, err
			}
		}
	}
	switch {
	case p.ufrag == "" || p.pwd == "":
		return p, errors.New("local description has no ice credentials")
	case p.fingerprint == "":
		return p, errors.New("local description has no sha-256 fingerprint")
	case p.ssrc == 0:
		return p, errors.New("local description has no ssrc")
	case !p.ipv4.IsValid():
		return p, errors.New("local description has no ipv4 host candidate")
	}
	return p, nil
}

// addCandidate adds one host candidate in Meta's form ("... typ host
// generation 0 network-cost 50"), checking that every candidate shares one
// port, as Meta's do.
func (p *offerParams) addCandidate(c string) error {
	f := strings.Fields(c)
	// candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
	if len(f) < 8 || f[6] != "typ" || f[7] != "host" || !strings.EqualFold(f[2], "udp") {
		return nil
	}
	addr, err := netip.ParseAddr(f[4])
	if err != nil {
		return fmt.Errorf("candidate address %q: %w", f[4], err)
	}
	port, err := strconv.Atoi(f[5])
	if err != nil {
		return fmt.Errorf("candidate port %q: %w", f[5], err)
	}
	if p.port != 0 && port != p.port {
		return fmt.Errorf("candidates on ports %d and %d; want one port", p.port, port)
	}
	p.port = port
	switch {
	case addr.Is4() && !p.ipv4.IsValid():
		p.ipv4 = addr
	case addr.Is6() && !p.ipv6.IsValid():
		p.ipv6 = addr
	default:
		return nil
	}
	line := strings.Join(f[:8], " ") + " generation 0 network-cost 50"
	if addr.Is4() { // Meta lists its IPv4 candidate first
		p.candidates = append([]string{line}, p.candidates...)
	} else {
		p.candidates = append(p.candidates, line)
	}
	return nil
}
