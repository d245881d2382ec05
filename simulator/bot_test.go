package simulator

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/coder/websocket"
	"github.com/zaf/g711"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

// checkLeaks fails the test if it leaves goroutines behind once every
// cleanup registered after it has run.
func checkLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// startBot provisions b and serves it on a loopback httptest server. The
// returned URL is the server's ws:// address.
func startBot(t *testing.T, b *Bot) string {
	t.Helper()
	if err := b.provision(context.Background(), zaptest.NewLogger(t)); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := b.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(func() {
		_ = b.Cleanup()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/bot"
}

// testClient plays whatsapp_calls' side of a bot connection.
type testClient struct {
	t   *testing.T
	ws  *websocket.Conn
	ctx context.Context
}

func dialBot(t *testing.T, url string) *testClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial bot: %v", err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	return &testClient{t: t, ws: ws, ctx: ctx}
}

func (c *testClient) sendJSON(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ws.Write(c.ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *testClient) sendBinary(p []byte) {
	c.t.Helper()
	if err := c.ws.Write(c.ctx, websocket.MessageBinary, p); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads one message within d.
func (c *testClient) read(d time.Duration) (websocket.MessageType, []byte, error) {
	ctx, cancel := context.WithTimeout(c.ctx, d)
	defer cancel()
	return c.ws.Read(ctx)
}

func (c *testClient) readJSON(d time.Duration) map[string]any {
	c.t.Helper()
	typ, b, err := c.read(d)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		c.t.Fatalf("read a %v message; want text", typ)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

const testSID = "MZ00000000000000000000000000000001"

func (c *testClient) twilioStart(callID string) {
	c.sendJSON(map[string]any{"event": "connected", "protocol": "Call", "version": "1.0.0"})
	c.sendJSON(map[string]any{
		"event": "start", "sequenceNumber": "1", "streamSid": testSID,
		"start": map[string]any{
			"accountSid": "AC00000000000000000000000000000001", "streamSid": testSID,
			"callSid": "CA00000000000000000000000000000001", "tracks": []string{"inbound"},
			"customParameters": map[string]string{
				"from_number": "15551234567", "to_number": "15550001111",
				"whatsapp_call_id": callID, "caller_name": "Jane",
			},
			"mediaFormat": map[string]any{"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
		},
	})
}

func (c *testClient) twilioMedia(seq int, payload []byte) {
	c.sendJSON(map[string]any{
		"event": "media", "sequenceNumber": fmt.Sprint(seq + 2), "streamSid": testSID,
		"media": map[string]any{"track": "inbound", "chunk": fmt.Sprint(seq + 1),
			"timestamp": fmt.Sprint(20 * seq), "payload": base64.StdEncoding.EncodeToString(payload)},
	})
}

func (c *testClient) twilioDTMF(digit string) {
	c.sendJSON(map[string]any{"event": "dtmf", "streamSid": testSID, "sequenceNumber": "50",
		"dtmf": map[string]any{"track": "inbound_track", "digit": digit}})
}

// waitRecord polls the bot until cond holds for the call's record.
func waitRecord(t *testing.T, b *Bot, callID string, cond func(CallRecord) bool) CallRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, ok := b.Call(callID)
		if ok && cond(rec) {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("call %s: record %+v (found %v) never met the condition", callID, rec, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func frameOf(n int, v byte) []byte { return bytes.Repeat([]byte{v}, n) }

func TestBotTwilioEcho(t *testing.T) {
	checkLeaks(t)
	b := &Bot{Delay: caddy.Duration(40 * time.Millisecond), MarkInterval: caddy.Duration(100 * time.Millisecond)}
	url := startBot(t, b)
	c := dialBot(t, url)
	c.twilioStart("wacid.echo")

	const frames = 12
	for i := range frames {
		c.twilioMedia(i, frameOf(160, byte(i+1)))
	}
	media, marks := 0, 0
	for media < frames || marks < 2 {
		m := c.readJSON(2 * time.Second)
		if m["streamSid"] != testSID {
			t.Fatalf("message %v: streamSid = %v; want %s", m, m["streamSid"], testSID)
		}
		switch m["event"] {
		case "media":
			p, err := base64.StdEncoding.DecodeString(m["media"].(map[string]any)["payload"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if want := frameOf(160, byte(media+1)); !bytes.Equal(p, want) {
				t.Fatalf("echoed frame %d = %x…; want %x…", media, p[:4], want[:4])
			}
			media++
		case "mark":
			marks++
			name := m["mark"].(map[string]any)["name"]
			if want := fmt.Sprintf("echo-%d", marks); name != want {
				t.Errorf("mark name = %v; want %s", name, want)
			}
			if want := marks * 5; media != want {
				t.Errorf("mark %d after %d frames; want after %d", marks, media, want)
			}
			// Play the mark back as whatsapp_calls does once the audio played.
			c.sendJSON(map[string]any{"event": "mark", "streamSid": testSID, "sequenceNumber": "40",
				"mark": map[string]any{"name": name}})
		default:
			t.Fatalf("unexpected message %v", m)
		}
	}
	c.twilioDTMF("1")
	c.twilioDTMF("2")
	c.sendJSON(map[string]any{"event": "stop", "streamSid": testSID, "sequenceNumber": "60",
		"stop": map[string]any{"accountSid": "AC1", "callSid": "CA1"}})
	waitRecord(t, b, "wacid.echo", func(r CallRecord) bool { return r.Stopped && r.Digits == "12" })
	if err := c.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	rec := waitRecord(t, b, "wacid.echo", func(r CallRecord) bool { return !r.Active })
	want := CallRecord{
		CallID: "wacid.echo", Protocol: ProtocolTwilio, StreamSID: testSID,
		CallSID: "CA00000000000000000000000000000001", From: "15551234567", To: "15550001111",
		SampleRate: 8000, Digits: "12", FramesIn: frames, BytesIn: frames * 160, FramesOut: frames,
		MarksSent: 2, MarksEchoed: 2, LastMark: "echo-2", Stopped: true, EndedBy: "peer", CloseCode: 1000,
	}
	got := rec
	got.Started, got.Ended, got.Parameters, got.LoudFramesIn = time.Time{}, time.Time{}, nil, 0
	if !reflect.DeepEqual(got, want) {
		t.Errorf("record = %+v\nwant %+v", got, want)
	}
	if rec.Parameters["caller_name"] != "Jane" {
		t.Errorf("Parameters = %v; want caller_name Jane", rec.Parameters)
	}
}

func TestBotVonageEcho(t *testing.T) {
	checkLeaks(t)
	b := &Bot{Delay: caddy.Duration(20 * time.Millisecond), MarkInterval: caddy.Duration(60 * time.Millisecond)}
	url := startBot(t, b)
	c := dialBot(t, url)
	c.sendJSON(map[string]any{"event": "websocket:connected", "content-type": "audio/l16;rate=24000",
		"from": "15551234567", "to": "15550001111", "whatsapp_call_id": "wacid.vonage", "tenant": "acme"})
	for i := range 3 {
		c.sendBinary(frameOf(960, byte(i+1)))
	}
	for i := range 3 {
		typ, p, err := c.read(2 * time.Second)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ != websocket.MessageBinary || !bytes.Equal(p, frameOf(960, byte(i+1))) {
			t.Fatalf("message %d: %v of %d bytes; want the echoed 960-byte frame", i, typ, len(p))
		}
	}
	m := c.readJSON(2 * time.Second)
	if m["action"] != "notify" || m["payload"].(map[string]any)["name"] != "echo-1" {
		t.Fatalf("after 3 frames got %v; want notify echo-1", m)
	}
	c.sendJSON(map[string]any{"event": "websocket:notify", "payload": m["payload"]})
	c.sendJSON(map[string]any{"event": "websocket:dtmf", "digit": "7", "duration": 260})
	rec := waitRecord(t, b, "wacid.vonage", func(r CallRecord) bool { return r.MarksEchoed == 1 && r.Digits == "7" })
	if rec.Protocol != ProtocolVonage || rec.SampleRate != 24000 || rec.Parameters["tenant"] != "acme" || rec.FramesIn != 3 {
		t.Errorf("record = %+v; want vonage at 24000 Hz with tenant acme and 3 frames", rec)
	}
}

func TestBotHangupDigit(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name    string
		vonage  bool
		digit   string
		sendDig func(c *testClient, d string)
	}{
		{name: "twilio", digit: "*", sendDig: (*testClient).twilioDTMF},
		{name: "vonage", vonage: true, digit: "#", sendDig: func(c *testClient, d string) {
			c.sendJSON(map[string]any{"event": "websocket:dtmf", "digit": d, "duration": 100})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &Bot{HangupDigit: tt.digit}
			c := dialBot(t, startBot(t, b))
			id := "wacid.hangup-" + tt.name
			if tt.vonage {
				c.sendJSON(map[string]any{"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "whatsapp_call_id": id})
			} else {
				c.twilioStart(id)
			}
			tt.sendDig(c, "5")
			tt.sendDig(c, tt.digit)
			var err error
			for err == nil { // skip anything sent before the close
				_, _, err = c.read(3 * time.Second)
			}
			if got := websocket.CloseStatus(err); got != websocket.StatusNormalClosure {
				t.Fatalf("read error %v has close status %v; want %v", err, got, websocket.StatusNormalClosure)
			}
			rec := waitRecord(t, b, id, func(r CallRecord) bool { return !r.Active })
			if rec.EndedBy != "hangup_digit" || rec.Digits != "5"+tt.digit {
				t.Errorf("EndedBy, Digits = %q, %q; want hangup_digit, %q", rec.EndedBy, rec.Digits, "5"+tt.digit)
			}
		})
	}
}

func TestBotHangupAfter(t *testing.T) {
	checkLeaks(t)
	b := &Bot{HangupAfter: caddy.Duration(50 * time.Millisecond)}
	c := dialBot(t, startBot(t, b))
	c.twilioStart("wacid.after")
	var err error
	for err == nil {
		_, _, err = c.read(3 * time.Second)
	}
	if got := websocket.CloseStatus(err); got != websocket.StatusNormalClosure {
		t.Fatalf("read error %v; want a normal close", err)
	}
	rec := waitRecord(t, b, "wacid.after", func(r CallRecord) bool { return !r.Active })
	if rec.EndedBy != "hangup_after" {
		t.Errorf("EndedBy = %q; want hangup_after", rec.EndedBy)
	}
}

func TestBotClearDigit(t *testing.T) {
	checkLeaks(t)
	b := &Bot{Delay: caddy.Duration(150 * time.Millisecond), ClearDigit: "#"}
	c := dialBot(t, startBot(t, b))
	c.twilioStart("wacid.clear")
	for i := range 5 {
		c.twilioMedia(i, frameOf(160, 0x55))
	}
	c.twilioDTMF("#")
	m := c.readJSON(2 * time.Second)
	if m["event"] != "clear" || m["streamSid"] != testSID {
		t.Fatalf("first message = %v; want clear", m)
	}
	// The held frames were dropped: nothing is echoed after the delay.
	if typ, p, err := c.read(300 * time.Millisecond); err == nil {
		t.Fatalf("after clear got %v message %s; want none", typ, p)
	}
	rec, _ := b.Call("wacid.clear")
	if rec.ClearsSent != 1 || rec.FramesOut != 0 {
		t.Errorf("ClearsSent, FramesOut = %d, %d; want 1, 0", rec.ClearsSent, rec.FramesOut)
	}
}

func TestBotTone(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name   string
		vonage bool
		rate   int
	}{
		{name: "twilio", rate: 8000},
		{name: "vonage", vonage: true, rate: 16000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &Bot{Mode: ModeTone, Frequency: 1000}
			c := dialBot(t, startBot(t, b))
			if tt.vonage {
				c.sendJSON(map[string]any{"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "whatsapp_call_id": "wacid.tone"})
			} else {
				c.twilioStart("wacid.tone")
			}
			var pcm []int16
			for len(pcm) < tt.rate/5 { // 200 ms, inside the first beep
				typ, p, err := c.read(2 * time.Second)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if tt.vonage {
					if typ != websocket.MessageBinary || len(p) != 640 {
						t.Fatalf("got a %v message of %d bytes; want 640-byte binary frames", typ, len(p))
					}
					for i := 0; i < len(p); i += 2 {
						pcm = append(pcm, int16(binary.LittleEndian.Uint16(p[i:])))
					}
					continue
				}
				var m struct {
					Event string `json:"event"`
					Media struct {
						Payload string `json:"payload"`
					} `json:"media"`
				}
				if err := json.Unmarshal(p, &m); err != nil || m.Event != "media" {
					t.Fatalf("got %s; want media", p)
				}
				ulaw, _ := base64.StdEncoding.DecodeString(m.Media.Payload)
				if len(ulaw) != 160 {
					t.Fatalf("media payload of %d bytes; want 160", len(ulaw))
				}
				for _, u := range ulaw {
					pcm = append(pcm, g711.DecodeUlawFrame(u))
				}
			}
			if got := dominantFrequency(pcm, tt.rate); math.Abs(got-1000) > 20 {
				t.Errorf("tone frequency = %.0f Hz; want 1000", got)
			}
		})
	}
}

// dominantFrequency estimates a tone's frequency from its zero crossings.
func dominantFrequency(pcm []int16, rate int) float64 {
	crossings := 0
	first, last := -1, -1
	for i := 1; i < len(pcm); i++ {
		if (pcm[i-1] < 0) != (pcm[i] < 0) {
			if first < 0 {
				first = i
			}
			last = i
			crossings++
		}
	}
	if crossings < 2 {
		return 0
	}
	return float64(crossings-1) / 2 / (float64(last-first) / float64(rate))
}

func TestBotProtocolMismatch(t *testing.T) {
	checkLeaks(t)
	b := &Bot{Protocol: ProtocolTwilio}
	c := dialBot(t, startBot(t, b))
	c.sendJSON(map[string]any{"event": "websocket:connected", "content-type": "audio/l16;rate=16000"})
	_, _, err := c.read(3 * time.Second)
	if got := websocket.CloseStatus(err); got != websocket.StatusPolicyViolation {
		t.Fatalf("read error %v; want close status %v", err, websocket.StatusPolicyViolation)
	}
	calls := b.Calls()
	if len(calls) != 1 || calls[0].EndedBy != "error" || !strings.Contains(calls[0].Error, "unknown bot dialect") {
		t.Errorf("Calls() = %+v; want one call ended by a dialect error", calls)
	}
}

func TestBotCleanupClosesCalls(t *testing.T) {
	checkLeaks(t)
	b := &Bot{}
	c := dialBot(t, startBot(t, b))
	c.twilioStart("wacid.shutdown")
	waitRecord(t, b, "wacid.shutdown", func(r CallRecord) bool { return r.Active })
	if err := b.Cleanup(); err != nil {
		t.Fatalf("Cleanup() = %v", err)
	}
	rec, _ := b.Call("wacid.shutdown")
	if rec.Active || rec.EndedBy != "shutdown" {
		t.Errorf("after Cleanup: Active %v, EndedBy %q; want false, shutdown", rec.Active, rec.EndedBy)
	}
	if _, _, err := c.read(2 * time.Second); err == nil {
		t.Error("the connection is still open after Cleanup")
	}
}

func TestBotCallsEndpoint(t *testing.T) {
	checkLeaks(t)
	b := &Bot{}
	url := startBot(t, b)
	c := dialBot(t, url)
	c.twilioStart("wacid.json")
	c.twilioDTMF("9")
	waitRecord(t, b, "wacid.json", func(r CallRecord) bool { return r.Digits == "9" })

	httpURL := "http" + strings.TrimPrefix(url, "ws")
	tests := []struct {
		name, path string
		wantStatus int
		wantCalls  int
	}{
		{name: "all", path: "/calls", wantStatus: 200, wantCalls: 1},
		{name: "by id", path: "/bot/calls?call_id=wacid.json", wantStatus: 200, wantCalls: 1},
		{name: "other id", path: "/calls?call_id=wacid.none", wantStatus: 200, wantCalls: 0},
		{name: "not ours", path: "/other", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(httpURL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET %s = %d; want %d", tt.path, resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				return
			}
			var body struct {
				Calls []CallRecord `json:"calls"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if len(body.Calls) != tt.wantCalls {
				t.Fatalf("GET %s: %d calls; want %d", tt.path, len(body.Calls), tt.wantCalls)
			}
			if tt.wantCalls > 0 && (body.Calls[0].Digits != "9" || !body.Calls[0].Active) {
				t.Errorf("GET %s: %+v; want the live call with digit 9", tt.path, body.Calls[0])
			}
		})
	}
}

func TestBotValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    Bot
		wantErr bool
	}{
		{name: "defaults", give: Bot{}},
		{name: "tone", give: Bot{Mode: ModeTone, Frequency: 1000}},
		{name: "bad mode", give: Bot{Mode: "sing"}, wantErr: true},
		{name: "bad protocol", give: Bot{Protocol: "sip"}, wantErr: true},
		{name: "bad digit", give: Bot{HangupDigit: "x"}, wantErr: true},
		{name: "two-char digit", give: Bot{ClearDigit: "12"}, wantErr: true},
		{name: "same digits", give: Bot{HangupDigit: "*", ClearDigit: "*"}, wantErr: true},
		{name: "frequency too high", give: Bot{Frequency: 5000}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.give
			if err := b.provision(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			defer b.Cleanup()
			if err := b.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v; wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestJSONStringField(t *testing.T) {
	tests := []struct {
		name, give, key string
		want            string
		wantOK          bool
	}{
		{name: "first", give: `{"event":"media","x":1}`, key: `"event"`, want: "media", wantOK: true},
		{name: "spaces", give: `{ "event" : "media" }`, key: `"event"`, want: "media", wantOK: true},
		{name: "later key", give: `{"streamSid":"MZ1","media":{"payload":"AAA="}}`, key: `"payload"`, want: "AAA=", wantOK: true},
		{name: "value not key", give: `{"name":"event","event":"mark"}`, key: `"event"`, want: "mark", wantOK: true},
		{name: "escaped", give: `{"event":"me\u0064ia"}`, key: `"event"`, wantOK: false},
		{name: "not a string", give: `{"event":5}`, key: `"event"`, wantOK: false},
		{name: "missing", give: `{"type":"media"}`, key: `"event"`, wantOK: false},
		{name: "unterminated", give: `{"event":"med`, key: `"event"`, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := jsonStringField([]byte(tt.give), tt.key)
			if ok != tt.wantOK || (ok && string(got) != tt.want) {
				t.Errorf("jsonStringField(%q, %s) = %q, %v; want %q, %v", tt.give, tt.key, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestL16Rate(t *testing.T) {
	tests := []struct {
		give    string
		want    int
		wantErr bool
	}{
		{give: "", want: 16000},
		{give: "audio/l16;rate=8000", want: 8000},
		{give: "audio/l16; rate=24000", want: 24000},
		{give: "audio/l16", want: 16000},
		{give: "audio/l16;rate=44100", wantErr: true},
		{give: "audio/l16;rate=x", wantErr: true},
	}
	for _, tt := range tests {
		got, err := l16Rate(tt.give)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("l16Rate(%q) = %d, %v; want %d, error %v", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFrameQueueDropsOldest(t *testing.T) {
	var q frameQueue
	q.init(3)
	now := time.Now()
	for i := range 5 {
		q.push(now, []byte{byte(i)})
	}
	var got []byte
	for f := q.peek(); f != nil; f = q.peek() {
		got = append(got, f.data...)
		q.pop()
	}
	if want := []byte{2, 3, 4}; !bytes.Equal(got, want) {
		t.Errorf("queue of 3 after 5 pushes = %v; want %v", got, want)
	}
}

func TestAppendMessages(t *testing.T) {
	sid := []byte(`"MZ1"`)
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{name: "twilio media", got: appendTwilioMedia(nil, sid, []byte{0xff, 0x7f}), want: `{"event":"media","streamSid":"MZ1","media":{"payload":"/38="}}`},
		{name: "twilio mark", got: appendMark(nil, ProtocolTwilio, sid, "echo", 3), want: `{"event":"mark","streamSid":"MZ1","mark":{"name":"echo-3"}}`},
		{name: "vonage notify", got: appendMark(nil, ProtocolVonage, nil, "tone", 12), want: `{"action":"notify","payload":{"name":"tone-12"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(tt.got) != tt.want {
				t.Errorf("got %s; want %s", tt.got, tt.want)
			}
			if !json.Valid(tt.got) {
				t.Errorf("%s is not valid JSON", tt.got)
			}
		})
	}
}

// BenchmarkBotTwilioMediaIn measures the bot's work for one inbound twilio
// media message in echo mode: event sniffing, base64 decoding, level
// metering and queueing.
func BenchmarkBotTwilioMediaIn(b *testing.B) {
	bot := &Bot{}
	if err := bot.provision(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	defer bot.Cleanup()
	c := &botConn{bot: bot, dialect: ProtocolTwilio, wake: make(chan struct{}, 1), started: true}
	c.queue.init(queueCapacity(time.Duration(bot.Delay)))
	msg := fmt.Appendf(nil, `{"event":"media","sequenceNumber":"2","streamSid":"%s","media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"%s"}}`,
		testSID, base64.StdEncoding.EncodeToString(frameOf(160, 0x42)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.handleText(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBotTwilioMediaOut measures encoding one outbound twilio media
// message into a reused buffer.
func BenchmarkBotTwilioMediaOut(b *testing.B) {
	sid := []byte(`"` + testSID + `"`)
	frame := frameOf(160, 0x42)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendTwilioMedia(buf[:0], sid, frame)
	}
}

var byteSink byte

// BenchmarkBotToneFrame measures generating and mu-law encoding one 20 ms
// tone frame.
func BenchmarkBotToneFrame(b *testing.B) {
	var g toneGenerator
	g.init(440, 8000)
	pcm := make([]int16, 160)
	out := make([]byte, 160)
	b.ReportAllocs()
	for b.Loop() {
		g.fill(pcm)
		for i, s := range pcm {
			out[i] = g711.EncodeUlawFrame(s)
		}
	}
	byteSink = out[0]
}

// BenchmarkBotEchoRoundTrip measures one twilio media frame sent to the
// echo bot over a loopback WebSocket and read back, client side included.
func BenchmarkBotEchoRoundTrip(b *testing.B) {
	bot := &Bot{Delay: caddy.Duration(time.Nanosecond), MarkInterval: caddy.Duration(time.Hour)}
	if err := bot.provision(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(bot.Handler())
	defer srv.Close()
	defer bot.Cleanup()
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.CloseNow()
	start := fmt.Appendf(nil, `{"event":"start","streamSid":"%[1]s","start":{"streamSid":"%[1]s","customParameters":{"whatsapp_call_id":"wacid.bench"}}}`, testSID)
	if err := ws.Write(ctx, websocket.MessageText, start); err != nil {
		b.Fatal(err)
	}
	msg := appendTwilioMedia(nil, []byte(`"`+testSID+`"`), frameOf(160, 0x42))
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
			b.Fatal(err)
		}
		_, r, err := ws.Reader(ctx)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			m, err := r.Read(buf[n:])
			n += m
			if err != nil {
				break
			}
		}
		if n != len(msg) {
			b.Fatalf("echo of %d bytes; want %d", n, len(msg))
		}
	}
}

// TestBotManyCalls runs 200 twilio calls at once against one echo bot, as
// load tests of whatsapp_calls do, and checks that each gets its own echo.
func TestBotManyCalls(t *testing.T) {
	checkLeaks(t)
	b := &Bot{Delay: caddy.Duration(20 * time.Millisecond), HangupDigit: "#"}
	url := startBot(t, b)
	const calls, frames = 200, 10
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			errs <- func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				ws, _, err := websocket.Dial(ctx, url, nil)
				if err != nil {
					return err
				}
				defer ws.CloseNow()
				sid := fmt.Sprintf("MZ%032d", i)
				start := fmt.Sprintf(`{"event":"start","streamSid":%q,"start":{"streamSid":%q,"customParameters":{"whatsapp_call_id":"wacid.load-%d"}}}`, sid, sid, i)
				if err := ws.Write(ctx, websocket.MessageText, []byte(start)); err != nil {
					return err
				}
				msg := appendTwilioMedia(nil, []byte(`"`+sid+`"`), frameOf(160, byte(i)))
				for range frames {
					if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
						return err
					}
				}
				for n := 0; n < frames; {
					_, p, err := ws.Read(ctx)
					if err != nil {
						return err
					}
					if bytes.Contains(p, []byte(`"event":"mark"`)) {
						continue
					}
					if !bytes.Equal(p, msg) {
						return fmt.Errorf("call %d got %.60s; want its own echo", i, p)
					}
					n++
				}
				dtmf := fmt.Sprintf(`{"event":"dtmf","streamSid":%q,"dtmf":{"digit":"#"}}`, sid)
				if err := ws.Write(ctx, websocket.MessageText, []byte(dtmf)); err != nil {
					return err
				}
				for { // the bot hangs up
					if _, _, err := ws.Read(ctx); err != nil {
						if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
							return fmt.Errorf("call %d: %w", i, err)
						}
						return nil
					}
				}
			}()
		}()
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := b.Calls()
		ended := 0
		for _, r := range recs {
			if !r.Active && r.EndedBy == "hangup_digit" && r.FramesIn == frames && r.FramesOut == frames {
				ended++
			}
		}
		if ended == calls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls recorded as echoed and hung up", ended, calls)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
