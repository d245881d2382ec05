package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/coder/websocket"
	"github.com/pion/rtp"
	"github.com/thesyncim/gopus"
	"github.com/zaf/g711"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/tone"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// This file tests the call flow as Meta runs it: when the caller may hear
// the bot (only once accept has returned 200), callers without a phone
// number, connects that are not ours to answer, and replays.

// The greeting a greetingBot sends on start: a head tone, then a body tone.
const (
	greetingHeadHz = 500.0
	greetingBodyHz = 900.0
	greetingHead   = 300 * time.Millisecond
	greetingBody   = 700 * time.Millisecond
	greetingAmp    = 8000
)

// greetingBot is a Twilio-dialect bot, written from PROTOCOLS.md, that
// answers start at once with its whole greeting (far faster than real time,
// as TTS relays do) followed by a mark, and then only listens.
type greetingBot struct {
	*httptest.Server

	mu     sync.Mutex
	events map[string][]botEvent // by X-Call-Id
	wg     sync.WaitGroup
}

// botEvent is one text message the bot received.
type botEvent struct {
	at  time.Time
	msg map[string]any
}

func newGreetingBot(t *testing.T) *greetingBot {
	t.Helper()
	b := &greetingBot{events: map[string][]botEvent{}}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(func() {
		b.CloseClientConnections()
		b.Close()
		b.wg.Wait()
	})
	return b
}

func (b *greetingBot) wsURL() string { return "ws" + strings.TrimPrefix(b.URL, "http") }

func (b *greetingBot) serve(w http.ResponseWriter, r *http.Request) {
	b.wg.Add(1)
	defer b.wg.Done()
	id := r.Header.Get("X-Call-Id")
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx := r.Context()
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return
		}
		var m map[string]any
		if typ != websocket.MessageText || json.Unmarshal(data, &m) != nil {
			continue
		}
		b.mu.Lock()
		b.events[id] = append(b.events[id], botEvent{at: time.Now(), msg: m})
		b.mu.Unlock()
		if m["event"] == "start" {
			sid, _ := m["streamSid"].(string)
			if b.greet(ctx, conn, sid) != nil {
				return
			}
		}
	}
}

// greet sends the greeting in 100 ms media messages, back to back, then a
// mark named "greeting-end".
func (b *greetingBot) greet(ctx context.Context, conn *websocket.Conn, sid string) error {
	const rate = 8000
	pcm := tone.Sine(nil, rate, greetingHeadHz, greetingAmp, 0, int(greetingHead)*rate/int(time.Second))
	pcm = tone.Sine(pcm, rate, greetingBodyHz, greetingAmp, 0, int(greetingBody)*rate/int(time.Second))
	for off := 0; off < len(pcm); off += rate / 10 {
		chunk := pcm[off:min(off+rate/10, len(pcm))]
		payload := base64.StdEncoding.EncodeToString(g711.EncodeUlaw(pcmBytes(chunk)))
		msg := `{"event":"media","streamSid":"` + sid + `","media":{"payload":"` + payload + `"}}`
		if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
	}
	return conn.Write(ctx, websocket.MessageText, []byte(`{"event":"mark","streamSid":"`+sid+`","mark":{"name":"greeting-end"}}`))
}

// event waits for the first message of call id whose event is name.
func (b *greetingBot) event(t *testing.T, id, name string, timeout time.Duration) botEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b.mu.Lock()
		for _, e := range b.events[id] {
			if e.msg["event"] == name {
				b.mu.Unlock()
				return e
			}
		}
		b.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("bot got no %s for %s within %v", name, id, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// timedAudio decodes what the caller hears, one 20 ms frame per packet,
// and remembers when each arrived.
type timedAudio struct {
	mu     sync.Mutex
	dec    *gopus.Decoder
	buf    []int16
	frames []timedFrame
}

type timedFrame struct {
	at  time.Time
	pcm []int16 // 48 kHz
}

func newTimedAudio(t *testing.T) *timedAudio {
	t.Helper()
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(48000, 1))
	if err != nil {
		t.Fatal(err)
	}
	return &timedAudio{dec: dec, buf: make([]int16, 5760)}
}

