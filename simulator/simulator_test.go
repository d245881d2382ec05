package simulator

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap/zaptest"
)

const (
	testSecret = "test-app-secret"
	testToken  = "test-access-token"
	testOffer  = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"
	testAnswer = "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 AB:CD\r\na=setup:active\r\na=candidate:1 1 udp 1 127.0.0.1 6000 typ host\r\n"
)

// webhookSink is a whatsapp_calls stand-in that checks signatures and keeps
// the decoded webhooks.
type webhookSink struct {
	t      *testing.T
	mu     sync.Mutex
	got    []webhookPayload
	raw    [][]byte
	status int
	notify chan struct{}
}

func (k *webhookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if got := r.Header.Get("X-Hub-Signature-256"); got != want {
		k.t.Errorf("X-Hub-Signature-256 = %q; want %q", got, want)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		k.t.Errorf("Content-Type = %q; want application/json", ct)
	}
	var p webhookPayload
	if err := json.Unmarshal(body, &p); err != nil {
		k.t.Errorf("decode webhook: %v", err)
	}
	k.mu.Lock()
	k.got = append(k.got, p)
	k.raw = append(k.raw, body)
	status := k.status
	k.mu.Unlock()
	select {
	case k.notify <- struct{}{}:
	default:
	}
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
}

func (k *webhookSink) payloads() []webhookPayload {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]webhookPayload(nil), k.got...)
}

// waitWebhooks waits until n webhooks arrived.
func (k *webhookSink) waitWebhooks(n int) []webhookPayload {
	k.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if got := k.payloads(); len(got) >= n {
			return got
		}
		select {
		case <-k.notify:
		case <-deadline:
			k.t.Fatalf("got %d webhooks; want %d", len(k.payloads()), n)
		}
	}
}

// newTestSimulator runs a simulator on an httptest server whose webhooks go
// to a webhookSink. It returns the simulator, the sink and the server URL.
func newTestSimulator(t *testing.T) (*Simulator, *webhookSink, string) {
	t.Helper()
	sink := &webhookSink{t: t, notify: make(chan struct{}, 1)}
	hooks := httptest.NewServer(sink)
	t.Cleanup(hooks.Close)
	s := &Simulator{WebhookURL: hooks.URL + "/webhook", AppSecret: testSecret, AccessToken: testToken}
	if err := s.provision(context.Background(), zaptest.NewLogger(t), hooks.Client()); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusTeapot) // marks requests passed on
		return nil
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.ServeHTTP(w, r, next); err != nil {
			t.Errorf("ServeHTTP: %v", err)
		}
	}))
	t.Cleanup(func() {
		_ = s.Cleanup()
		srv.Close()
	})
	return s, sink, srv.URL
}

func graphPost(t *testing.T, url, token, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("decode graph response: %v", err)
	}
	return resp.StatusCode, m
}

