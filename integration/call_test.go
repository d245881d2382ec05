package integration

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
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

// testBot is a bot WebSocket server written from PROTOCOLS.md, so that it
// checks the wire format independently of media/bot. It records what it
// hears and plays a tone back.
type testBot struct {
	*httptest.Server
	protocol string
	rate     int
	toneHz   float64

	mu       sync.Mutex
	messages []map[string]any // text messages received
	audio    []int16          // caller audio received, at rate
	digits   []string
	ended    chan struct{} // one value each time a bot connection ends
	hangup   chan struct{} // close to make the bot hang up
	header   http.Header
}

func newTestBot(t *testing.T, protocol string, rate int, toneHz float64) *testBot {
	t.Helper()
	b := &testBot{protocol: protocol, rate: rate, toneHz: toneHz, ended: make(chan struct{}, 1024), hangup: make(chan struct{})}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.Close)
	return b
}

func (b *testBot) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.header = r.Header.Clone()
	b.mu.Unlock()
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer func() { b.ended <- struct{}{} }()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { // speaker: a tone in 20 ms frames, paced, until hang-up
		defer wg.Done()
		frame := b.rate / 50
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-b.hangup:
				conn.Close(websocket.StatusNormalClosure, "bot hangs up")
				return
			case <-tick.C:
			}
			pcm := tone.Sine(nil, b.rate, b.toneHz, 8000, i*frame, frame)
			var err error
			if b.protocol == "twilio" {
				payload := base64.StdEncoding.EncodeToString(g711.EncodeUlaw(pcmBytes(pcm)))
				err = conn.Write(ctx, websocket.MessageText, []byte(`{"event":"media","streamSid":"MZ","media":{"payload":"`+payload+`"}}`))
			} else {
				err = conn.Write(ctx, websocket.MessageBinary, pcmBytes(pcm))
			}
			if err != nil {
				return
			}
		}
	}()

	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			cancel()
			return
		}
		b.mu.Lock()
		if typ == websocket.MessageBinary {
			b.audio = append(b.audio, pcmSamples(data)...)
			b.mu.Unlock()
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err == nil {
			b.messages = append(b.messages, m)
			if m["event"] == "media" {
				payload, _ := base64.StdEncoding.DecodeString(m["media"].(map[string]any)["payload"].(string))
				b.audio = append(b.audio, pcmSamples(g711.DecodeUlaw(payload))...)
			}
			if m["event"] == "dtmf" {
				b.digits = append(b.digits, m["dtmf"].(map[string]any)["digit"].(string))
			}
			if m["event"] == "websocket:dtmf" {
				b.digits = append(b.digits, m["digit"].(string))
			}
		}
		b.mu.Unlock()
	}
}

func (b *testBot) snapshot() (audio []int16, digits []string, events []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.messages {
		if e, _ := m["event"].(string); e != "media" {
			events = append(events, e)
		}
	}
	return append([]int16(nil), b.audio...), append([]string(nil), b.digits...), events
}

func pcmBytes(pcm []int16) []byte {
	out := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
	}
	return out
}

func pcmSamples(b []byte) []int16 {
	out := make([]int16, len(b)/2)
	for i := range out {
		out[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return out
}

// callerAudio decodes the Opus the caller receives, at 48 kHz.
type callerAudio struct {
	mu      sync.Mutex
	dec     *gopus.Decoder
	pcm     []int16
	buf     []int16
	packets []timedPacket // when each packet arrived, and where its audio is in pcm
}

// timedPacket is one packet the caller decoded: pcm[off:off+n], arrived at.
type timedPacket struct {
	at     time.Time
	off, n int
}

func newCallerAudio(t *testing.T) *callerAudio {
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(48000, 1))
	if err != nil {
		t.Fatal(err)
	}
	return &callerAudio{dec: dec, buf: make([]int16, 5760)}
}

func (a *callerAudio) onAudio(pkt *rtp.Packet) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, err := a.dec.DecodeInt16(pkt.Payload, a.buf)
	if err == nil {
		a.packets = append(a.packets, timedPacket{at: time.Now(), off: len(a.pcm), n: n})
		a.pcm = append(a.pcm, a.buf[:n]...)
	}
}

