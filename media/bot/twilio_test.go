package bot

import (
	"context"
	"encoding/base64"
	"errors"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/zaf/g711"
)

var (
	streamSIDRe  = regexp.MustCompile(`^MZ[0-9a-f]{32}$`)
	callSIDRe    = regexp.MustCompile(`^CA[0-9a-f]{32}$`)
	accountSIDRe = regexp.MustCompile(`^AC[0-9a-f]{32}$`)
)

func TestTwilioSIDs(t *testing.T) {
	a := newTwilio(testCall, nil)
	b := newTwilio(testCall, nil)
	other := testCall
	other.CallID = "wacid.other"
	other.PhoneNumberID = "999"
	o := newTwilio(other, nil)

	tests := []struct {
		name   string
		got    string
		again  string
		differ string
		re     *regexp.Regexp
	}{
		{"streamSid", a.streamSID, b.streamSID, o.streamSID, streamSIDRe},
		{"callSid", a.callSID, b.callSID, o.callSID, callSIDRe},
		{"accountSid", a.accountSID, b.accountSID, o.accountSID, accountSIDRe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.re.MatchString(tt.got) {
				t.Errorf("%s = %q; want %v", tt.name, tt.got, tt.re)
			}
			if tt.again != tt.got {
				t.Errorf("%s not stable: %q then %q", tt.name, tt.got, tt.again)
			}
			if tt.differ == tt.got {
				t.Errorf("%s = %q for two different calls", tt.name, tt.got)
			}
		})
	}
	if a.streamSID[2:] == a.callSID[2:] {
		t.Errorf("streamSid and callSid share their hex part %q", a.streamSID[2:])
	}
}

