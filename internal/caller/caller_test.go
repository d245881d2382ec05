package caller

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/tone"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// substituted are the line prefixes of CapturedOffer whose values a peer
// replaces with its own.
var substituted = []string{"m=audio ", "c=IN IP4 ", "a=candidate:", "a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:sha-256 ", "a=ssrc:"}

func isSubstituted(line string) bool {
	for _, p := range substituted {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

func TestMetaOfferShape(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		candidates []string // addresses, in order
	}{
		{name: "ipv4", cfg: Config{}, candidates: []string{"127.0.0.1"}},
		{name: "ipv4 and ipv6", cfg: Config{IPv6: true}, candidates: []string{"127.0.0.1", "::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.IPv6 {
				l, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
				if err != nil {
					t.Skipf("no IPv6 loopback on this machine: %v", err)
				}
				_ = l.Close()
			}
			c, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			offer := c.Offer()
			got := strings.Split(strings.TrimSuffix(offer, "\r\n"), "\r\n")
			want := strings.Split(strings.TrimSuffix(CapturedOffer, "\r\n"), "\r\n")

			// Every line that is not the peer's own is Meta's, in Meta's order.
			var gotKept, wantKept []string
			for _, l := range got {
				if !isSubstituted(l) {
					gotKept = append(gotKept, l)
				}
			}
			for _, l := range want {
				if !isSubstituted(l) {
					wantKept = append(wantKept, l)
				}
			}
			if strings.Join(gotKept, "\n") != strings.Join(wantKept, "\n") {
				t.Errorf("offer's own lines differ from Meta's:\n%s\nwant\n%s", strings.Join(gotKept, "\n"), strings.Join(wantKept, "\n"))
			}

			var addrs []string
			port := ""
			for _, l := range got {
				f := strings.Fields(l)
				switch {
				case strings.HasPrefix(l, "a=candidate:"):
					if len(f) != 12 || f[7] != "host" || f[8] != "generation" || f[11] != "50" {
						t.Errorf("candidate %q is not in Meta's form", l)
						continue
					}
					if port != "" && f[5] != port {
						t.Errorf("candidates on ports %s and %s; want one", port, f[5])
					}
					port = f[5]
					addrs = append(addrs, f[4])
				case strings.HasPrefix(l, "m=audio "):
					if !strings.HasSuffix(l, " UDP/TLS/RTP/SAVPF 111 126") {
						t.Errorf("m line %q; want Meta's formats", l)
					}
				case l == "c=IN IP4 127.0.0.1", strings.HasPrefix(l, "a=ice-"), strings.HasPrefix(l, "a=fingerprint:sha-256 "), strings.HasPrefix(l, "a=ssrc:"):
				case isSubstituted(l):
					t.Errorf("offer line %q not as expected", l)
				}
			}
			if strings.Join(addrs, " ") != strings.Join(tt.candidates, " ") {
				t.Errorf("candidate addresses = %v; want %v", addrs, tt.candidates)
			}
			if !strings.Contains(offer, "m=audio "+port+" ") {
				t.Errorf("m line port is not the candidates' port %s:\n%s", port, offer)
			}
			for _, l := range want {
				if strings.HasPrefix(l, "a=ice-ufrag:") || strings.HasPrefix(l, "a=fingerprint:") {
					if strings.Contains(offer, l) {
						t.Errorf("offer still has Meta's %q", l)
					}
				}
			}
		})
	}
}

// answerer is a plain pion answerer standing in for whatsapp_calls: it
// records what the Meta-shaped peer sends.
type answerer struct {
	pc *webrtc.PeerConnection

	mu     sync.Mutex
	opus   []*rtp.Packet
	dtmf   []*rtp.Packet
	srs    int
	dtmfPT webrtc.PayloadType
}

func newAnswerer(t *testing.T) *answerer {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000}, PayloadType: 126},
	} {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(reg))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	a := &answerer{pc: pc}
	pc.OnTrack(func(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
		go func() {
			for {
				pkts, _, err := rcv.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.SenderReport); ok {
						a.mu.Lock()
						a.srs++
						a.mu.Unlock()
					}
				}
			}
		}()
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			a.mu.Lock()
			if pkt.PayloadType == 126 {
				a.dtmf = append(a.dtmf, pkt)
			} else {
				a.opus = append(a.opus, pkt)
			}
			a.mu.Unlock()
		}
	})
	return a
}