func graphBody(callID, action, sdpType, sdp string) string {
	m := map[string]any{"messaging_product": "whatsapp", "call_id": callID, "action": action}
	if sdpType != "" {
		m["session"] = map[string]string{"sdp_type": sdpType, "sdp": sdp}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestSignature(t *testing.T) {
	// HMAC-SHA256 test vector (RFC 4231 style, widely published).
	got := signature("key", []byte("The quick brown fox jumps over the lazy dog"))
	want := "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
	if got != want {
		t.Errorf("signature() = %s; want %s", got, want)
	}
}

func TestPlaceCallWebhookShape(t *testing.T) {
	checkLeaks(t)
	s, sink, _ := newTestSimulator(t)
	at := time.Unix(1749196895, 0)
	s.now = func() time.Time { return at }
	id, err := s.PlaceCall(context.Background(), testOffer)
	if err != nil {
		t.Fatalf("PlaceCall() = %v", err)
	}
	if !strings.HasPrefix(id, "wacid.") || len(id) != len("wacid.")+32 {
		t.Errorf("call id %q; want wacid. and 32 characters", id)
	}
	sink.waitWebhooks(1)
	var got map[string]any
	if err := json.Unmarshal(sink.raw[0], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"object": "whatsapp_business_account",
		"entry": []any{map[string]any{
			"id": businessAccountID,
			"changes": []any{map[string]any{
				"field": "calls",
				"value": map[string]any{
					"messaging_product": "whatsapp",
					"metadata":          map[string]any{"display_phone_number": "15550001111", "phone_number_id": "100000000000001"},
					"contacts":          []any{map[string]any{"profile": map[string]any{"name": "Simulator"}, "wa_id": "15551234567"}},
					"calls": []any{map[string]any{
						"id": id, "from": "15551234567", "to": "15550001111", "event": "connect",
						"timestamp": "1749196895", "direction": "USER_INITIATED",
						"session": map[string]any{"sdp_type": "offer", "sdp": testOffer},
					}},
				},
			}},
		}},
	}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("connect webhook =\n%s\nwant\n%s", g, w)
	}
	calls := s.Calls()
	if len(calls) != 1 || calls[0].State != StateRinging || len(calls[0].Webhooks) != 1 || calls[0].Webhooks[0].HTTPStatus != 200 {
		t.Errorf("Calls() = %+v; want one ringing call with one delivered webhook", calls)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPlaceCallWebhookRefused(t *testing.T) {
	checkLeaks(t)
	s, sink, url := newTestSimulator(t)
	sink.status = http.StatusForbidden
	resp, err := http.Post(url+"/api/calls", "application/json", strings.NewReader(`{"sdp":`+mustJSON(t, testOffer)+`}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusBadGateway || body["state"] != StateFailed || !strings.Contains(body["error"], "HTTP 403") {
		t.Fatalf("POST /api/calls = %d %v; want 502, failed, HTTP 403", resp.StatusCode, body)
	}
	c := s.Calls()[0]
	if c.State != StateFailed || !strings.Contains(c.Reason, "webhook") {
		t.Errorf("call = %+v; want failed because of the webhook", c)
	}
	if _, err := s.PlaceCall(context.Background(), testOffer); !errors.Is(err, ErrWebhookStatus) {
		t.Errorf("PlaceCall() = %v; want ErrWebhookStatus", err)
	}
}

func TestPlaceCallBadOffer(t *testing.T) {
	s, _, url := newTestSimulator(t)
	tests := []struct{ name, body string }{
		{name: "not json", body: "v=0"},
		{name: "no sdp", body: `{}`},
		{name: "no audio", body: `{"sdp":"v=0\r\nm=video 9 x 96\r\n"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(url+"/api/calls", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("POST /api/calls %s = %d; want 400", tt.body, resp.StatusCode)
			}
		})
	}
	if n := len(s.Calls()); n != 0 {
		t.Errorf("%d calls after bad offers; want 0", n)
	}
}

func TestGraphRequestErrors(t *testing.T) {
	checkLeaks(t)
	s, _, url := newTestSimulator(t)
	id, err := s.PlaceCall(context.Background(), testOffer)
	if err != nil {
		t.Fatal(err)
	}
	callsURL := url + "/graph/v23.0/100000000000001/calls"
	noSetup := strings.Replace(testAnswer, "a=setup:active", "a=setup:passive", 1)
	noCandidates := strings.Replace(testAnswer, "a=candidate:1 1 udp 1 127.0.0.1 6000 typ host\r\n", "", 1)
	tests := []struct {
		name        string
		url         string
		token       string
		contentType string
		body        string
		wantStatus  int
		wantCode    float64
		wantMsg     string
	}{
		{name: "no token", url: callsURL, contentType: "application/json", body: graphBody(id, "accept", "answer", testAnswer), wantStatus: 401, wantCode: 190},
		{name: "wrong token", url: callsURL, token: "nope", contentType: "application/json", body: graphBody(id, "accept", "answer", testAnswer), wantStatus: 401, wantCode: 190},
		{name: "other number", url: url + "/graph/v23.0/999/calls", token: testToken, contentType: "application/json", body: graphBody(id, "accept", "answer", testAnswer), wantStatus: 400, wantCode: 100, wantMsg: "'999' does not exist"},
		{name: "bad version", url: url + "/graph/latest/100000000000001/calls", token: testToken, contentType: "application/json", body: graphBody(id, "accept", "answer", testAnswer), wantStatus: 400, wantCode: 2500},
		{name: "form body", url: callsURL, token: testToken, contentType: "application/x-www-form-urlencoded", body: "action=accept", wantStatus: 400, wantCode: 100, wantMsg: "Content-Type"},
		{name: "bad json", url: callsURL, token: testToken, contentType: "application/json", body: "{", wantStatus: 400, wantCode: 100, wantMsg: "Invalid JSON"},
		{name: "no messaging_product", url: callsURL, token: testToken, contentType: "application/json", body: `{"call_id":"` + id + `","action":"reject"}`, wantStatus: 400, wantCode: 100, wantMsg: "messaging_product"},
		{name: "offer type", url: callsURL, token: testToken, contentType: "application/json", body: graphBody(id, "pre_accept", "offer", testAnswer), wantStatus: 400, wantCode: 100, wantMsg: "must be answer"},
		{name: "no session", url: callsURL, token: testToken, contentType: "application/json", body: graphBody(id, "accept", "", ""), wantStatus: 400, wantCode: 100, wantMsg: "session is required"},
		{name: "passive", url: callsURL, token: testToken, contentType: "application/json", body: graphBody(id, "pre_accept", "answer", noSetup), wantStatus: 400, wantCode: 100, wantMsg: "setup:active"},
		{name: "no candidates", url: callsURL, token: testToken, contentType: "application/json", body: graphBody(id, "pre_accept", "answer", noCandidates), wantStatus: 400, wantCode: 100, wantMsg: "candidates"},
		{name: "unknown call", url: callsURL, token: testToken, contentType: "application/json", body: graphBody("wacid.none", "terminate", "", ""), wantStatus: 400, wantCode: 100, wantMsg: "unknown call"},
		{name: "unknown action", url: callsURL, token: testToken, contentType: "application/json", body: graphBody(id, "hold", "", ""), wantStatus: 400, wantCode: 100, wantMsg: "action"},
		{name: "business-initiated offer without a fingerprint", url: callsURL, token: testToken, contentType: "application/json", body: graphBody("", "connect", "offer", testOffer), wantStatus: 400, wantCode: 100, wantMsg: "no sha-256 fingerprint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := graphPost(t, tt.url, tt.token, tt.contentType, tt.body)
			e, _ := body["error"].(map[string]any)
			if status != tt.wantStatus || e == nil || e["code"] != tt.wantCode || !strings.Contains(e["message"].(string), tt.wantMsg) || e["fbtrace_id"] == "" {
				t.Errorf("POST %s = %d %v; want %d with error code %v containing %q", tt.name, status, body, tt.wantStatus, tt.wantCode, tt.wantMsg)
			}
		})
	}
	if c := s.Calls()[0]; c.State != StateRinging {
		t.Errorf("state after refused requests = %s; want ringing", c.State)
	}
}

// readEvents reads SSE events from the simulator until the stream ends.
func readEvents(t *testing.T, url string, lastID string, out chan<- Event) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("GET events: %v", err)
		close(out)
		return
	}
	defer resp.Body.Close()
	defer close(out)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q; want text/event-stream", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var name, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case line == "" && name == "state":
			var ev Event
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Errorf("decode event %q: %v", data, err)
			}
			out <- ev
			name, data = "", ""
		}
	}
}