func TestTwilioOpening(t *testing.T) {
	tests := []struct {
		name       string
		call       CallInfo
		params     []Param
		wantParams string
	}{
		{
			name:   "with caller name and params",
			call:   testCall,
			params: []Param{{"tenant", "acme"}, {"lang", "fr"}, {"empty", ""}},
			wantParams: `"from_number":"15551234567","to_number":"15550001111",` +
				`"whatsapp_call_id":"wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI","phone_number_id":"106540352242922",` +
				`"caller_name":"Jane \"JJ\" Doe","tenant":"acme","lang":"fr","empty":""`,
		},
		{
			name: "caller without a phone number",
			call: usernameCall,
			wantParams: `"from_number":"","to_number":"15550001111",` +
				`"whatsapp_call_id":"wacid.NOPHONE","phone_number_id":"106540352242922","caller_name":"Jane",` +
				`"from_user_id":"US.1349","from_parent_user_id":"US.ENT.1181","username":"jane.doe",` +
				`"deeplink_payload":"spring","cta_payload":"btn-42"`,
		},
		{
			name: "empty caller name omitted",
			call: CallInfo{CallID: "wacid.1", From: "1", To: "2", PhoneNumberID: "3"},
			wantParams: `"from_number":"1","to_number":"2",` +
				`"whatsapp_call_id":"wacid.1","phone_number_id":"3"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newBot(t)
			c := dial(t, Config{URL: bot.url("/ws"), Call: tt.call, Params: tt.params})
			p := bot.accept(t)
			p.startReading()

			if got, want := p.nextText(t), `{"event":"connected","protocol":"Call","version":"1.0.0"}`; got != want {
				t.Errorf("first message = %s; want %s", got, want)
			}

			d := newTwilio(tt.call, nil)
			want := `{"event":"start","sequenceNumber":"1","streamSid":"` + d.streamSID + `",` +
				`"start":{"accountSid":"` + d.accountSID + `","streamSid":"` + d.streamSID + `",` +
				`"callSid":"` + d.callSID + `","tracks":["inbound"],"customParameters":{` + tt.wantParams + `},` +
				`"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}`
			if got := p.nextText(t); got != want {
				t.Errorf("start message =\n%s\nwant\n%s", got, want)
			}
			if got := c.StreamSID(); got != d.streamSID || !streamSIDRe.MatchString(got) {
				t.Errorf("StreamSID() = %q; want %q", got, d.streamSID)
			}
			if c.SampleRate() != 8000 || c.FrameSamples() != 160 || c.Protocol() != Twilio {
				t.Errorf("SampleRate, FrameSamples, Protocol = %d, %d, %q; want 8000, 160, twilio",
					c.SampleRate(), c.FrameSamples(), c.Protocol())
			}
		})
	}
}

// TestTwilioStartFields decodes the start message as a bot would.
func TestTwilioStartFields(t *testing.T) {
	bot := newBot(t)
	dial(t, Config{URL: bot.url("/"), Protocol: Twilio, Call: testCall, Params: []Param{{"x", "y"}}})
	p := bot.accept(t)
	p.startReading()
	p.next(t) // connected
	m := p.nextJSON(t)

	start, _ := m["start"].(map[string]any)
	if start == nil {
		t.Fatalf("start message without start object: %v", m)
	}
	if m["event"] != "start" || m["sequenceNumber"] != "1" || m["streamSid"] != start["streamSid"] {
		t.Errorf("start header = %v", m)
	}
	for key, re := range map[string]*regexp.Regexp{"streamSid": streamSIDRe, "callSid": callSIDRe, "accountSid": accountSIDRe} {
		if s, _ := start[key].(string); !re.MatchString(s) {
			t.Errorf("start.%s = %v; want %v", key, start[key], re)
		}
	}
	wantParams := map[string]any{
		"from_number": testCall.From, "to_number": testCall.To, "whatsapp_call_id": testCall.CallID,
		"phone_number_id": testCall.PhoneNumberID, "caller_name": testCall.CallerName, "x": "y",
	}
	if got := start["customParameters"]; !reflect.DeepEqual(got, wantParams) {
		t.Errorf("customParameters = %v; want %v", got, wantParams)
	}
	wantFormat := map[string]any{"encoding": "audio/x-mulaw", "sampleRate": 8000.0, "channels": 1.0}
	if got := start["mediaFormat"]; !reflect.DeepEqual(got, wantFormat) {
		t.Errorf("mediaFormat = %v; want %v", got, wantFormat)
	}
	if got := start["tracks"]; !reflect.DeepEqual(got, []any{"inbound"}) {
		t.Errorf("tracks = %v; want [inbound]", got)
	}
}

// sine returns n samples of a tone at 8 kHz, starting at phase sample k.
func sine(n, k int, freq, amp float64, rate int) []int16 {
	s := make([]int16, n)
	for i := range s {
		s[i] = int16(amp * math.Sin(2*math.Pi*freq*float64(k+i)/float64(rate)))
	}
	return s
}

// mulawTolerance is the largest error mu-law coding may add to sample x:
// half a quantization step, which is 1/16 of the segment's span.
func mulawTolerance(x int16) int {
	return int(math.Abs(float64(x)))/16 + 8
}

func TestTwilioMedia(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Call: testCall})
	p := bot.accept(t)
	p.startReading()
	p.next(t) // connected
	p.next(t) // start

	ctx := context.Background()
	for i := range 3 {
		frame := sine(160, 160*i, 440, 12000, 8000)
		if err := c.WriteAudio(ctx, frame); err != nil {
			t.Fatalf("WriteAudio: %v", err)
		}
		m := p.nextJSON(t)
		media, _ := m["media"].(map[string]any)
		want := map[string]any{
			"event": "media", "sequenceNumber": strconv.Itoa(2 + i), "streamSid": c.StreamSID(),
		}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("frame %d: %s = %v; want %v", i, k, m[k], v)
			}
		}
		wantMedia := map[string]any{"track": "inbound", "chunk": strconv.Itoa(1 + i), "timestamp": strconv.Itoa(20 * (i + 1))}
		for k, v := range wantMedia {
			if media[k] != v {
				t.Errorf("frame %d: media.%s = %v; want %v", i, k, media[k], v)
			}
		}
		payload, _ := media["payload"].(string)
		ulaw, err := base64.StdEncoding.DecodeString(payload)
		if err != nil || len(ulaw) != 160 {
			t.Fatalf("frame %d: payload decodes to %d bytes, %v; want 160", i, len(ulaw), err)
		}
		for j, u := range ulaw {
			got := g711.DecodeUlawFrame(u)
			if exact := g711.DecodeUlawFrame(g711.EncodeUlawFrame(frame[j])); got != exact {
				t.Fatalf("frame %d sample %d = %d; want %d (mu-law of %d)", i, j, got, exact, frame[j])
			}
			if diff := int(got) - int(frame[j]); diff > mulawTolerance(frame[j]) || -diff > mulawTolerance(frame[j]) {
				t.Fatalf("frame %d sample %d = %d; want %d within mu-law error", i, j, got, frame[j])
			}
		}
	}
}