// timed returns a copy of the audio and of the packets' arrival times.
func (a *callerAudio) timed() ([]int16, []timedPacket) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int16(nil), a.pcm...), append([]timedPacket(nil), a.packets...)
}

func (a *callerAudio) samples() []int16 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int16(nil), a.pcm...)
}

// call is one test call placed by a pion caller through the fake Graph API.
type testCall struct {
	id     string
	answer string
	caller *caller.Caller
	audio  *callerAudio
}

func signedPost(t *testing.T, url string, body []byte) {
	t.Helper()
	signedPostAs(t, url, testSecret, body)
}

// signedPostAs posts a webhook signed with the app secret of another Meta
// app than the tests' usual one.
func signedPostAs(t *testing.T, url, secret string, body []byte) {
	t.Helper()
	if got := post(t, url, body, map[string]string{"X-Hub-Signature-256": whatsapp.Sign([]byte(secret), body)}); got != http.StatusOK {
		t.Fatalf("POST webhook = %d; want 200", got)
	}
}

func connectWebhook(callID, sdp string) []byte {
	v := whatsapp.Webhook{Object: "whatsapp_business_account", Entry: []whatsapp.Entry{{ID: "WABA", Changes: []whatsapp.Change{{
		Field: "calls",
		Value: whatsapp.Value{
			MessagingProduct: "whatsapp",
			Metadata:         whatsapp.Metadata{DisplayPhoneNumber: "15550001111", PhoneNumberID: testPhone},
			Contacts:         []whatsapp.Contact{{Profile: whatsapp.Profile{Name: "Jane"}, WaID: "15551234567"}},
			Calls: []whatsapp.Call{{ID: callID, From: "15551234567", To: "15550001111", Event: "connect", Direction: "USER_INITIATED",
				Timestamp: whatsapp.Time(time.Now().Unix()),
				Session:   &whatsapp.Session{SDPType: "offer", SDP: sdp}}},
		},
	}}}}}
	body, _ := json.Marshal(v)
	return body
}

