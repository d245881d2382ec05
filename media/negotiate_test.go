package media

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"

	wacaller "github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
)

// chromiumOffer is the shape of Chromium's audio offer (TESTING.md, checked
// with Chromium 156): Opus 111 with minptime=10;useinbandfec=1, red, G722,
// PCMU, PCMA, CN, telephone-event/48000 (110) and /8000 (126), header
// extensions, a sha-256 fingerprint and a=setup:actpass.
const chromiumOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE 0\r\n" +
	"a=extmap-allow-mixed\r\n" +
	"a=msid-semantic: WMS 6c1b3f3e-0c5a-4e7e-9d0e-3e2f4b1a2c3d\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=candidate:1467250027 1 udp 2122260223 127.0.0.1 46243 typ host generation 0 network-id 1\r\n" +
	"a=ice-ufrag:Uq3X\r\n" +
	"a=ice-pwd:rGkqWjEtlfJ3lUaJv1k2Iu5o\r\n" +
	"a=ice-options:trickle\r\n" +
	"a=fingerprint:sha-256 5B:3A:0F:8E:11:9C:2D:47:6A:B0:E3:71:C4:58:9F:22:0D:6E:A1:35:F7:8B:4C:93:2E:D0:16:A9:7F:C3:58:E4\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" +
	"a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n" +
	"a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n" +
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n" +
	"a=sendrecv\r\n" +
	"a=msid:6c1b3f3e-0c5a-4e7e-9d0e-3e2f4b1a2c3d 0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtcp-rsize\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"a=rtcp-fb:111 transport-cc\r\n" +
	"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=rtpmap:63 red/48000/2\r\n" +
	"a=fmtp:63 111/111\r\n" +
	"a=rtpmap:9 G722/8000\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:13 CN/8000\r\n" +
	"a=rtpmap:110 telephone-event/48000\r\n" +
	"a=rtpmap:126 telephone-event/8000\r\n" +
	"a=ssrc:3735928559 cname:Wq1x2y3z4A5B6C7D\r\n" +
	"a=ssrc:3735928559 msid:6c1b3f3e-0c5a-4e7e-9d0e-3e2f4b1a2c3d 0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011\r\n"

// edit returns sdp with each old line (without line end) replaced by new;
// an empty new removes the line. It panics if a line is missing, so that a
// test cannot silently run on an unchanged offer.
func edit(sdp string, pairs ...string) string {
	for i := 0; i < len(pairs); i += 2 {
		old, repl := pairs[i]+"\r\n", pairs[i+1]
		if !strings.Contains(sdp, old) {
			panic(fmt.Sprintf("offer has no line %q", pairs[i]))
		}
		if repl != "" {
			repl += "\r\n"
		}
		sdp = strings.Replace(sdp, old, repl, 1)
	}
	return sdp
}

const (
	metaFmtp   = "a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1"
	metaMLine  = "m=audio 3484 UDP/TLS/RTP/SAVPF 111 126"
	metaV4Cand = "a=candidate:3935165743 1 udp 2122260223 57.144.215.49 3484 typ host generation 0 network-cost 50"
	metaV6Cand = "a=candidate:2617197009 1 udp 2122262783 2a03:2880:f36b:131:face:b00c:0:699c 3484 typ host generation 0 network-cost 50"
)