func (a *timedAudio) onAudio(pkt *rtp.Packet) {
	at := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if n, err := a.dec.DecodeInt16(pkt.Payload, a.buf); err == nil {
		a.frames = append(a.frames, timedFrame{at: at, pcm: append([]int16(nil), a.buf[:n]...)})
	}
}

func (a *timedAudio) snapshot() []timedFrame {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]timedFrame(nil), a.frames...)
}

// isTone reports whether a 20 ms frame carries freq at a tenth of the
// greeting's level or more.
func isTone(f timedFrame, freq float64) bool {
	return tone.Amplitude(f.pcm, 48000, freq) > greetingAmp/10
}

// TestCallGreetingWaitsForAccept delays Meta's answer to accept by 1.5 s
// while the bot sends its whole greeting on start, faster than real time.
// Until accept has returned the caller must hear only silence (and hear it:
// media is up); after it, the whole greeting from its first frame.
func TestCallGreetingWaitsForAccept(t *testing.T) {
	graph := newFaultGraph(t)
	bot := newGreetingBot(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	tester := caddytest.NewTester(t)
	tester.InitServer(faultConfig(graph.URL, bot.wsURL(), logPath, "greeting",
		`biz_opaque_callback_data "crm:{whatsapp.call_id}:{whatsapp.from}"`), "caddyfile")
	graph.set("accept", graphSlow)

	const id = "wacid.greeting-after-accept"
	audio := newTimedAudio(t)
	c := newTimedCaller(t, audio)
	signedPost(t, faultWebhook, connectWebhook(id, c.Offer()))
	pre := graph.expect(t, "pre_accept", id, 5*time.Second)
	start := bot.event(t, id, "start", 5*time.Second)
	answerCall(t, c, pre)
	acc := graph.expect(t, "accept", id, 5*time.Second)
	if got, want := acc.Body["biz_opaque_callback_data"], "crm:"+id+":15551234567"; got != want {
		t.Errorf("accept biz_opaque_callback_data = %v; want %q", got, want)
	}

	var accepted time.Time
	for deadline := time.Now().Add(slowGraphDelay + 3*time.Second); accepted.IsZero(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fake Graph never answered accept")
		}
		accepted = graph.answeredAt("accept", id)
	}
	mark := bot.event(t, id, "mark", 5*time.Second)
	if !start.at.Before(accepted) {
		t.Errorf("bot got start %v after accept returned; want it before (it is dialed before pre_accept)", start.at.Sub(accepted))
	}
	if el := mark.at.Sub(accepted); el < greetingHead+greetingBody-100*time.Millisecond {
		t.Errorf("greeting-end mark echoed %v after accept returned; want after the 1 s greeting was played", el)
	}
	time.Sleep(200 * time.Millisecond)

	var before, after []timedFrame
	for _, f := range audio.snapshot() {
		if f.at.Before(accepted) {
			before = append(before, f)
		} else {
			after = append(after, f)
		}
	}
	if len(before) < 25 {
		t.Errorf("caller got %d frames before accept returned; want silence flowing from DTLS on (about 75)", len(before))
	}
	for i, f := range before {
		if isTone(f, greetingHeadHz) || isTone(f, greetingBodyHz) {
			t.Fatalf("caller heard the greeting in frame %d, %v before accept returned; want silence", i, accepted.Sub(f.at))
		}
	}
	head, body, firstHead, firstBody := 0, 0, -1, -1
	for i, f := range after {
		if isTone(f, greetingHeadHz) {
			head++
			if firstHead < 0 {
				firstHead = i
			}
		}
		if isTone(f, greetingBodyHz) {
			body++
			if firstBody < 0 {
				firstBody = i
			}
		}
	}
	if head < 12 || body < 30 {
		t.Errorf("after accept the caller heard %d frames of the greeting's head and %d of its body; want about 15 and 35", head, body)
	}
	if firstHead < 0 || firstHead > 3 || firstHead > firstBody {
		t.Errorf("greeting head first heard in frame %d after accept, body in %d; want the head at once, first", firstHead, firstBody)
	}
}

