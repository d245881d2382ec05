package media

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	wacaller "github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

func TestPionLoggerLevels(t *testing.T) {
	errClosed := errors.New("stream is already closed")
	tests := []struct {
		name string
		log  func(l pionLogger)
		want zapcore.Level
	}{
		{"ping without pairs", func(l pionLogger) { l.Warn("Failed to ping without candidate pairs. Connection is not possible yet.") }, zapcore.DebugLevel},
		{"accept rtcp at teardown", func(l pionLogger) { l.Warnf("Failed to accept RTCP %v", errClosed) }, zapcore.DebugLevel},
		{"accept rtp at teardown", func(l pionLogger) { l.Warnf("Failed to accept RTP %v", errClosed) }, zapcore.DebugLevel},
		{"read on closed mux conn", func(l pionLogger) {
			l.Warnf("Failed to read from candidate %s: %v", "udp4 host 127.0.0.1:3478", io.ErrClosedPipe)
		}, zapcore.DebugLevel},
		{"accept rtcp, other error", func(l pionLogger) { l.Warnf("Failed to accept RTCP %v", errors.New("srtcp: decrypt failed")) }, zapcore.WarnLevel},
		{"read from candidate, other error", func(l pionLogger) {
			l.Warnf("Failed to read from candidate %s: %v", "udp4 host 127.0.0.1:3478", errors.New("connection refused"))
		}, zapcore.WarnLevel},
		{"unhandled rtcp", func(l pionLogger) { l.Warnf("Incoming unhandled RTCP ssrc(%d), OnTrack will not be fired", 5) }, zapcore.WarnLevel},
		{"error", func(l pionLogger) { l.Errorf("dtls handshake: %v", errors.New("bad certificate")) }, zapcore.ErrorLevel},
		{"info", func(l pionLogger) { l.Info("ICE connection state changed") }, zapcore.DebugLevel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			tt.log(pionLogger{logger: zap.New(core)})
			all := logs.All()
			if len(all) != 1 || all[0].Level != tt.want {
				t.Fatalf("%s logged %v; want one entry at %v", tt.name, all, tt.want)
			}
		})
	}
	// At info level nothing expected is written, and real warnings are.
	core, logs := observer.New(zapcore.InfoLevel)
	l := pionLogger{logger: zap.New(core)}
	l.Warnf("Failed to accept RTCP %v", errClosed)
	l.Warn("Failed to ping without candidate pairs. Connection is not possible yet.")
	l.Warnf("Incoming unhandled RTCP ssrc(%d), OnTrack will not be fired", 5)
	if all := logs.All(); len(all) != 1 || all[0].Level != zapcore.WarnLevel {
		t.Errorf("at info level pion logged %v; want only the unhandled RTCP warning", all)
	}
}

// TestPionQuietCalls runs calls from the Meta-faithful peer over a shared
// UDP mux, ending from either side, and checks that pion wrote no warning
// or error: the warnings it logs on every healthy call are debug entries.
func TestPionQuietCalls(t *testing.T) {
	leakCheck(t)
	core, logs := observer.New(zapcore.InfoLevel)
	logger := zap.New(core)
	mux, err := NewUDPMux(0, loopback, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mux.Close() })
	e := newTestEngine(t, func(c *EngineConfig) { c.Logger = logger; c.UDPMux = mux })
	tb := newTestBot(t, bot.Twilio, 8000)
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ctx := testContext(t)
			c, err := wacaller.New(wacaller.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := e.NewSession(ctx, SessionConfig{CallID: "wacid.QUIET", Offer: c.Offer(), Bot: tb.config()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tb.accepted(ctx)
			if err := c.SetAnswer(s.Answer()); err != nil {
				t.Fatal(err)
			}
			if err := s.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			for range 10 {
				if err := c.SendPCM(make([]int16, wacaller.MetaFrameSamples)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if i%2 == 0 { // the caller hangs up first
				_ = c.Close()
				waitFor(ctx, t, "the call to end", func() bool {
					select {
					case <-s.Done():
						return true
					default:
						return false
					}
				})
			}
			_ = s.Close()
			_ = c.Close()
		})
	}
	time.Sleep(100 * time.Millisecond) // let teardown goroutines log
	for _, entry := range logs.FilterFieldKey("pion").All() {
		t.Errorf("pion logged %s %q %v; want no warnings on healthy calls", entry.Level, entry.Message, entry.ContextMap())
	}
}