func nextEvent(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return Event{}
}

func TestCallFlowBusinessTerminates(t *testing.T) {
	checkLeaks(t)
	s, sink, url := newTestSimulator(t)
	id, err := s.PlaceCall(context.Background(), testOffer)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan Event, 10)
	go readEvents(t, url+"/api/calls/"+id+"/events", "", events)
	if ev := nextEvent(t, events); ev.State != StateRinging {
		t.Fatalf("first event %+v; want ringing", ev)
	}
	callsURL := url + "/graph/v23.0/100000000000001/calls"
	steps := []struct {
		body       string
		wantStatus int
		wantEvent  string
		wantSDP    string
	}{
		{body: graphBody(id, "pre_accept", "answer", testAnswer), wantStatus: 200, wantEvent: StatePreAccepted, wantSDP: testAnswer},
		{body: graphBody(id, "pre_accept", "answer", testAnswer), wantStatus: 400},
		{body: graphBody(id, "accept", "answer", strings.Replace(testAnswer, "6000", "6001", 1)), wantStatus: 400},
		{body: graphBody(id, "accept", "answer", testAnswer), wantStatus: 200, wantEvent: StateAccepted},
		{body: graphBody(id, "reject", "", ""), wantStatus: 400},
		{body: graphBody(id, "terminate", "", ""), wantStatus: 200, wantEvent: StateEnded},
		{body: graphBody(id, "terminate", "", ""), wantStatus: 400},
	}
	for i, st := range steps {
		status, body := graphPost(t, callsURL, testToken, "application/json", st.body)
		if status != st.wantStatus {
			t.Fatalf("step %d: status %d %v; want %d", i, status, body, st.wantStatus)
		}
		if status == 200 && body["success"] != true {
			t.Fatalf("step %d: body %v; want success true", i, body)
		}
		if st.wantEvent == "" {
			continue
		}
		ev := nextEvent(t, events)
		if ev.State != st.wantEvent || ev.SDP != st.wantSDP {
			t.Fatalf("step %d: event %+v; want %s with sdp %q", i, ev, st.wantEvent, st.wantSDP)
		}
		if ev.State == StateEnded && (ev.Reason != ReasonBusinessTerminated || ev.By != "business") {
			t.Errorf("end event %+v; want business terminated", ev)
		}
	}
	if _, ok := <-events; ok {
		t.Error("the event stream continues after the call ended")
	}
	// Meta tells the business that the call ended.
	got := sink.waitWebhooks(2)
	end := got[1].Entry[0].Changes[0].Value.Calls[0]
	if end.Event != "terminate" || end.ID != id || end.Status != "COMPLETED" || end.Duration == nil || end.StartTime == "" {
		t.Errorf("terminate webhook call = %+v; want terminate COMPLETED with start time and duration", end)
	}
	c := s.Calls()[0]
	actions := make([]string, len(c.Actions))
	for i, a := range c.Actions {
		actions[i] = a.Action + ":" + http.StatusText(a.Status)
	}
	want := "pre_accept:OK pre_accept:Bad Request accept:Bad Request accept:OK reject:Bad Request terminate:OK terminate:Bad Request"
	if strings.Join(actions, " ") != want {
		t.Errorf("actions = %v; want %s", actions, want)
	}

	// A reconnecting page resumes after the last event it saw.
	resumed := make(chan Event, 10)
	go readEvents(t, url+"/api/calls/"+id+"/events", "2", resumed)
	if ev := nextEvent(t, resumed); ev.Seq != 3 || ev.State != StateEnded {
		t.Errorf("resumed event %+v; want seq 3 ended", ev)
	}
}

