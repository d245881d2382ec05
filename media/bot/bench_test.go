package bot

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/coder/websocket"
)

// BenchmarkAppendAudio measures building one 20 ms audio message alone.
func BenchmarkAppendAudio(b *testing.B) {
	tests := []struct {
		name string
		d    dialect
		rate int
	}{
		{"twilio", newTwilio(testCall, nil), 8000},
		{"vonage16k", newVonage(16000, testCall, nil), 16000},
		{"vonage24k", newVonage(24000, testCall, nil), 24000},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			frame := sine(tt.rate/50, 0, 440, 10000, tt.rate)
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				buf = tt.d.appendAudio(buf[:0], frame, -1)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// BenchmarkWriteAudio measures WriteAudio end to end against a local bot that
// discards what it gets.
func BenchmarkWriteAudio(b *testing.B) {
	for _, protocol := range []Protocol{Twilio, Vonage} {
		b.Run(string(protocol), func(b *testing.B) {
			bot := newBot(b)
			c := dial(b, Config{URL: bot.url("/"), Protocol: protocol, Call: testCall})
			bot.accept(b).discard()
			frame := sine(c.FrameSamples(), 0, 440, 10000, c.SampleRate())
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.WriteAudio(ctx, frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode measures turning one bot audio message into PCM.
func BenchmarkDecode(b *testing.B) {
	ulaw := make([]byte, 160)
	twilioMsg := []byte(`{"event":"media","streamSid":"MZ00000000000000000000000000000000","media":{"payload":"` +
		base64.StdEncoding.EncodeToString(ulaw) + `"}}`)
	tests := []struct {
		name string
		d    dialect
		typ  websocket.MessageType
		msg  []byte
	}{
		{"twilio", newTwilio(testCall, nil), websocket.MessageText, twilioMsg},
		{"vonage16k", newVonage(16000, testCall, nil), websocket.MessageBinary, make([]byte, 640)},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tt.msg)))
			for b.Loop() {
				if ev, ignored := tt.d.decode(tt.typ, tt.msg); ev.Kind != EventAudio {
					b.Fatalf("decode: %s", ignored)
				}
			}
		})
	}
}

// BenchmarkReadEvent measures ReadEvent end to end: a local bot sends 20 ms
// audio messages as fast as they are read.
func BenchmarkReadEvent(b *testing.B) {
	twilioMsg := []byte(`{"event":"media","streamSid":"MZ00000000000000000000000000000000","media":{"payload":"` +
		base64.StdEncoding.EncodeToString(make([]byte, 160)) + `"}}`)
	tests := []struct {
		protocol Protocol
		typ      websocket.MessageType
		msg      []byte
	}{
		{Twilio, websocket.MessageText, twilioMsg},
		{Vonage, websocket.MessageBinary, make([]byte, 640)},
	}
	for _, tt := range tests {
		b.Run(string(tt.protocol), func(b *testing.B) {
			bot := newBot(b)
			c := dial(b, Config{URL: bot.url("/"), Protocol: tt.protocol, Call: testCall})
			p := bot.accept(b)
			p.discard()
			ctx, cancel := context.WithCancel(context.Background())
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				for ctx.Err() == nil {
					// Background: a cancellable context would add the bot's
					// own allocations to the count.
					if err := p.ws.Write(context.Background(), tt.typ, tt.msg); err != nil {
						return
					}
				}
			}()
			b.ReportAllocs()
			for b.Loop() {
				if ev, err := c.ReadEvent(ctx); err != nil || ev.Kind != EventAudio {
					b.Fatalf("ReadEvent = %v, %v", ev.Kind, err)
				}
			}
			b.StopTimer()
			cancel()
			p.close()
			<-sent
		})
	}
}
