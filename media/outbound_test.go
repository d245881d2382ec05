package media

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	wacaller "github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// TestOutboundCall places a business-initiated call against a peer that
// answers as Meta does (ICE-lite, a=setup:active, Meta's Opus fmtp) and
// checks audio both ways through the bot once bridged.
func TestOutboundCall(t *testing.T) {
	leakCheck(t)
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	tb := newTestBot(t, bot.Twilio, 8000)

	o, err := e.NewOutbound(ctx, OutboundConfig{SampleRate: 8000})
	if err != nil {
		t.Fatalf("NewOutbound: %v", err)
	}
	defer o.Close()
	offer := o.Offer()
	for _, want := range []string{"a=setup:actpass", "a=fingerprint:sha-256 ", "typ host", "a=rtpmap:111 opus/48000/2",
		"a=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=8000"} {
		if !strings.Contains(offer, want) {
			t.Errorf("offer lacks %q:\n%s", want, offer)
		}
	}
	for _, unwanted := range []string{"a=ice-lite", "a=fingerprint:sha-512", "a=fingerprint:sha-1 "} {
		if strings.Contains(offer, unwanted) {
			t.Errorf("offer has %q:\n%s", unwanted, offer)
		}
	}

	meta, err := wacaller.NewAnswerer(wacaller.Config{}, offer)
	if err != nil {
		t.Fatalf("NewAnswerer: %v", err)
	}
	defer meta.Close()
	answer := meta.Answer()
	for _, want := range []string{"a=ice-lite", "a=setup:active", "a=fmtp:111 " + wacaller.MetaOpusFmtp} {
		if !strings.Contains(answer, want) {
			t.Fatalf("meta's answer lacks %q:\n%s", want, answer)
		}
	}
	if _, err := o.Bridge(ctx, "wacid.OUT", tb.config()); !errors.Is(err, ErrBadAnswer) {
		t.Fatalf("Bridge before the answer = %v; want ErrBadAnswer", err)
	}
	if err := o.SetAnswer(answer); err != nil {
		t.Fatalf("SetAnswer: %v", err)
	}
	if err := o.SetAnswer(answer); !errors.Is(err, ErrBadAnswer) {
		t.Fatalf("second SetAnswer = %v; want ErrBadAnswer", err)
	}
	if err := meta.WaitConnected(ctx); err != nil {
		t.Fatalf("meta side: WaitConnected: %v", err)
	}

	s, err := o.Bridge(ctx, "wacid.OUT", tb.config())
	if err != nil {
		t.Fatalf("Bridge: %v", err)
	}
	b := tb.accepted(ctx)
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
	pcm := tone(wacaller.MetaSampleRate, wacaller.MetaFrameSamples, 0, 440, 8000)
	for range 25 {
		if err := meta.SendPCM(pcm); err != nil {
			t.Fatalf("SendPCM: %v", err)
		}
		time.Sleep(FrameDuration)
	}
	b.wait(ctx, t, "the user's audio at the bot", func() bool { return b.audioMsgs >= 10 })
	waitFor(ctx, t, "our audio at the user", func() bool { return meta.Received() >= 10 })
	b.checkWire(t)

	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Err() after Close = %v; want ErrClosed", err)
	}
	if len(b.find("stop")) != 1 {
		t.Errorf("the bot got %d stop messages; want 1", len(b.find("stop")))
	}
}

// TestOutboundNotBridged checks that an attempt that ends before the user
// answers (rejected, no answer, the bot down) releases everything.
func TestOutboundNotBridged(t *testing.T) {
	tests := []struct {
		name   string
		answer bool
		bridge bool // with a bot that is down
	}{
		{name: "no answer"},
		{name: "answered, never accepted", answer: true},
		{name: "bot down", answer: true, bridge: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			ctx := testContext(t)
			e := newTestEngine(t, nil)
			o, err := e.NewOutbound(ctx, OutboundConfig{})
			if err != nil {
				t.Fatalf("NewOutbound: %v", err)
			}
			if tt.answer {
				meta, err := wacaller.NewAnswerer(wacaller.Config{}, o.Offer())
				if err != nil {
					t.Fatalf("NewAnswerer: %v", err)
				}
				defer meta.Close()
				if err := o.SetAnswer(meta.Answer()); err != nil {
					t.Fatalf("SetAnswer: %v", err)
				}
			}
			if tt.bridge {
				tb := newTestBot(t, bot.Twilio, 8000)
				cfg := tb.config()
				tb.srv.Close()
				cfg.DialTimeout = 200 * time.Millisecond
				if _, err := o.Bridge(ctx, "wacid.OUT", cfg); !errors.Is(err, ErrBotUnavailable) {
					t.Fatalf("Bridge to a bot that is down = %v; want ErrBotUnavailable", err)
				}
			}
			if err := o.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := o.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := o.SetAnswer("v=0"); !errors.Is(err, ErrClosed) {
				t.Errorf("SetAnswer after Close = %v; want ErrClosed", err)
			}
		})
	}
}

func TestOutboundBadInput(t *testing.T) {
	leakCheck(t)
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	if _, err := e.NewOutbound(ctx, OutboundConfig{SampleRate: 44100}); err == nil {
		t.Error("NewOutbound at 44100 Hz = nil error; want one")
	}
	o, err := e.NewOutbound(ctx, OutboundConfig{})
	if err != nil {
		t.Fatalf("NewOutbound: %v", err)
	}
	defer o.Close()
	for _, answer := range []string{"", "not sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n"} {
		if err := o.SetAnswer(answer); !errors.Is(err, ErrBadAnswer) {
			t.Errorf("SetAnswer(%q) = %v; want ErrBadAnswer", answer, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if o, err := e.NewOutbound(cctx, OutboundConfig{}); err == nil {
		_ = o.Close()
		t.Error("NewOutbound with a canceled context = nil error; want one")
	}
}

// BenchmarkPlaceOffer measures what placing a call costs us before
// connect is sent: a PeerConnection with our track, the offer and a
// complete ICE gathering on loopback, then the teardown of an attempt that
// was never answered.
func BenchmarkPlaceOffer(b *testing.B) {
	e, err := NewEngine(EngineConfig{Networks: loopback, OpusComplexity: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		o, err := e.NewOutbound(ctx, OutboundConfig{SampleRate: 8000})
		if err != nil {
			b.Fatal(err)
		}
		if err := o.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlaceConnect measures an attempt up to connected media: our
// offer, Meta's ICE-lite answer, ICE and DTLS (we are the DTLS server).
func BenchmarkPlaceConnect(b *testing.B) {
	e, err := NewEngine(EngineConfig{Networks: loopback, OpusComplexity: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		o, err := e.NewOutbound(ctx, OutboundConfig{SampleRate: 8000})
		if err != nil {
			b.Fatal(err)
		}
		meta, err := wacaller.NewAnswerer(wacaller.Config{}, o.Offer())
		if err != nil {
			b.Fatal(err)
		}
		if err := o.SetAnswer(meta.Answer()); err != nil {
			b.Fatal(err)
		}
		if err := meta.WaitConnected(ctx); err != nil {
			b.Fatal(err)
		}
		_ = meta.Close()
		_ = o.Close()
	}
}