func TestCallFlowCallerHangsUp(t *testing.T) {
	checkLeaks(t)
	s, sink, url := newTestSimulator(t)
	tests := []struct {
		name       string
		accept     bool
		wantStatus string
	}{
		{name: "after accept", accept: true, wantStatus: "COMPLETED"},
		{name: "while ringing", wantStatus: "FAILED"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := s.PlaceCall(context.Background(), testOffer)
			if err != nil {
				t.Fatal(err)
			}
			if tt.accept {
				if status, body := graphPost(t, url+"/graph/v23.0/100000000000001/calls", testToken, "application/json", graphBody(id, "accept", "answer", testAnswer)); status != 200 {
					t.Fatalf("accept = %d %v", status, body)
				}
			}
			resp, err := http.Post(url+"/api/calls/"+id+"/hangup", "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("hangup = %d; want 200", resp.StatusCode)
			}
			got := sink.waitWebhooks(2 * (i + 1))
			end := got[len(got)-1].Entry[0].Changes[0].Value
			if ec := end.Calls[0]; ec.Event != "terminate" || ec.ID != id || ec.Status != tt.wantStatus || ec.Duration == nil {
				t.Errorf("terminate webhook call = %+v; want terminate %s with a duration", ec, tt.wantStatus)
			}
			if end.Metadata.PhoneNumberID != "100000000000001" || len(end.Contacts) != 0 {
				t.Errorf("terminate value metadata %+v contacts %v; want metadata and no contacts", end.Metadata, end.Contacts)
			}
			resp, err = http.Post(url+"/api/calls/"+id+"/hangup", "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusConflict {
				t.Errorf("second hangup = %d; want 409", resp.StatusCode)
			}
			status, _ := graphPost(t, url+"/graph/v23.0/100000000000001/calls", testToken, "application/json", graphBody(id, "terminate", "", ""))
			if status != http.StatusBadRequest {
				t.Errorf("Graph terminate after the caller hung up = %d; want 400", status)
			}
			c := s.Calls()[i]
			if c.State != StateEnded || c.Reason != ReasonCallerHungUp || c.By != "caller" {
				t.Errorf("call = %+v; want ended, caller_hung_up, by caller", c)
			}
		})
	}
}