// newTimedCaller returns a WhatsApp-like caller that records when it hears
// what, closed at cleanup.
func newTimedCaller(t *testing.T, a *timedAudio) *caller.Caller {
	t.Helper()
	c, err := caller.New(caller.Config{OnAudio: a.onAudio})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// usernameConnect is the connect webhook of a caller who has a WhatsApp
// username and shares no phone number: no from or wa_id, business-scoped
// user ids, and the payload of the button the user tapped.
func usernameConnect(callID, sdp string, at time.Time) []byte {
	body := map[string]any{"object": "whatsapp_business_account", "entry": []any{map[string]any{"id": "WABA", "changes": []any{map[string]any{
		"field": "calls",
		"value": map[string]any{
			"messaging_product": "whatsapp",
			"metadata":          map[string]any{"display_phone_number": "15550001111", "phone_number_id": testPhone},
			"contacts": []any{map[string]any{
				"profile": map[string]any{"name": "Jane", "username": "jane.doe"},
				"user_id": "US.13491208655302741918", "parent_user_id": "US.ENT.11815799212886844830",
			}},
			"calls": []any{map[string]any{
				"id": callID, "from_user_id": "US.13491208655302741918", "from_parent_user_id": "US.ENT.11815799212886844830",
				"to": "15550001111", "event": "connect", "direction": "USER_INITIATED", "timestamp": fmt.Sprint(at.Unix()),
				"cta_payload": "support-button",
				"session":     map[string]any{"sdp_type": "offer", "sdp": sdp},
			}},
		},
	}}}}}
	b, _ := json.Marshal(body)
	return b
}

// TestCallWithoutPhoneNumber places a call from a username caller end to
// end: the bot learns who called from start.customParameters, and audio
// flows both ways.
func TestCallWithoutPhoneNumber(t *testing.T) {
	graph := newFakeGraph(t)
	bot := newTestBot(t, "twilio", 8000, 600)
	tester := caddytest.NewTester(t)
	tester.InitServer(callConfig(graph.URL, "ws"+strings.TrimPrefix(bot.URL, "http")+"/{whatsapp.username}", "twilio",
		`biz_opaque_callback_data "{whatsapp.from_user_id}/{whatsapp.username}"`), "caddyfile")
	const webhook = "http://localhost:9080/webhook"
	const id = "wacid.no-phone-number"

	audio := newCallerAudio(t)
	c := newLiteCaller(t, audio)
	signedPost(t, webhook, usernameConnect(id, c.Offer(), time.Now()))
	pre := graph.wait(t, 10*time.Second)
	if pre.Body["action"] != "pre_accept" {
		t.Fatalf("first Graph action = %v; want pre_accept", pre.Body)
	}
	answerCall(t, c, pre)
	acc := graph.wait(t, 10*time.Second)
	if acc.Body["action"] != "accept" || acc.Body["biz_opaque_callback_data"] != "US.13491208655302741918/jane.doe" {
		t.Fatalf("second Graph action = %v; want accept with the username callback data", acc.Body)
	}
	speak(t, c, 1000, time.Second)

	bot.mu.Lock()
	var params map[string]any
	for _, m := range bot.messages {
		if m["event"] == "start" {
			params, _ = m["start"].(map[string]any)["customParameters"].(map[string]any)
		}
	}
	bot.mu.Unlock()
	want := map[string]any{
		"from_number": "", "to_number": "15550001111", "whatsapp_call_id": id, "phone_number_id": testPhone,
		"caller_name": "Jane", "from_user_id": "US.13491208655302741918", "from_parent_user_id": "US.ENT.11815799212886844830",
		"username": "jane.doe", "cta_payload": "support-button",
	}
	if fmt.Sprint(params) != fmt.Sprint(want) {
		t.Errorf("start.customParameters = %v; want %v", params, want)
	}

	heard, _, _ := bot.snapshot()
	if len(heard) < 4000 {
		t.Fatalf("bot heard %d samples; want at least 0.5 s", len(heard))
	}
	if a := tone.Amplitude(heard[len(heard)/2:], 8000, 1000); a < 3000 {
		t.Errorf("bot heard 1 kHz at amplitude %.0f; want ≥ 3000", a)
	}
	got := audio.samples()
	if len(got) < 48000/2 {
		t.Fatalf("caller decoded %d samples; want at least 0.5 s", len(got))
	}
	if a := tone.Amplitude(got[len(got)/2:], 48000, 600); a < 3000 {
		t.Errorf("caller heard 600 Hz at amplitude %.0f; want ≥ 3000", a)
	}
	close(bot.hangup)
	if term := graph.wait(t, 5*time.Second); term.Body["action"] != "terminate" {
		t.Fatalf("Graph action after bot hang-up = %v; want terminate", term.Body)
	}
}

// TestConnectsNotOurs posts signed webhooks that must be acknowledged and
// must never reach the Graph API or the bot: the answer to a
// business-initiated call (current and older shapes), call statuses, a
// replay of a captured connect, and a connect dated far in the future.
func TestConnectsNotOurs(t *testing.T) {
	graph := newFaultGraph(t)
	bot := newWSBot(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	tester := caddytest.NewTester(t)
	tester.InitServer(faultConfig(graph.URL, bot.wsURL(), logPath, "not-ours", "max_connect_age 30s"), "caddyfile")

	c := newLiteCaller(t, nil)
	offer := c.Offer()
	envelope := func(call string) []byte {
		return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"calls","value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"` + testPhone + `"},
"calls":[` + call + `]}}]}]}`)
	}
	sdp, _ := json.Marshal(offer)
	now := time.Now().Unix()
	tests := []struct {
		name, id string
		body     []byte
		wantLog  string
	}{
		{"answer to a business-initiated call", "wacid.bic-answer", envelope(fmt.Sprintf(
			`{"id":"wacid.bic-answer","from":"15550001111","to":"15551234567","event":"connect","timestamp":"%d","direction":"BUSINESS_INITIATED","session":{"sdp_type":"answer","sdp":%s}}`, now, sdp)), ""},
		{"older answer in connection.webrtc", "wacid.bic-legacy", envelope(fmt.Sprintf(
			`{"id":"wacid.bic-legacy","to":"15551234567","event":"connect","timestamp":"%d","connection":{"webrtc":{"sdp":%s}}}`, now, sdp)), ""},
		{"call statuses", "wacid.bic-status", []byte(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"calls","value":{
"messaging_product":"whatsapp","metadata":{"phone_number_id":"` + testPhone + `"},
"statuses":[{"id":"wacid.bic-status","type":"call","status":"RINGING","timestamp":"1749197000","recipient_id":"15551234567"},
{"id":"wacid.bic-status","type":"call","status":"ACCEPTED","timestamp":"1749197004","recipient_id":"15551234567"},
{"id":"wacid.bic-status","type":"call","status":"REJECTED","timestamp":"1749197009","recipient_id":"15551234567"}]}}]}]}`), ""},
		{"replay of a captured connect", "wacid.replayed", connectWebhookAt("wacid.replayed", offer, time.Now().Add(-2*time.Hour)), "stale connect ignored"},
		{"connect from the future", "wacid.future", connectWebhookAt("wacid.future", offer, time.Now().Add(time.Hour)), "stale connect ignored"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signedPost(t, faultWebhook, tt.body)
			graph.quiet(t, 700*time.Millisecond)
			if tt.wantLog != "" {
				if e := waitLog(t, logPath, tt.wantLog, tt.id); e != nil && e["level"] != "warn" {
					t.Errorf("%s logged at %v; want warn", tt.wantLog, e["level"])
				}
			}
		})
	}
	bot.mu.Lock()
	dialed := len(bot.conns)
	bot.mu.Unlock()
	if dialed != 0 {
		t.Errorf("the bot was dialed %d times; want never", dialed)
	}

	// A fresh connect within max_connect_age is answered.
	signedPost(t, faultWebhook, connectWebhookAt("wacid.fresh", offer, time.Now().Add(-5*time.Second)))
	graph.expect(t, "pre_accept", "wacid.fresh", 5*time.Second)
}

// connectWebhookAt is connectWebhook with a timestamp.
func connectWebhookAt(callID, sdp string, at time.Time) []byte {
	var w whatsapp.Webhook
	if err := json.Unmarshal(connectWebhook(callID, sdp), &w); err != nil {
		panic(err)
	}
	w.Entry[0].Changes[0].Value.Calls[0].Timestamp = whatsapp.Time(at.Unix())
	b, _ := json.Marshal(w)
	return b
}