// negotiationOffers are offers of every shape we know, each with the
// payload types the answer must use for Opus, telephone-event/8000 and
// telephone-event/48000 (0: not offered).
var negotiationOffers = []struct {
	name   string
	offer  string
	opusPT int
	tePT   int
	te48PT int
}{
	{name: "meta captured", offer: wacaller.CapturedOffer, opusPT: 111, tePT: 126},
	{name: "meta ipv6 only", offer: edit(wacaller.CapturedOffer,
		metaV4Cand, "",
		"c=IN IP4 57.144.215.49", "c=IN IP6 2a03:2880:f36b:131:face:b00c:0:699c"), opusPT: 111, tePT: 126},
	{name: "meta other payload types", offer: strings.NewReplacer(
		" 111 126", " 96 101", ":111 ", ":96 ", ":126 ", ":101 ").Replace(wacaller.CapturedOffer), opusPT: 96, tePT: 101},
	{name: "meta fmtp reordered and upper case", offer: edit(wacaller.CapturedOffer,
		metaFmtp, "a=fmtp:111 UseInbandFEC=1; MINPTIME=20; sprop-maxcapturerate=16000;MaxPlaybackRate=16000;maxaveragebitrate=20000"), opusPT: 111, tePT: 126},
	{name: "meta stereo cbr usedtx", offer: edit(wacaller.CapturedOffer,
		metaFmtp, metaFmtp+";stereo=1;sprop-stereo=1;cbr=1;usedtx=1"), opusPT: 111, tePT: 126},
	{name: "meta no fmtp", offer: edit(wacaller.CapturedOffer, metaFmtp, ""), opusPT: 111, tePT: 126},
	{name: "meta no telephone-event", offer: edit(wacaller.CapturedOffer,
		metaMLine, "m=audio 3484 UDP/TLS/RTP/SAVPF 111",
		"a=rtpmap:126 telephone-event/8000", ""), opusPT: 111},
	{name: "meta with pcmu and pcma (additional_codecs)", offer: edit(wacaller.CapturedOffer,
		metaMLine, "m=audio 3484 UDP/TLS/RTP/SAVPF 111 0 8 126",
		"a=rtpmap:126 telephone-event/8000", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000"), opusPT: 111, tePT: 126},
	{name: "meta pcmu first", offer: edit(wacaller.CapturedOffer,
		metaMLine, "m=audio 3484 UDP/TLS/RTP/SAVPF 0 111 126",
		"a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:111 opus/48000/2"), opusPT: 111, tePT: 126},
	{name: "meta upper case codec name", offer: edit(wacaller.CapturedOffer,
		"a=rtpmap:111 opus/48000/2", "a=rtpmap:111 OPUS/48000/2"), opusPT: 111, tePT: 126},
	{name: "meta minptime 10", offer: strings.Replace(wacaller.CapturedOffer, "minptime=20", "minptime=10", 1), opusPT: 111, tePT: 126},
	{name: "chromium", offer: chromiumOffer, opusPT: 111, tePT: 126, te48PT: 110},
	{name: "chromium other payload types", offer: strings.NewReplacer(
		" 111 63 9 0 8 13 110 126", " 109 63 9 0 8 13 102 100", ":111 ", ":109 ", "111/111", "109/109", ":110 ", ":102 ", ":126 ", ":100 ").Replace(chromiumOffer),
		opusPT: 109, tePT: 100, te48PT: 102},
	{name: "chromium with meta fmtp", offer: edit(chromiumOffer,
		"a=fmtp:111 minptime=10;useinbandfec=1", metaFmtp), opusPT: 111, tePT: 126, te48PT: 110},
	{name: "chromium stereo", offer: edit(chromiumOffer,
		"a=fmtp:111 minptime=10;useinbandfec=1", "a=fmtp:111 minptime=10;stereo=1;sprop-stereo=1;useinbandfec=1"), opusPT: 111, tePT: 126, te48PT: 110},
	{name: "firefox-like", offer: strings.NewReplacer(
		" 111 63 9 0 8 13 110 126", " 109 9 0 8 101", ":111 ", ":109 ",
		"a=fmtp:109 minptime=10;useinbandfec=1", "a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1",
		"a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n", "", "a=rtpmap:13 CN/8000\r\n", "",
		"a=rtpmap:110 telephone-event/48000\r\n", "", ":126 ", ":101 ",
		"a=rtpmap:101 telephone-event/8000\r\n", "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n").Replace(chromiumOffer),
		opusPT: 109, tePT: 101},
}

// TestNegotiateOffers answers each offer with a real Session and checks the
// answer: Opus on the offer's payload type with our own fmtp,
// telephone-event/8000 when offered, no other codec, sha-256 fingerprints
// only, a=setup:active. Remote candidates are dropped (the offers name
// Meta's public servers), so nothing leaves loopback.
func TestNegotiateOffers(t *testing.T) {
	leakCheck(t)
	e := newTestEngineOpts(t, nil, engineOptions{remoteIPFilter: net.IP.IsLoopback})
	tb := newTestBot(t, bot.Twilio, 8000)
	for _, tt := range negotiationOffers {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			s, err := e.NewSession(ctx, SessionConfig{CallID: "wacid.NEG", Offer: tt.offer, Bot: tb.config()})
			if err != nil {
				t.Fatalf("NewSession(%s) error %v; want an answer", tt.name, err)
			}
			defer s.Close()
			checkAnswer(t, s.Answer(), tt.opusPT, tt.tePT, tt.te48PT, 8000)
		})
	}
}

