package media

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	wacaller "github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// TestPCMUCodesRoundTrip checks that the pipeline's G.711 expansion gives
// back every mu-law code as itself (0x7F, negative zero, as 0xFF).
func TestPCMUCodesRoundTrip(t *testing.T) {
	pkt := make([]byte, 256)
	for i := range pkt {
		pkt[i] = byte(i)
	}
	pcm := make([]int16, 256)
	if n, err := (pcmuDecoder{}).Decode(pkt, pcm); n != 256 || err != nil {
		t.Fatalf("Decode = %d, %v; want 256, nil", n, err)
	}
	for i, s := range pcm {
		if want := ulawDecode(byte(i)); s != want {
			t.Errorf("code 0x%02X decodes to %d; want %d (G.711)", i, s, want)
		}
	}
	out := make([]byte, 256)
	if n, _ := (pcmuEncoder{}).Encode(pcm, out); n != 256 {
		t.Fatalf("Encode = %d bytes; want 256", n)
	}
	for i, b := range out {
		want := byte(i)
		if want == 0x7F {
			want = 0xFF
		}
		if b != want {
			t.Errorf("code 0x%02X comes back as 0x%02X", i, b)
		}
	}
	if n, _ := (pcmuDecoder{}).Decode(nil, pcm[:160]); n != 160 || pcm[0] != 0 || pcm[159] != 0 {
		t.Errorf("concealment = %d samples starting %d; want 160 of silence", n, pcm[0])
	}
}

// pcmuPattern returns n mu-law bytes cycling through every code but 0x7F,
// starting at code first.
func pcmuPattern(n int, first byte) []byte {
	out := make([]byte, 0, n)
	for c := first; len(out) < n; c++ {
		if c != 0x7F {
			out = append(out, c)
		}
	}
	return out
}