func TestWriteAudioFrameSize(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Call: testCall})
	bot.accept(t)
	for _, n := range []int{0, 159, 161, 320} {
		if err := c.WriteAudio(context.Background(), make([]int16, n)); !errors.Is(err, ErrFrameSize) {
			t.Errorf("WriteAudio(%d samples) = %v; want ErrFrameSize", n, err)
		}
	}
}

func TestTwilioReadEvents(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Call: testCall})
	p := bot.accept(t)
	p.startReading()

	wave := sine(7, 0, 440, 9000, 8000) // odd, short
	ulaw := make([]byte, len(wave))
	for i, s := range wave {
		ulaw[i] = g711.EncodeUlawFrame(s)
	}
	b64 := base64.StdEncoding.EncodeToString(ulaw)
	long := make([]byte, 1234)
	for i := range long {
		long[i] = byte(i)
	}
	sid := c.StreamSID()

	sends := []struct {
		typ  websocket.MessageType
		data string
	}{
		{websocket.MessageText, `{"event":"media","streamSid":"` + sid + `","media":{"payload":"` + b64 + `"}}`},
		{websocket.MessageBinary, "\x01\x02\x03\x04"},
		{websocket.MessageText, `{"event":"something-new","streamSid":"` + sid + `"}`},
		{websocket.MessageText, `not json`},
		{websocket.MessageText, `{"event":"media","streamSid":"` + sid + `","media":{}}`},
		{websocket.MessageText, `{"event":"media","media":{"payload":""}}`},
		{websocket.MessageText, `{"event":"mark","streamSid":"` + sid + `","mark":{"name":"greeting-done"}}`},
		{websocket.MessageText, ` { "streamSid" : "x", "event" : "clear" } `},
		{websocket.MessageText, `{"event":"media","media":{"payload":"` + base64.StdEncoding.EncodeToString(long) + `","track":"outbound"}}`},
		{websocket.MessageText, `{"event":"media","media":{"payload":"` + escapeSlashes(base64.StdEncoding.EncodeToString([]byte{0xff, 0xef, 0xbf})) + `"}}`},
		{websocket.MessageText, `{"event":"media","media":{"payload":"` + base64.RawStdEncoding.EncodeToString([]byte{1, 2}) + `"}}`},
	}
	for _, s := range sends {
		p.send(t, s.typ, s.data)
	}

	decode := func(b []byte) []int16 {
		out := make([]int16, len(b))
		for i, u := range b {
			out[i] = g711.DecodeUlawFrame(u)
		}
		return out
	}
	want := []Event{
		{Kind: EventAudio, Audio: decode(ulaw)},
		{Kind: EventMark, Mark: Mark{name: "greeting-done"}},
		{Kind: EventClear},
		{Kind: EventAudio, Audio: decode(long)},
		{Kind: EventAudio, Audio: decode([]byte{0xff, 0xef, 0xbf})},
		{Kind: EventAudio, Audio: decode([]byte{1, 2})},
	}
	for i, w := range want {
		got := readEvent(t, c)
		if got.Kind != w.Kind || !reflect.DeepEqual(got.Mark, w.Mark) || !reflect.DeepEqual(got.Audio, w.Audio) {
			t.Errorf("event %d = %v %v (%d samples); want %v %v (%d samples)",
				i, got.Kind, got.Mark, len(got.Audio), w.Kind, w.Mark, len(w.Audio))
		}
	}
	for i, s := range wave {
		if got := want[0].Audio[i]; int(math.Abs(float64(got-s))) > mulawTolerance(s) {
			t.Errorf("bot sample %d = %d; want %d within mu-law error", i, got, s)
		}
	}
}

// escapeSlashes writes '/' as the JSON escape \/, as some encoders do.
func escapeSlashes(s string) string {
	out := ""
	for _, r := range s {
		if r == '/' {
			out += `\/`
			continue
		}
		out += string(r)
	}
	return out
}