func terminateWebhook(callID string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"calls","value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":%q},
"calls":[{"id":%q,"from":"15551234567","to":"15550001111","event":"terminate","direction":"USER_INITIATED","status":"COMPLETED","duration":3}],
"errors":[{"code":138021,"title":"No media for a long time."}]}}]}]}`, testPhone, callID))
}

// placeCall makes the caller's offer, posts the connect webhook, applies the
// pre_accept answer, and waits for accept with the same SDP.
func placeCall(t *testing.T, webhookURL string, graph *fakeGraph, callID string) *testCall {
	t.Helper()
	return placeCallAs(t, webhookURL, testSecret, graph, callID)
}

// placeCallAs is placeCall for a handler of the Meta app whose app secret
// is secret.
func placeCallAs(t *testing.T, webhookURL, secret string, graph *fakeGraph, callID string) *testCall {
	t.Helper()
	audio := newCallerAudio(t)
	c, err := caller.New(caller.Config{OnAudio: audio.onAudio})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	signedPostAs(t, webhookURL, secret, connectWebhook(callID, c.Offer()))

	pre := graph.wait(t, 10*time.Second)
	if pre.Body["action"] != "pre_accept" || pre.Body["call_id"] != callID {
		t.Fatalf("first Graph action = %v; want pre_accept of %s", pre.Body, callID)
	}
	session, _ := pre.Body["session"].(map[string]any)
	answer, _ := session["sdp"].(string)
	if session["sdp_type"] != "answer" || !strings.Contains(answer, "a=setup:active") || !strings.Contains(answer, "a=fingerprint:sha-256") {
		t.Fatalf("pre_accept session = %v; want an answer with a=setup:active and a sha-256 fingerprint", session)
	}
	if err := c.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("caller never connected: %v", err)
	}
	acc := graph.wait(t, 10*time.Second)
	accSession, _ := acc.Body["session"].(map[string]any)
	if acc.Body["action"] != "accept" || acc.Body["call_id"] != callID || accSession["sdp"] != answer {
		t.Fatalf("second Graph action = %v; want accept of %s with the pre_accept SDP", acc.Body["action"], callID)
	}
	return &testCall{id: callID, answer: answer, caller: c, audio: audio}
}

// speak sends d of a tone from the caller, paced in real time, encoded as
// WhatsApp sends it (16 kHz, 20 kbit/s; see caller.Encoder).
func speak(t *testing.T, c *caller.Caller, freq float64, d time.Duration) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := range int(d / (20 * time.Millisecond)) {
		pcm := tone.Sine(nil, caller.MetaSampleRate, freq, 10000, i*caller.MetaFrameSamples, caller.MetaFrameSamples)
		if err := c.SendPCM(pcm); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
}

// speakUntil sends a tone from the caller at the real pace until stop is
// closed. It reports nothing: the receiving side's checks tell.
func speakUntil(c *caller.Caller, freq float64, stop <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		_ = c.SendPCM(tone.Sine(nil, caller.MetaSampleRate, freq, 10000, i*caller.MetaFrameSamples, caller.MetaFrameSamples))
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

func callConfig(graphURL, botURL, protocol string, extra string) string {
	if !strings.Contains(extra, "udp_port") {
		extra += "\nudp_port 0"
	}
	return fmt.Sprintf(`
	{
`+testGlobals+`	}
	http://localhost:9080 {
		whatsapp_calls /webhook {
			app_secret %s
			verify_token %s
			access_token %s
			bot %s
			bot_protocol %s
			bot_header X-Call-Id {whatsapp.call_id}
			graph_url %s
			ice_networks 127.0.0.0/8
			%s
		}
	}`, testSecret, testToken, testAccess, botURL, protocol, graphURL, extra)
}

func TestCallBothDialects(t *testing.T) {
	tests := []struct {
		protocol string
		rate     int
		extra    string
	}{
		{"twilio", 8000, "answer_timeout 3s"},
		{"vonage", 16000, "bot_sample_rate 16000"},
	}
	for _, tt := range tests {
		t.Run(tt.protocol, func(t *testing.T) {
			graph := newFakeGraph(t)
			bot := newTestBot(t, tt.protocol, tt.rate, 600)
			tester := caddytest.NewTester(t)
			tester.InitServer(callConfig(graph.URL, "ws"+strings.TrimPrefix(bot.URL, "http"), tt.protocol, tt.extra), "caddyfile")
			const webhook = "http://localhost:9080/webhook"

			call := placeCall(t, webhook, graph, "wacid.dialect-"+tt.protocol)

			// The caller speaks a 1 kHz tone; the bot must hear 1 kHz.
			speak(t, call.caller, 1000, time.Second)
			for _, d := range "123#" {
				if err := call.caller.SendDTMF(context.Background(), byte(d), 100*time.Millisecond); err != nil {
					t.Fatal(err)
				}
				time.Sleep(60 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)

			heard, digits, events := bot.snapshot()
			if len(heard) < tt.rate/2 {
				t.Fatalf("bot heard %d samples; want at least 0.5 s at %d Hz", len(heard), tt.rate)
			}
			window := heard[len(heard)/4 : len(heard)*3/4] // skip codec start-up and the DTMF tail
			if got, off := tone.Amplitude(window, tt.rate, 1000), tone.Amplitude(window, tt.rate, 600); got < 3000 || got < 10*off {
				t.Errorf("bot heard 1 kHz at amplitude %.0f (600 Hz: %.0f); want ≥ 3000 and 10x the off-frequency level", got, off)
			}
			if got := strings.Join(digits, ""); got != "123#" {
				t.Errorf("bot DTMF = %q; want %q, once per key", got, "123#")
			}
			if tt.protocol == "twilio" && (len(events) < 2 || events[0] != "connected" || events[1] != "start") {
				t.Errorf("bot's first events = %v; want connected, start", events)
			}
			if tt.protocol == "vonage" && (len(events) < 1 || events[0] != "websocket:connected") {
				t.Errorf("bot's first events = %v; want websocket:connected", events)
			}
			if got := bot.header.Get("X-Call-Id"); got != call.id {
				t.Errorf("bot upgrade X-Call-Id = %q; want the call id %q", got, call.id)
			}

			// The bot's 600 Hz tone must reach the caller.
			got := call.audio.samples()
			if len(got) < 48000/2 {
				t.Fatalf("caller decoded %d samples; want at least 0.5 s", len(got))
			}
			tail := got[len(got)/2:]
			if a, off := tone.Amplitude(tail, 48000, 600), tone.Amplitude(tail, 48000, 1000); a < 3000 || a < 10*off {
				t.Errorf("caller heard 600 Hz at amplitude %.0f (1 kHz: %.0f); want ≥ 3000 and 10x off-frequency", a, off)
			}

			// The bot hangs up: Meta must get terminate.
			close(bot.hangup)
			term := graph.wait(t, 5*time.Second)
			if term.Body["action"] != "terminate" || term.Body["call_id"] != call.id {
				t.Fatalf("Graph action after bot hang-up = %v; want terminate", term.Body)
			}
		})
	}
}

func TestCallMetaTerminateStopsBot(t *testing.T) {
	graph := newFakeGraph(t)
	bot := newTestBot(t, "twilio", 8000, 600)
	tester := caddytest.NewTester(t)
	tester.InitServer(callConfig(graph.URL, "ws"+strings.TrimPrefix(bot.URL, "http"), "twilio", ""), "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	call := placeCall(t, webhook, graph, "wacid.meta-terminate")
	speak(t, call.caller, 1000, 200*time.Millisecond)
	signedPost(t, webhook, terminateWebhook(call.id))

	select {
	case <-bot.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("bot socket still open 5s after Meta's terminate")
	}
	_, _, events := bot.snapshot()
	if len(events) == 0 || events[len(events)-1] != "stop" {
		t.Errorf("bot's last event = %v; want stop", events)
	}
	graph.none(t, 300*time.Millisecond, "after Meta's own terminate; want none")

	// The call shows in Caddy's metrics, served by the admin endpoint.
	metrics := adminMetrics(t)
	for _, want := range []string{
		`caddy_whatsapp_calls_total{reason="",result="answered"}`,
		`caddy_whatsapp_calls_webhook_requests_total{code="200",method="POST"}`,
		`caddy_whatsapp_calls_setup_seconds_count{stage="media_connected"}`,
		`caddy_whatsapp_calls_bot_dial_seconds_count`,
		`caddy_whatsapp_calls_active 0`,
		`caddy_whatsapp_calls_playout_buffered_seconds`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("admin /metrics lacks %s", want)
		}
	}
}

func TestCallRejected(t *testing.T) {
	graph := newFakeGraph(t)
	bot := newTestBot(t, "twilio", 8000, 600)
	tester := caddytest.NewTester(t)
	tester.InitServer(callConfig(graph.URL, "ws"+strings.TrimPrefix(bot.URL, "http"), "twilio", "answer_timeout 1s"), "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	t.Run("ICE never connects", func(t *testing.T) {
		c, err := caller.New(caller.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		signedPost(t, webhook, connectWebhook("wacid.no-ice", c.Offer()))
		// The caller never applies the answer, so ICE cannot connect.
		if a := graph.wait(t, 5*time.Second); a.Body["action"] != "pre_accept" {
			t.Fatalf("first action = %v; want pre_accept", a.Body["action"])
		}
		a := graph.wait(t, 5*time.Second)
		if a.Body["action"] != "reject" || a.Body["call_id"] != "wacid.no-ice" {
			t.Fatalf("action = %v; want reject", a.Body)
		}
		if elapsed := time.Since(start); elapsed < 900*time.Millisecond {
			t.Errorf("rejected after %s; want it at answer_timeout (1s)", elapsed)
		}
	})

	t.Run("duplicate connect makes one call", func(t *testing.T) {
		c, err := caller.New(caller.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		body := connectWebhook("wacid.dup", c.Offer())
		signedPost(t, webhook, body)
		signedPost(t, webhook, body)
		if a := graph.wait(t, 5*time.Second); a.Body["action"] != "pre_accept" {
			t.Fatalf("action = %v; want pre_accept", a.Body["action"])
		}
		if a := graph.wait(t, 5*time.Second); a.Body["action"] != "reject" {
			t.Fatalf("action = %v; want reject at answer_timeout", a.Body["action"])
		}
		graph.none(t, 1500*time.Millisecond, "want one call for a repeated webhook")
	})
}