func TestBusinessRejects(t *testing.T) {
	checkLeaks(t)
	s, sink, url := newTestSimulator(t)
	id, err := s.PlaceCall(context.Background(), testOffer)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := graphPost(t, url+"/graph/v23.0/100000000000001/calls", testToken, "application/json; charset=utf-8", graphBody(id, "reject", "", "")); status != 200 {
		t.Fatalf("reject = %d %v", status, body)
	}
	got := sink.waitWebhooks(2)
	if ec := got[1].Entry[0].Changes[0].Value.Calls[0]; ec.Status != "REJECTED" {
		t.Errorf("terminate webhook status %q; want REJECTED", ec.Status)
	}
	if c := s.Calls()[0]; c.State != StateRejected || c.Reason != ReasonBusinessRejected {
		t.Errorf("call = %+v; want rejected", c)
	}
}

func TestSimulatorRoutes(t *testing.T) {
	_, _, url := newTestSimulator(t)
	tests := []struct {
		method, path string
		ctype        string // the request's Content-Type
		wantStatus   int
		wantType     string
		wantBody     string
	}{
		{method: "GET", path: "/", wantStatus: 200, wantType: "text/html", wantBody: `id="call"`},
		{method: "GET", path: "/app.js", wantStatus: 200, wantType: "text/javascript", wantBody: "window.simState"},
		{method: "GET", path: "/style.css", wantStatus: 200, wantType: "text/css", wantBody: "--green"},
		{method: "GET", path: "/api/config", wantStatus: 200, wantType: "application/json", wantBody: `"caller":"15551234567"`},
		{method: "GET", path: "/api/calls", wantStatus: 200, wantType: "application/json", wantBody: `"calls":[]`},
		{method: "GET", path: "/api/calls/wacid.none/events", wantStatus: 404, wantBody: "unknown call"},
		{method: "POST", path: "/api/calls/wacid.none/hangup", ctype: "application/json", wantStatus: 404, wantBody: "unknown call"},
		// A page of another site can send these without a preflight (CSRF).
		{method: "POST", path: "/api/calls/wacid.none/hangup", wantStatus: 415, wantBody: "application/json"},
		{method: "POST", path: "/api/calls", ctype: "text/plain", wantStatus: 415, wantBody: "application/json"},
		{method: "POST", path: "/api/calls", ctype: "application/x-www-form-urlencoded", wantStatus: 415, wantBody: "application/json"},
		{method: "GET", path: "/other", wantStatus: http.StatusTeapot},
		{method: "GET", path: "/graph/v23.0/1/calls", wantStatus: http.StatusTeapot},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, url+tt.path, nil)
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || !strings.HasPrefix(resp.Header.Get("Content-Type"), tt.wantType) || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("%s %s = %d %q %.80q; want %d %q containing %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.wantStatus, tt.wantType, tt.wantBody)
			}
		})
	}
}

func TestSimulatorValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    Simulator
		wantErr string
	}{
		{name: "ok", give: Simulator{WebhookURL: "http://localhost:8080/webhook", AppSecret: "s", AccessToken: "t"}},
		{name: "no webhook", give: Simulator{AppSecret: "s", AccessToken: "t"}, wantErr: "webhook is required"},
		{name: "ws webhook", give: Simulator{WebhookURL: "ws://x/", AppSecret: "s", AccessToken: "t"}, wantErr: "want an http"},
		{name: "no secret", give: Simulator{WebhookURL: "http://x/", AccessToken: "t"}, wantErr: "app_secret is required"},
		{name: "no token", give: Simulator{WebhookURL: "http://x/", AppSecret: "s"}, wantErr: "access_token is required"},
		{name: "slash id", give: Simulator{WebhookURL: "http://x/", AppSecret: "s", AccessToken: "t", PhoneNumberID: "1/2"}, wantErr: "must not contain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v; want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSimulatorPublicURLDefault(t *testing.T) {
	s := &Simulator{WebhookURL: "http://localhost:8080/webhook", AppSecret: "s", AccessToken: "t"}
	if err := s.provision(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Cleanup()
	if s.PublicURL != "http://localhost:8080/" {
		t.Errorf("PublicURL = %q; want http://localhost:8080/", s.PublicURL)
	}
}

func TestEventStreamsEndAtShutdown(t *testing.T) {
	checkLeaks(t)
	s, _, url := newTestSimulator(t)
	id, err := s.PlaceCall(context.Background(), testOffer)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan Event, 10)
	go readEvents(t, url+"/api/calls/"+id+"/events", "", events)
	if ev := nextEvent(t, events); ev.State != StateRinging {
		t.Fatalf("first event %+v; want ringing", ev)
	}
	// What the server's shutdown hook does: the ringing call's stream ends,
	// so that the server does not wait for it forever.
	s.state.endStreams()
	select {
	case ev, ok := <-events:
		if ok {
			t.Fatalf("got %+v; want the stream to end", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the event stream is still open after endStreams")
	}
}

// TestSimulatorLoopbackOnly checks that a client not on loopback gets 403
// from the page and its API unless allow_remote is set, and that other
// paths still pass to the next handler.
func TestSimulatorLoopbackOnly(t *testing.T) {
	s, _, _ := newTestSimulator(t)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	tests := []struct {
		remote, path string
		allowRemote  bool
		want         int
	}{
		{"127.0.0.1:4000", "/api/calls", false, http.StatusOK},
		{"[::1]:4000", "/api/calls", false, http.StatusOK},
		{"203.0.113.5:4000", "/api/calls", false, http.StatusForbidden},
		{"203.0.113.5:4000", "/", false, http.StatusForbidden},
		{"[2001:db8::1]:4000", "/api/config", false, http.StatusForbidden},
		{"203.0.113.5:4000", "/other", false, http.StatusTeapot},
		{"203.0.113.5:4000", "/api/calls", true, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s allow_remote=%v", tt.remote, tt.path, tt.allowRemote), func(t *testing.T) {
			s.AllowRemote = tt.allowRemote
			r := httptest.NewRequest(http.MethodGet, tt.path, nil)
			r.RemoteAddr = tt.remote
			w := httptest.NewRecorder()
			if err := s.ServeHTTP(w, r, next); err != nil {
				t.Fatal(err)
			}
			if w.Code != tt.want {
				t.Errorf("GET %s from %s = %d %q; want %d", tt.path, tt.remote, w.Code, w.Body.String(), tt.want)
			}
		})
	}
}