func TestTwilioMarksAndClear(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Call: testCall})
	p := bot.accept(t)
	p.startReading()
	p.next(t) // connected
	p.next(t) // start

	names := []string{"one", `two "quoted" \ back`, "three"}
	var marks []Mark
	for _, n := range names {
		p.send(t, websocket.MessageText, `{"event":"mark","mark":{"name":`+strconv.Quote(n)+`}}`)
		marks = append(marks, readEvent(t, c).Mark)
	}
	ctx := context.Background()
	if err := c.WriteMarkPlayed(ctx, marks[0]); err != nil {
		t.Fatalf("WriteMarkPlayed: %v", err)
	}
	if err := c.WriteCleared(ctx, marks[1:]); err != nil {
		t.Fatalf("WriteCleared: %v", err)
	}
	for i, n := range names {
		m := p.nextJSON(t)
		mark, _ := m["mark"].(map[string]any)
		if m["event"] != "mark" || m["sequenceNumber"] != strconv.Itoa(2+i) || m["streamSid"] != c.StreamSID() || mark["name"] != n {
			t.Errorf("mark echo %d = %v; want name %q, sequenceNumber %d", i, m, n, 2+i)
		}
	}
	// A clear with nothing pending sends nothing: the next message is the DTMF.
	if err := c.WriteCleared(ctx, nil); err != nil {
		t.Fatalf("WriteCleared(nil): %v", err)
	}
	if err := c.WriteDTMF(ctx, "1", time.Second); err != nil {
		t.Fatalf("WriteDTMF: %v", err)
	}
	if m := p.nextJSON(t); m["event"] != "dtmf" {
		t.Errorf("after an empty clear the bot got %v; want the dtmf", m)
	}
}

func TestDTMF(t *testing.T) {
	tests := []struct {
		name     string
		protocol Protocol
		digit    string
		duration time.Duration
		want     string // with SEQ and SID placeholders for twilio
		wantErr  bool
	}{
		{name: "twilio digit", protocol: Twilio, digit: "5", duration: 260 * time.Millisecond,
			want: `{"event":"dtmf","sequenceNumber":"2","streamSid":"SID","dtmf":{"track":"inbound_track","digit":"5"}}`},
		{name: "twilio star", protocol: Twilio, digit: "*",
			want: `{"event":"dtmf","sequenceNumber":"2","streamSid":"SID","dtmf":{"track":"inbound_track","digit":"*"}}`},
		{name: "twilio lowercase letter", protocol: Twilio, digit: "d",
			want: `{"event":"dtmf","sequenceNumber":"2","streamSid":"SID","dtmf":{"track":"inbound_track","digit":"D"}}`},
		{name: "vonage digit", protocol: Vonage, digit: "5", duration: 260 * time.Millisecond,
			want: `{"event":"websocket:dtmf","digit":"5","duration":260}`},
		{name: "vonage hash negative duration", protocol: Vonage, digit: "#", duration: -time.Second,
			want: `{"event":"websocket:dtmf","digit":"#","duration":0}`},
		{name: "empty", protocol: Twilio, digit: "", wantErr: true},
		{name: "two digits", protocol: Twilio, digit: "12", wantErr: true},
		{name: "letter E", protocol: Vonage, digit: "E", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newBot(t)
			c := dial(t, Config{URL: bot.url("/"), Protocol: tt.protocol, Call: testCall})
			p := bot.accept(t)
			p.startReading()
			p.next(t) // connected / websocket:connected
			if tt.protocol == Twilio {
				p.next(t) // start
			}
			err := c.WriteDTMF(context.Background(), tt.digit, tt.duration)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidDigit) {
					t.Fatalf("WriteDTMF(%q) = %v; want ErrInvalidDigit", tt.digit, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("WriteDTMF(%q) = %v", tt.digit, err)
			}
			want := regexp.MustCompile(`"SID"`).ReplaceAllString(tt.want, `"`+c.StreamSID()+`"`)
			if got := p.nextText(t); got != want {
				t.Errorf("WriteDTMF(%q) sent %s; want %s", tt.digit, got, want)
			}
		})
	}
}
