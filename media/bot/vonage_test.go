package bot

import (
	"context"
	"encoding/binary"
	"reflect"
	"strconv"
	"testing"

	"github.com/coder/websocket"
)

func TestVonageOpening(t *testing.T) {
	tests := []struct {
		name      string
		rate      int
		call      *CallInfo
		params    []Param
		wantRate  int
		wantFirst string
	}{
		{
			name: "default rate", rate: 0, wantRate: 16000,
			wantFirst: `{"event":"websocket:connected","content-type":"audio/l16;rate=16000","from":"15551234567",` +
				`"to":"15550001111","whatsapp_call_id":"wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI","caller_name":"Jane \"JJ\" Doe"}`,
		},
		{
			name: "8 kHz with params", rate: 8000, wantRate: 8000, params: []Param{{"tenant", "acme"}, {"x-lang", "fr\n"}},
			wantFirst: `{"event":"websocket:connected","content-type":"audio/l16;rate=8000","from":"15551234567",` +
				`"to":"15550001111","whatsapp_call_id":"wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI","caller_name":"Jane \"JJ\" Doe","tenant":"acme","x-lang":"fr\n"}`,
		},
		{
			name: "caller without a phone number", rate: 16000, wantRate: 16000, call: &usernameCall,
			wantFirst: `{"event":"websocket:connected","content-type":"audio/l16;rate=16000","from":"",` +
				`"to":"15550001111","whatsapp_call_id":"wacid.NOPHONE","caller_name":"Jane",` +
				`"from_user_id":"US.1349","from_parent_user_id":"US.ENT.1181","username":"jane.doe",` +
				`"deeplink_payload":"spring","cta_payload":"btn-42"}`,
		},
		{
			name: "24 kHz", rate: 24000, wantRate: 24000,
			wantFirst: `{"event":"websocket:connected","content-type":"audio/l16;rate=24000","from":"15551234567",` +
				`"to":"15550001111","whatsapp_call_id":"wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI","caller_name":"Jane \"JJ\" Doe"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newBot(t)
			call := testCall
			if tt.call != nil {
				call = *tt.call
			}
			c := dial(t, Config{URL: bot.url("/"), Protocol: Vonage, SampleRate: tt.rate, Call: call, Params: tt.params})
			p := bot.accept(t)
			p.startReading()
			if got := p.nextText(t); got != tt.wantFirst {
				t.Errorf("first message =\n%s\nwant\n%s", got, tt.wantFirst)
			}
			if c.SampleRate() != tt.wantRate || c.FrameSamples() != tt.wantRate/50 || c.StreamSID() != "" {
				t.Errorf("SampleRate, FrameSamples, StreamSID = %d, %d, %q; want %d, %d, \"\"",
					c.SampleRate(), c.FrameSamples(), c.StreamSID(), tt.wantRate, tt.wantRate/50)
			}
		})
	}
}

func TestVonageAudio(t *testing.T) {
	for _, rate := range []int{8000, 16000, 24000} {
		t.Run(strconv.Itoa(rate), func(t *testing.T) {
			bot := newBot(t)
			c := dial(t, Config{URL: bot.url("/"), Protocol: Vonage, SampleRate: rate, Call: testCall})
			p := bot.accept(t)
			p.startReading()
			p.next(t) // websocket:connected

			for i := range 3 {
				frame := sine(rate/50, i*rate/50, 440, 20000, rate)
				frame[0] = -32768
				frame[1] = 32767
				if err := c.WriteAudio(context.Background(), frame); err != nil {
					t.Fatalf("WriteAudio: %v", err)
				}
				m := p.next(t)
				if m.typ != websocket.MessageBinary || len(m.data) != 2*rate/50 {
					t.Fatalf("frame %d: %v frame of %d bytes; want binary of %d", i, m.typ, len(m.data), 2*rate/50)
				}
				got := make([]int16, len(m.data)/2)
				for j := range got {
					got[j] = int16(binary.LittleEndian.Uint16(m.data[2*j:]))
				}
				if !reflect.DeepEqual(got, frame) {
					t.Fatalf("frame %d: bot got other samples than sent", i)
				}
			}
		})
	}
}

func TestVonageReadEvents(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Protocol: Vonage, Call: testCall})
	p := bot.accept(t)
	p.startReading()

	sends := []struct {
		typ  websocket.MessageType
		data string
	}{
		{websocket.MessageBinary, "\x01\x00\xff\xff\x00\x80\x7f"}, // 3 samples and an odd byte
		{websocket.MessageBinary, ""},
		{websocket.MessageBinary, "\x05"},
		{websocket.MessageText, `{"action":"dance"}`},
		{websocket.MessageText, `nope`},
		{websocket.MessageText, `{"action":"notify","payload":{"id": 7, "tag":"end"}}`},
		{websocket.MessageText, `{"action":"clear"}`},
		{websocket.MessageText, `{"action":"notify"}`},
		{websocket.MessageBinary, "\x00\x01"},
	}
	for _, s := range sends {
		p.send(t, s.typ, s.data)
	}
	want := []Event{
		{Kind: EventAudio, Audio: []int16{1, -1, -32768}},
		{Kind: EventMark, Mark: Mark{payload: []byte(`{"id": 7, "tag":"end"}`)}},
		{Kind: EventClear},
		{Kind: EventMark},
		{Kind: EventAudio, Audio: []int16{256}},
	}
	var marks []Mark
	for i, w := range want {
		got := readEvent(t, c)
		if got.Kind != w.Kind || !reflect.DeepEqual(got.Mark, w.Mark) || !reflect.DeepEqual(got.Audio, w.Audio) {
			t.Errorf("event %d = %v %q %v; want %v %q %v", i, got.Kind, got.Mark, got.Audio, w.Kind, w.Mark, w.Audio)
		}
		if got.Kind == EventMark {
			marks = append(marks, got.Mark)
		}
	}

	// Echo the notifies, then acknowledge a clear: pending notifies are not
	// echoed by a clear.
	ctx := context.Background()
	for _, m := range marks {
		if err := c.WriteMarkPlayed(ctx, m); err != nil {
			t.Fatalf("WriteMarkPlayed: %v", err)
		}
	}
	if err := c.WriteCleared(ctx, marks); err != nil {
		t.Fatalf("WriteCleared: %v", err)
	}
	p.next(t) // websocket:connected
	for _, want := range []string{
		`{"event":"websocket:notify","payload":{"id": 7, "tag":"end"}}`,
		`{"event":"websocket:notify","payload":{}}`,
		`{"event":"websocket:cleared"}`,
	} {
		if got := p.nextText(t); got != want {
			t.Errorf("bot got %s; want %s", got, want)
		}
	}
}