// checkAnswer checks an answer's codecs, fmtp, fingerprints and DTLS role.
func checkAnswer(t *testing.T, answer string, opusPT, tePT, te48PT, botRate int) {
	t.Helper()
	section := audioSection(answer)
	var rtpmaps []string
	var setup []string
	for _, line := range strings.Split(strings.TrimRight(answer, "\r\n"), "\r\n") {
		switch {
		case strings.HasPrefix(line, "a=fingerprint:") && !strings.HasPrefix(line, "a=fingerprint:sha-256 "):
			t.Errorf("answer has %q; want only sha-256 fingerprints", line)
		case strings.HasPrefix(line, "a=setup:"):
			setup = append(setup, line)
		}
	}
	for _, line := range section {
		if strings.HasPrefix(line, "a=rtpmap:") {
			rtpmaps = append(rtpmaps, strings.ToLower(strings.TrimPrefix(line, "a=rtpmap:")))
		}
	}
	want := []string{fmt.Sprintf("%d opus/48000/2", opusPT)}
	if te48PT != 0 {
		want = append(want, fmt.Sprintf("%d telephone-event/48000", te48PT))
	}
	if tePT != 0 {
		want = append(want, fmt.Sprintf("%d telephone-event/8000", tePT))
	}
	if strings.Join(rtpmaps, ", ") != strings.Join(want, ", ") {
		t.Errorf("answer codecs = %q; want %q\n%s", rtpmaps, want, answer)
	}
	if len(setup) != 1 || setup[0] != "a=setup:active" {
		t.Errorf("answer setup = %q; want [a=setup:active]", setup)
	}
	// The Opus fmtp says what we do, not what the offer asked.
	fmtps := 0
	for _, line := range section {
		if strings.HasPrefix(line, fmt.Sprintf("a=fmtp:%d ", opusPT)) {
			fmtps++
		}
	}
	got, ok := parseOpusOffer(answer)
	switch {
	case !ok || fmtps != 1:
		t.Errorf("answer has %d Opus fmtp lines; want 1\n%s", fmtps, answer)
	case got.maxPlaybackRate != botRate || got.stereo || got.useDTX || got.cbr || got.maxAverageBitrate != 0 || !got.useInbandFEC:
		t.Errorf("answer Opus fmtp = %+v; want maxplaybackrate=%d, useinbandfec=1, mono, no dtx, cbr or bitrate cap", got, botRate)
	}
}

// TestNegotiateCapturedOfferCaps checks what Meta's limits do to a 24 kHz
// bot: the answer's sprop-maxcapturerate says 16000, since the encoder
// codes no more than wideband for a caller that plays at most 16 kHz.
func TestNegotiateCapturedOfferCaps(t *testing.T) {
	leakCheck(t)
	e := newTestEngineOpts(t, nil, engineOptions{remoteIPFilter: net.IP.IsLoopback})
	for _, tt := range []struct {
		rate, wantCapture int
	}{{8000, 8000}, {16000, 16000}, {24000, 16000}} {
		t.Run(fmt.Sprint(tt.rate), func(t *testing.T) {
			tb := newTestBot(t, bot.Vonage, tt.rate)
			s, err := e.NewSession(testContext(t), SessionConfig{CallID: "wacid.CAP", Offer: wacaller.CapturedOffer, Bot: tb.config()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			checkAnswer(t, s.Answer(), 111, 126, 0, tt.rate)
			want := fmt.Sprintf("sprop-maxcapturerate=%d;", tt.wantCapture)
			if !strings.Contains(s.Answer(), want) {
				t.Errorf("answer at %d Hz lacks %q:\n%s", tt.rate, want, s.Answer())
			}
		})
	}
}
