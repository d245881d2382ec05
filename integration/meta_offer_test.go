package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/pion/rtp"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/tone"
)

// TestCallCapturedOffer is the whole path for Meta's real offer: the
// Meta-faithful peer offers Meta's captured SDP (only its own address,
// candidates, ICE credentials, fingerprint and SSRC put in) through a
// signed connect webhook to a real Caddy; the pre_accept answer must hold
// Opus; the peer connects ICE and DTLS (as the DTLS server), hears the bot,
// is heard, and what it hears keeps to the offer's limits (20 kbit/s on
// average, nothing wider than wideband).
func TestCallCapturedOffer(t *testing.T) {
	graph := newFakeGraph(t)
	bot := newTestBot(t, "vonage", 24000, 600)
	tester := caddytest.NewTester(t)
	tester.InitServer(callConfig(graph.URL, "ws"+strings.TrimPrefix(bot.URL, "http"), "vonage", "bot_sample_rate 24000"), "caddyfile")
	const webhook = "http://localhost:9080/webhook"
	const callID = "wacid.captured-offer"

	audio := newCallerAudio(t)
	var mu sync.Mutex
	var payloads [][]byte
	c, err := caller.New(caller.Config{OnAudio: func(p *rtp.Packet) {
		audio.onAudio(p)
		mu.Lock()
		payloads = append(payloads, append([]byte(nil), p.Payload...))
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	offer := c.Offer()
	for _, line := range []string{
		"a=ice-lite", "m=audio ", "a=setup:actpass", "a=mid:audio", "a=rtpmap:111 opus/48000/2",
		"a=fmtp:111 " + caller.MetaOpusFmtp, "a=rtpmap:126 telephone-event/8000", "a=ptime:20", "a=maxptime:20",
	} {
		if !strings.Contains(offer, "\r\n"+line) {
			t.Fatalf("the peer's offer lacks Meta's %q:\n%s", line, offer)
		}
	}
	signedPost(t, webhook, connectWebhook(callID, offer))

	pre := graph.wait(t, 10*time.Second)
	session, _ := pre.Body["session"].(map[string]any)
	answer, _ := session["sdp"].(string)
	if pre.Body["action"] != "pre_accept" || session["sdp_type"] != "answer" {
		t.Fatalf("first Graph action = %v; want pre_accept with an answer", pre.Body)
	}
	for _, want := range []string{"a=rtpmap:111 opus/48000/2", "a=rtpmap:126 telephone-event/8000", "a=setup:active", "a=fingerprint:sha-256 "} {
		if !strings.Contains(answer, want) {
			t.Errorf("pre_accept answer lacks %q:\n%s", want, answer)
		}
	}
	for line := range strings.Lines(answer) {
		if strings.HasPrefix(line, "a=fingerprint:") && !strings.HasPrefix(line, "a=fingerprint:sha-256 ") {
			t.Errorf("answer has %q; Meta accepts only sha-256", strings.TrimSpace(line))
		}
	}
	if err := c.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("peer never connected: %v", err)
	}
	if acc := graph.wait(t, 10*time.Second); acc.Body["action"] != "accept" {
		t.Fatalf("second Graph action = %v; want accept", acc.Body["action"])
	}

	speak(t, c, 1000, 1500*time.Millisecond)
	if err := c.SendDTMF(ctx, '9', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)

	heard, digits, _ := bot.snapshot()
	if len(heard) < 24000/2 {
		t.Fatalf("bot heard %d samples; want at least 0.5 s at 24 kHz", len(heard))
	}
	window := heard[len(heard)/4 : len(heard)*3/4]
	if got, off := tone.Amplitude(window, 24000, 1000), tone.Amplitude(window, 24000, 600); got < 3000 || got < 10*off {
		t.Errorf("bot heard 1 kHz at amplitude %.0f (600 Hz: %.0f); want ≥ 3000 and 10x the off-frequency level", got, off)
	}
	if got := strings.Join(digits, ""); got != "9" {
		t.Errorf("bot DTMF = %q; want \"9\"", got)
	}
	got := audio.samples()
	if len(got) < 48000/2 {
		t.Fatalf("peer decoded %d samples; want at least 0.5 s", len(got))
	}
	tail := got[len(got)/2:]
	if a, off := tone.Amplitude(tail, 48000, 600), tone.Amplitude(tail, 48000, 1000); a < 3000 || a < 10*off {
		t.Errorf("peer heard 600 Hz at amplitude %.0f (1 kHz: %.0f); want ≥ 3000 and 10x off-frequency", a, off)
	}

	// A 24 kHz bot would be coded super-wideband at 40 kbit/s; Meta's
	// fmtp caps us at wideband and 20 kbit/s on average.
	mu.Lock()
	defer mu.Unlock()
	bytes, speech := 0, 0
	for _, p := range payloads {
		if bw := tocBandwidth(p[0]); bw > 2 {
			t.Fatalf("packet TOC 0x%02x is wider than wideband", p[0])
		}
		if len(p) > 3 { // not the silence frame
			bytes += len(p)
			speech++
		}
	}
	if speech < 25 {
		t.Fatalf("peer got %d audible packets; want the bot's tone", speech)
	}
	kbps := float64(bytes*8) / (float64(speech) * 0.020) / 1000
	t.Logf("bot audio to the peer: %d audible packets, %.1f kbit/s on average", speech, kbps)
	if kbps > 20 {
		t.Errorf("bot audio to the peer averages %.1f kbit/s; want at most 20 (maxaveragebitrate)", kbps)
	}
}

// tocBandwidth returns the audio bandwidth an Opus TOC byte declares (RFC
// 6716 section 3.1): 0 narrowband, 1 mediumband, 2 wideband, 3
// super-wideband, 4 fullband.
func tocBandwidth(toc byte) int {
	cfg := toc >> 3
	switch {
	case cfg < 12: // SILK: NB 0-3, MB 4-7, WB 8-11
		return int(cfg / 4)
	case cfg < 16: // Hybrid: SWB 12-13, FB 14-15
		return 3 + int(cfg-12)/2
	}
	return []int{0, 2, 3, 4}[(cfg-16)/4] // CELT: NB, WB, SWB, FB
}