func (a *answerer) answer(t *testing.T, offer string) string {
	t.Helper()
	if err := a.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.pc.AddTrack(tr); err != nil {
		t.Fatal(err)
	}
	ans, err := a.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(a.pc)
	if err := a.pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	<-done
	return a.pc.LocalDescription().SDP
}

// TestMetaPeerSends connects the Meta-shaped peer to a pion answerer and
// checks what it sends: Opus no wider than wideband at about 20 kbit/s,
// RTCP sender reports, and an RFC 4733 key press at 8000 Hz on PT 126.
func TestMetaPeerSends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := newAnswerer(t)
	defer a.pc.Close()
	answer := a.answer(t, c.Offer())
	if !strings.Contains(answer, "a=setup:active") {
		t.Fatalf("answer lacks a=setup:active (the peer must be the DTLS server):\n%s", answer)
	}
	if err := c.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}

	const frames = 150 // 3 s of speech-like audio
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := range frames {
		pcm := tone.Sine(nil, MetaSampleRate, 300, 6000, i*MetaFrameSamples, MetaFrameSamples)
		for j, v := range tone.Sine(nil, MetaSampleRate, 2500, 3000, i*MetaFrameSamples, MetaFrameSamples) {
			pcm[j] += v
		}
		if err := c.SendPCM(pcm); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
	if err := c.SendDTMF(ctx, '7', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		n, srs, d := len(a.opus), a.srs, len(a.dtmf)
		a.mu.Unlock()
		if (n >= frames-5 && srs > 0 && d >= 7) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.opus) < frames-5 {
		t.Fatalf("answerer got %d Opus packets; want about %d", len(a.opus), frames)
	}
	bytes := 0
	for _, p := range a.opus {
		bytes += len(p.Payload)
		if cfg := p.Payload[0] >> 3; bandwidthOfConfig(cfg) > 2 {
			t.Errorf("packet TOC config %d is wider than wideband", cfg)
		}
	}
	if kbps := float64(bytes*8) / (float64(len(a.opus)) * 0.020) / 1000; kbps > 22 || kbps < 10 {
		t.Errorf("average Opus bitrate %.1f kbit/s; want about %d", kbps, MetaBitrate/1000)
	}
	if a.srs == 0 {
		t.Error("no RTCP sender report received")
	}
	// One key press: several packets with one timestamp, the end bit set
	// on the last three, durations in 8 kHz ticks (100 ms = 800).
	if len(a.dtmf) < 7 {
		t.Fatalf("got %d telephone-event packets; want at least 7", len(a.dtmf))
	}
	ends := 0
	for _, p := range a.dtmf {
		if p.Timestamp != a.dtmf[0].Timestamp || p.Payload[0] != 7 {
			t.Errorf("telephone-event packet %+v: want event 7 at timestamp %d", p.Payload, a.dtmf[0].Timestamp)
		}
		if p.Payload[1]&0x80 != 0 {
			ends++
			if dur := int(p.Payload[2])<<8 | int(p.Payload[3]); dur != 800 {
				t.Errorf("end packet duration %d; want 800 (100 ms at 8000 Hz)", dur)
			}
		}
	}
	if ends != 3 || a.dtmf[len(a.dtmf)-1].Payload[1]&0x80 == 0 {
		t.Errorf("%d end packets, last has end bit %v; want 3 at the end", ends, a.dtmf[len(a.dtmf)-1].Payload[1]&0x80 != 0)
	}
}

// bandwidthOfConfig returns the audio bandwidth of an Opus TOC
// configuration (RFC 6716 section 3.1): 0 narrowband, 1 mediumband, 2
// wideband, 3 super-wideband, 4 fullband.
func bandwidthOfConfig(cfg byte) int {
	switch {
	case cfg < 12: // SILK: NB 0-3, MB 4-7, WB 8-11
		return int(cfg / 4)
	case cfg < 16: // Hybrid: SWB 12-13, FB 14-15
		return 3 + int(cfg-12)/2
	}
	// CELT: NB 16-19, WB 20-23, SWB 24-27, FB 28-31
	return []int{0, 2, 3, 4}[(cfg-16)/4]
}

func TestParseShape(t *testing.T) {
	for _, s := range []Shape{Meta, Pion} {
		if got, err := ParseShape(s.String()); err != nil || got != s {
			t.Errorf("ParseShape(%q) = %v, %v; want %v", s.String(), got, err, s)
		}
	}
	if _, err := ParseShape("chromium"); err == nil {
		t.Error(`ParseShape("chromium") error = nil; want an error`)
	}
}