// TestSessionPCMUPassthrough is a whole call with the Meta-faithful peer
// offering PCMU besides Opus and a twilio bot: the answer holds PCMU only,
// the caller's mu-law reaches the bot code for code, the bot's mu-law
// (sent in chunks that are not 20 ms) reaches the caller as 160-byte
// packets code for code, silence is 0xFF, and DTMF and marks work.
func TestSessionPCMUPassthrough(t *testing.T) {
	leakCheck(t)
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Twilio, 8000)
	ctx := testContext(t)

	var mu sync.Mutex
	var pkts []rtp.Packet
	c, err := wacaller.New(wacaller.Config{PCMU: true, OnAudio: func(p *rtp.Packet) {
		mu.Lock()
		pkts = append(pkts, rtp.Packet{Header: p.Header, Payload: append([]byte(nil), p.Payload...)})
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if !strings.Contains(c.Offer(), "UDP/TLS/RTP/SAVPF 111 0 126\r\n") || !strings.Contains(c.Offer(), "\r\na=rtpmap:0 PCMU/8000\r\n") {
		t.Fatalf("offer lacks PCMU as an additional codec:\n%s", c.Offer())
	}
	s, err := e.NewSession(ctx, SessionConfig{CallID: "wacid.PCMU", Offer: c.Offer(), Bot: tb.config()})
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	answer := s.Answer()
	if !strings.Contains(answer, "a=rtpmap:0 PCMU/8000") || strings.Contains(strings.ToLower(answer), "opus") ||
		!strings.Contains(answer, "a=rtpmap:126 telephone-event/8000") {
		t.Fatalf("answer should hold PCMU and telephone-event only:\n%s", answer)
	}
	b := tb.accepted(ctx)
	if err := c.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	if got := c.Codec(); got != webrtc.MimeTypePCMU {
		t.Fatalf("caller bound %q; want PCMU", got)
	}
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Codec; got != "pcmu" {
		t.Errorf("Stats().Codec = %q; want pcmu", got)
	}

	// Caller to bot: one second of every code, paced.
	sent := pcmuPattern(8000, 0)
	for off := 0; off < len(sent); off += wacaller.PCMUFrame {
		if err := c.SendPCMU(sent[off : off+wacaller.PCMUFrame]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(FrameDuration)
	}
	if err := c.SendDTMF(ctx, '5', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	b.wait(ctx, t, "the caller's second and the key press", func() bool {
		return len(b.audio) >= len(sent) && countEvents(b.msgs, "dtmf") >= 1
	})
	b.mu.Lock()
	heard := append([]int16(nil), b.audio[:len(sent)]...)
	b.mu.Unlock()
	for i, smp := range heard {
		if got := ulawEncode(smp); got != sent[i] {
			t.Fatalf("bot sample %d is code 0x%02X; the caller sent 0x%02X", i, got, sent[i])
		}
	}
	if d := b.find("dtmf"); len(d) != 1 || d[0].Dtmf == nil || d[0].Dtmf.Digit != "5" {
		t.Errorf("bot dtmf = %+v; want one digit 5", d)
	}

	// Bot to caller: 1.5 s in 100-sample chunks, then a mark.
	want := pcmuPattern(12000, 0)
	pcm := make([]int16, len(want))
	for i, u := range want {
		pcm[i] = ulawDecode(u)
	}
	b.sendAudio(ctx, t, pcm, 100)
	b.sendMark(ctx, t, "end")
	b.wait(ctx, t, "the mark echo", func() bool { return countEvents(b.msgs, "mark") >= 1 })
	time.Sleep(3 * FrameDuration)

	mu.Lock()
	defer mu.Unlock()
	var got []byte
	for i, p := range pkts {
		if p.PayloadType != 0 || len(p.Payload) != pcmuFrameBytes {
			t.Fatalf("packet %d: payload type %d, %d bytes; want 0 and 160", i, p.PayloadType, len(p.Payload))
		}
		if i > 0 && p.Timestamp-pkts[i-1].Timestamp != pcmuFrameBytes {
			t.Fatalf("packet %d: timestamp step %d; want 160", i, p.Timestamp-pkts[i-1].Timestamp)
		}
		got = append(got, p.Payload...)
	}
	start := strings.IndexByte(string(got), 0x00)
	if start < 0 {
		t.Fatal("the caller never heard the bot")
	}
	for i, u := range got[:start] {
		if u != pcmuSilence {
			t.Fatalf("byte %d before the bot spoke is 0x%02X; want silence 0xFF", i, u)
		}
	}
	if len(got)-start < len(want) {
		t.Fatalf("caller heard %d bytes of the bot; want %d", len(got)-start, len(want))
	}
	if string(got[start:start+len(want)]) != string(want) {
		t.Error("the caller did not hear the bot's codes as sent")
	}
	if st := s.Stats(); st.PacketsLost != 0 || st.DTMFCount != 1 {
		t.Errorf("Stats() lost %d dtmf %d; want 0 and 1", st.PacketsLost, st.DTMFCount)
	}
	b.checkWire(t)
}

// TestSessionCodecChoice checks which codec an offer with Opus and PCMU
// is answered with, by Codec and bot dialect.
func TestSessionCodecChoice(t *testing.T) {
	leakCheck(t)
	e := newTestEngine(t, nil)
	tests := []struct {
		name     string
		protocol bot.Protocol
		rate     int
		codec    Codec
		pcmu     bool
	}{
		{"auto twilio", bot.Twilio, 8000, "", true},
		{"opus twilio", bot.Twilio, 8000, CodecOpus, false},
		{"auto vonage", bot.Vonage, 16000, CodecAuto, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTestBot(t, tt.protocol, tt.rate)
			ctx := testContext(t)
			c, err := wacaller.New(wacaller.Config{PCMU: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := e.NewSession(ctx, SessionConfig{CallID: "wacid.CHOICE", Offer: c.Offer(), Bot: tb.config(), Codec: tt.codec})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			answer := s.Answer()
			hasPCMU := strings.Contains(answer, "PCMU/8000")
			hasOpus := strings.Contains(answer, "opus/48000")
			if hasPCMU != tt.pcmu || hasOpus == tt.pcmu {
				t.Errorf("answer PCMU %v Opus %v; want PCMU %v only:\n%s", hasPCMU, hasOpus, tt.pcmu, answer)
			}
		})
	}
	if _, err := e.NewSession(testContext(t), SessionConfig{Codec: "g722"}); err == nil || !strings.Contains(err.Error(), "codec") {
		t.Errorf("NewSession with codec g722: %v; want an error naming the codec", err)
	}
}
