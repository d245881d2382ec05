package integration

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

const (
	apiToken    = "integration-api-token"
	twilioToken = "integration-twilio-auth-token"
	cbSecret    = "integration-callback-secret"
	userWaID    = "15551234567"
	apiBase     = "http://localhost:9080/api"
)

// metaGraph plays Meta's Graph API for business-initiated calls, in Meta's
// wire format: call_permissions, connect (answering with a new call id),
// the other call actions, and messages.
type metaGraph struct {
	*httptest.Server
	permission string // the call_permissions body
	connectErr string // if set, connect answers 400 with this error body

	mu      sync.Mutex
	actions []graphAction
	notify  chan graphAction
	next    int
}

func newMetaGraph(t *testing.T, permissionStatus string) *metaGraph {
	t.Helper()
	g := &metaGraph{
		permission: `{"messaging_product":"whatsapp","permission":{"status":"` + permissionStatus + `","expiration_time":1900000000},` +
			`"actions":[{"action_name":"start_call","can_perform_action":` + fmt.Sprint(permissionStatus != "no_permission") + `}]}`,
		notify: make(chan graphAction, 64),
	}
	g.Server = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.Close)
	return g
}

func (g *metaGraph) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	a := graphAction{Path: r.URL.RequestURI(), Auth: r.Header.Get("Authorization")}
	if r.Method == http.MethodPost {
		_ = json.NewDecoder(r.Body).Decode(&a.Body)
	}
	g.mu.Lock()
	g.actions = append(g.actions, a)
	g.next++
	n, permission, connectErr := g.next, g.permission, g.connectErr
	g.mu.Unlock()
	g.notify <- a
	switch {
	case strings.HasSuffix(r.URL.Path, "/call_permissions"):
		io.WriteString(w, permission)
	case strings.HasSuffix(r.URL.Path, "/messages"):
		io.WriteString(w, `{"messaging_product":"whatsapp","contacts":[{"input":"`+userWaID+`","wa_id":"`+userWaID+`"}],"messages":[{"id":"wamid.PERM1"}]}`)
	case a.Body["action"] == "connect" && connectErr != "":
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, connectErr)
	case a.Body["action"] == "connect":
		fmt.Fprintf(w, `{"messaging_product":"whatsapp","calls":[{"id":"wacid.OUT%d"}]}`, n)
	default:
		io.WriteString(w, `{"success":true}`)
	}
}

// expect returns the next Graph request, which must be to a path ending
// in suffix (and, for call actions, with action).
func (g *metaGraph) expect(t *testing.T, suffix, action string) graphAction {
	t.Helper()
	select {
	case a := <-g.notify:
		if !strings.Contains(a.Path, suffix) || (action != "" && a.Body["action"] != action) {
			t.Fatalf("Graph request %s %v; want %s %s", a.Path, a.Body["action"], suffix, action)
		}
		return a
	case <-time.After(10 * time.Second):
		t.Fatalf("no Graph request %s %s within 10s", suffix, action)
		return graphAction{}
	}
}

func (g *metaGraph) none(t *testing.T, d time.Duration, why string) {
	t.Helper()
	select {
	case a := <-g.notify:
		t.Fatalf("Graph request %s %v: %s", a.Path, a.Body, why)
	case <-time.After(d):
	}
}

// callbackSink receives status callbacks and checks their signature.
type callbackSink struct {
	*httptest.Server
	events chan map[string]any
	bad    chan string
}

func newCallbackSink(t *testing.T) *callbackSink {
	t.Helper()
	s := &callbackSink{events: make(chan map[string]any, 64), bad: make(chan string, 64)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(cbSecret))
		mac.Write([]byte(r.Header.Get("X-Whatsapp-Calls-Timestamp") + "."))
		mac.Write(body)
		if got := r.Header.Get("X-Whatsapp-Calls-Signature"); got != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			s.bad <- "bad signature " + got
		}
		if r.Header.Get("Authorization") != "Bearer sink" {
			s.bad <- "missing status_callback_header"
		}
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil {
			s.bad <- "bad json " + string(body)
		}
		s.events <- ev
	}))
	t.Cleanup(s.Close)
	return s
}

// expect returns the next callback, which must be of kind event.
func (s *callbackSink) expect(t *testing.T, event string) map[string]any {
	t.Helper()
	select {
	case ev := <-s.events:
		if ev["event"] != event {
			t.Fatalf("status callback %v; want event %q", ev, event)
		}
		return ev
	case msg := <-s.bad:
		t.Fatalf("status callback: %s", msg)
	case <-time.After(10 * time.Second):
		t.Fatalf("no %q status callback within 10s", event)
	}
	return nil
}

func outboundConfig(graphURL, botURL, callbackURL, extra string) string {
	return fmt.Sprintf(`
	{
`+testGlobals+`	}
	http://localhost:9080 {
		whatsapp_calls /webhook {
			app_secret %s
			verify_token %s
			access_token %s
			phone_number_ids %s
			bot %s
			graph_url %s
			udp_port 0
			ice_networks 127.0.0.0/8
			status_callback %s
			status_callback_secret %s
			status_callback_header Authorization "Bearer sink"
			%s
		}
		handle_path /api/* {
			whatsapp_calls_api {
				token %s
				twilio_auth_token %s
			}
		}
	}`, testSecret, testToken, testAccess, testPhone, botURL, graphURL, callbackURL, cbSecret, extra, apiToken, twilioToken)
}

// api sends one control API request and decodes the JSON answer.
func api(t *testing.T, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, apiBase+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// pipecatHangup sends the request pipecat's TwilioFrameSerializer sends to
// hang up (aiohttp: session.post(endpoint, auth=BasicAuth(account_sid,
// auth_token), data={"Status": "completed"})), against base_url
// http://localhost:9080/api.
func pipecatHangup(t *testing.T, accountSID, callSID, authToken string) (int, map[string]any) {
	t.Helper()
	endpoint := apiBase + "/2010-04-01/Accounts/" + accountSID + "/Calls/" + callSID + ".json"
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(url.Values{"Status": {"completed"}}.Encode()))
	req.SetBasicAuth(accountSID, authToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, req)
}

// outboundWebhook is a calls webhook of a business-initiated call, as Meta
// sends it: the connect with the user's SDP answer, or statuses.
func answerWebhook(callID, sdp string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"calls","value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":%q},
"calls":[{"id":%q,"from":"15550001111","to":%q,"event":"connect","timestamp":"%d","direction":"BUSINESS_INITIATED",
"session":{"sdp_type":"answer","sdp":%s}}]}}]}]}`, testPhone, callID, userWaID, time.Now().Unix(), jsonString(sdp)))
}

func statusWebhook(callID, status string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"calls","value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":%q},
"statuses":[{"id":%q,"timestamp":"%d","type":"call","status":%q,"recipient_id":%q}]}}]}]}`, testPhone, callID, time.Now().Unix(), status, userWaID))
}

func outboundTerminate(callID string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"calls","value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":%q},
"calls":[{"id":%q,"from":"15550001111","to":%q,"event":"terminate","direction":"BUSINESS_INITIATED","status":"COMPLETED",
"start_time":"%d","end_time":"%d","duration":2}]}}]}]}`, testPhone, callID, userWaID, time.Now().Unix()-2, time.Now().Unix()))
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// placeOutbound places a call through the control API and returns its id
// and the offer connect carried; the Graph must see call_permissions then
// connect.
func placeOutbound(t *testing.T, g *metaGraph, body map[string]any) (string, string) {
	t.Helper()
	status, out := api(t, http.MethodPost, "/calls", apiToken, body)
	if status != http.StatusCreated {
		t.Fatalf("POST /calls = %d %v; want 201", status, out)
	}
	perm := g.expect(t, "/call_permissions?user_wa_id="+userWaID, "")
	if perm.Auth != "Bearer "+testAccess {
		t.Errorf("call_permissions Authorization = %q", perm.Auth)
	}
	conn := g.expect(t, "/"+testPhone+"/calls", "connect")
	if conn.Body["to"] != userWaID {
		t.Errorf("connect to = %v; want %s", conn.Body["to"], userWaID)
	}
	session, _ := conn.Body["session"].(map[string]any)
	offer, _ := session["sdp"].(string)
	if session["sdp_type"] != "offer" || !strings.Contains(offer, "a=setup:actpass") || strings.Contains(offer, "a=ice-lite") {
		t.Fatalf("connect session = %v; want a full-ICE offer with a=setup:actpass", session["sdp_type"])
	}
	id, _ := out["call_id"].(string)
	if id == "" || out["direction"] != "outbound" || out["state"] != "placing" {
		t.Fatalf("POST /calls answer = %v; want a call id, outbound, placing", out)
	}
	return id, offer
}

// userAnswers plays the user picking up on WhatsApp: a Meta-faithful peer
// answers our offer, and Meta's connect webhook with that SDP answer is
// posted to webhook. The peer is closed when the test ends.
func userAnswers(t *testing.T, webhook, id, offer string, cfg caller.Config) *caller.Caller {
	t.Helper()
	user, err := caller.NewAnswerer(cfg, offer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { user.Close() })
	signedPost(t, webhook, answerWebhook(id, user.Answer()))
	return user
}

// TestOutboundCallAnswered places a call that the user answers: Meta's
// answer and statuses arrive as webhooks, the bot is connected when the
// user picks up, audio flows both ways, and the bot hangs up with
// pipecat's exact Twilio REST request.
func TestOutboundCallAnswered(t *testing.T) {
	g := newMetaGraph(t, "temporary")
	b := newTestBot(t, "twilio", 8000, 600)
	sink := newCallbackSink(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(outboundConfig(g.URL, "ws"+strings.TrimPrefix(b.URL, "http"), sink.URL, ""), "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	id, offer := placeOutbound(t, g, map[string]any{"to": userWaID, "biz_opaque_callback_data": "reminder-7"})
	if ev := sink.expect(t, "initiated"); ev["call_id"] != id || ev["direction"] != "outbound" || ev["biz_opaque_callback_data"] != "reminder-7" {
		t.Errorf("initiated callback = %v", ev)
	}

	audio := newCallerAudio(t)
	user := userAnswers(t, webhook, id, offer, caller.Config{OnAudio: audio.onAudio})
	signedPost(t, webhook, statusWebhook(id, "RINGING"))
	sink.expect(t, "ringing")
	// A status of a call another app placed is left alone.
	signedPost(t, webhook, statusWebhook("wacid.SOMEONE-ELSES", "ACCEPTED"))

	if _, _, events := b.snapshot(); len(events) != 0 {
		t.Fatalf("the bot was dialed while ringing: %v", events)
	}
	signedPost(t, webhook, statusWebhook(id, "ACCEPTED"))
	if ev := sink.expect(t, "answered"); ev["call_id"] != id {
		t.Errorf("answered callback = %v", ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := user.WaitConnected(ctx); err != nil {
		t.Fatalf("the user's side never connected: %v", err)
	}
	speak(t, user, 1000, time.Second)
	heard, _, events := b.snapshot()
	if len(heard) < 4000 || len(events) < 2 || events[0] != "connected" || events[1] != "start" {
		t.Fatalf("bot heard %d samples, events %v; want 0.5 s after connected, start", len(heard), events)
	}
	if got := len(audio.samples()); got < 48000/2 {
		t.Fatalf("the user heard %d samples of the bot; want 0.5 s", got)
	}

	// The call list: no numbers unless asked for.
	status, list := api(t, http.MethodGet, "/calls", apiToken, nil)
	calls, _ := list["calls"].([]any)
	if status != 200 || len(calls) != 1 {
		t.Fatalf("GET /calls = %d %v; want one call", status, list)
	}
	c0 := calls[0].(map[string]any)
	if c0["call_id"] != id || c0["direction"] != "outbound" || c0["state"] != "answered" || c0["phone_number_id"] != testPhone || c0["to"] != nil {
		t.Errorf("listed call = %v; want answered outbound without numbers", c0)
	}
	_, list = api(t, http.MethodGet, "/calls?numbers=true", apiToken, nil)
	if c := list["calls"].([]any)[0].(map[string]any); c["to"] != userWaID {
		t.Errorf("listed call with numbers = %v; want to %s", c, userWaID)
	}

	// The bot hangs up the pipecat way; Meta is told.
	account, callSID := bot.TwilioAccountSID(testPhone), bot.TwilioCallSID(id)
	if status, _ := pipecatHangup(t, account, callSID, "wrong-token"); status != http.StatusUnauthorized {
		t.Errorf("Twilio hang-up with a wrong token = %d; want 401", status)
	}
	status, resp := pipecatHangup(t, account, callSID, twilioToken)
	if status != 200 || resp["sid"] != callSID || resp["account_sid"] != account || resp["status"] != "completed" {
		t.Fatalf("Twilio hang-up = %d %v; want 200 with the call resource", status, resp)
	}
	g.expect(t, "/calls", "terminate")
	ended := sink.expect(t, "ended")
	if ended["reason"] != "completed_bot" || ended["duration_seconds"].(float64) <= 0 {
		t.Errorf("ended callback = %v; want reason completed_bot and a duration", ended)
	}
	waitCalls(t, 0)
	status, resp = pipecatHangup(t, account, callSID, twilioToken)
	if status != http.StatusNotFound || resp["code"] != float64(20404) {
		t.Errorf("second Twilio hang-up = %d %v; want 404 with code 20404 (pipecat: already terminated)", status, resp)
	}
}

// waitCalls waits until the control API lists n live calls.
func waitCalls(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, list := api(t, http.MethodGet, "/calls", apiToken, nil)
		calls, _ := list["calls"].([]any)
		if len(calls) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /calls lists %d calls; want %d", len(calls), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOutboundCallEnds covers the attempts that end without a
// conversation, and the hang-ups from each side.
func TestOutboundCallEnds(t *testing.T) {
	g := newMetaGraph(t, "permanent")
	b := newTestBot(t, "twilio", 8000, 600)
	sink := newCallbackSink(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(outboundConfig(g.URL, "ws"+strings.TrimPrefix(b.URL, "http"), sink.URL, "ring_timeout 1s"), "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	t.Run("declined", func(t *testing.T) {
		id, offer := placeOutbound(t, g, map[string]any{"to": userWaID})
		sink.expect(t, "initiated")
		userAnswers(t, webhook, id, offer, caller.Config{})
		signedPost(t, webhook, statusWebhook(id, "RINGING"))
		sink.expect(t, "ringing")
		signedPost(t, webhook, statusWebhook(id, "REJECTED"))
		if ev := sink.expect(t, "ended"); ev["reason"] != "rejected" {
			t.Errorf("ended callback = %v; want reason rejected", ev)
		}
		waitCalls(t, 0)
		g.none(t, 300*time.Millisecond, "a declined call needs no terminate")
	})

	t.Run("no answer", func(t *testing.T) {
		id, _ := placeOutbound(t, g, map[string]any{"to": userWaID})
		sink.expect(t, "initiated")
		signedPost(t, webhook, statusWebhook(id, "RINGING"))
		sink.expect(t, "ringing")
		if a := g.expect(t, "/calls", "terminate"); a.Body["call_id"] != id {
			t.Errorf("terminate of %v; want %s", a.Body["call_id"], id)
		}
		if ev := sink.expect(t, "ended"); ev["reason"] != "no_answer" {
			t.Errorf("ended callback = %v; want reason no_answer", ev)
		}
		waitCalls(t, 0)
	})

	t.Run("control api hang-up while ringing", func(t *testing.T) {
		id, _ := placeOutbound(t, g, map[string]any{"to": userWaID})
		sink.expect(t, "initiated")
		if status, out := api(t, http.MethodDelete, "/calls/"+id, apiToken, nil); status != 200 || out["state"] != "ending" {
			t.Fatalf("DELETE /calls/%s = %d %v; want 200 ending", id, status, out)
		}
		g.expect(t, "/calls", "terminate")
		if ev := sink.expect(t, "ended"); ev["reason"] != "hung_up_api" {
			t.Errorf("ended callback = %v; want reason hung_up_api", ev)
		}
		waitCalls(t, 0)
		if status, _ := api(t, http.MethodDelete, "/calls/"+id, apiToken, nil); status != http.StatusNotFound {
			t.Errorf("second DELETE = %d; want 404", status)
		}
	})

	t.Run("user hangs up", func(t *testing.T) {
		id, offer := placeOutbound(t, g, map[string]any{"to": userWaID})
		sink.expect(t, "initiated")
		userAnswers(t, webhook, id, offer, caller.Config{})
		signedPost(t, webhook, statusWebhook(id, "ACCEPTED"))
		sink.expect(t, "answered")
		signedPost(t, webhook, outboundTerminate(id))
		ev := sink.expect(t, "ended")
		if ev["reason"] != "completed_caller" || ev["status"] != "COMPLETED" {
			t.Errorf("ended callback = %v; want completed_caller, COMPLETED", ev)
		}
		select {
		case <-b.ended:
		case <-time.After(5 * time.Second):
			t.Fatal("the bot connection did not end after Meta's terminate")
		}
		g.none(t, 300*time.Millisecond, "Meta ended the call; no terminate back")
	})

	t.Run("bot hangs up", func(t *testing.T) {
		id, offer := placeOutbound(t, g, map[string]any{"to": userWaID})
		sink.expect(t, "initiated")
		userAnswers(t, webhook, id, offer, caller.Config{})
		signedPost(t, webhook, statusWebhook(id, "ACCEPTED"))
		sink.expect(t, "answered")
		close(b.hangup)
		if a := g.expect(t, "/calls", "terminate"); a.Body["call_id"] != id {
			t.Errorf("terminate of %v; want %s", a.Body["call_id"], id)
		}
		if ev := sink.expect(t, "ended"); ev["reason"] != "completed_bot" {
			t.Errorf("ended callback = %v; want completed_bot", ev)
		}
	})
}

// TestOutboundRefused covers placements refused before or by Meta, and the
// control API's authentication.
func TestOutboundRefused(t *testing.T) {
	g := newMetaGraph(t, "no_permission")
	// The status callback receiver is down: nothing may wait for it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String() + "/down"
	l.Close()
	tester := caddytest.NewTester(t)
	tester.InitServer(outboundConfig(g.URL, "ws://127.0.0.1:1/bot", down, ""), "caddyfile")

	t.Run("unauthenticated", func(t *testing.T) {
		for _, tok := range []string{"", "wrong", apiToken + "x"} {
			for _, route := range []struct{ method, path string }{{"GET", "/calls"}, {"POST", "/calls"}, {"DELETE", "/calls/wacid.X"}, {"POST", "/permission_requests"}} {
				status, out := api(t, route.method, route.path, tok, map[string]any{"to": userWaID})
				if status != http.StatusUnauthorized {
					t.Errorf("%s %s with token %q = %d %v; want 401", route.method, route.path, tok, status, out)
				}
			}
		}
		g.none(t, 100*time.Millisecond, "an unauthenticated request reached Meta")
	})

	t.Run("no permission", func(t *testing.T) {
		status, out := api(t, http.MethodPost, "/calls", apiToken, map[string]any{"to": userWaID})
		e, _ := out["error"].(map[string]any)
		if status != http.StatusForbidden || e["code"] != "no_permission" {
			t.Fatalf("POST /calls without permission = %d %v; want 403 no_permission", status, out)
		}
		g.expect(t, "/call_permissions", "")
		g.none(t, 200*time.Millisecond, "no connect without permission")
	})

	t.Run("permission request", func(t *testing.T) {
		status, out := api(t, http.MethodPost, "/permission_requests", apiToken, map[string]any{"to": userWaID, "body": "May we call you about your order?"})
		if status != 200 || out["message_id"] != "wamid.PERM1" {
			t.Fatalf("POST /permission_requests = %d %v; want 200 with the message id", status, out)
		}
		g.expect(t, "/call_permissions?user_wa_id="+userWaID, "")
		a := g.expect(t, "/"+testPhone+"/messages", "")
		inter, _ := a.Body["interactive"].(map[string]any)
		if a.Body["type"] != "interactive" || inter["type"] != "call_permission_request" {
			t.Errorf("messages body = %v; want an interactive call_permission_request", a.Body)
		}
		status, out = api(t, http.MethodGet, "/permissions/"+userWaID, apiToken, nil)
		if status != 200 || out["status"] != "no_permission" || out["can_call"] != false {
			t.Errorf("GET /permissions = %d %v; want no_permission, can_call false", status, out)
		}
		g.expect(t, "/call_permissions", "")
	})

	t.Run("graph errors", func(t *testing.T) {
		tests := []struct {
			name, body string
			wantStatus int
			wantCode   string
			wantMeta   float64
		}{
			{"call limit", `{"error":{"message":"(#138012) Business initiated calls limit reached","type":"OAuthException","code":138012,"fbtrace_id":"AZ1"}}`, 429, "limit_reached", 138012},
			{"no permission at connect", `{"error":{"message":"(#138006) No approved call permission","type":"OAuthException","code":138006,"fbtrace_id":"AZ2"}}`, 403, "no_permission", 138006},
			{"bad parameter", `{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100,"error_subcode":2494010,"fbtrace_id":"AZ3"}}`, 502, "graph_error", 100},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				g.mu.Lock()
				g.permission = `{"messaging_product":"whatsapp","permission":{"status":"permanent"}}`
				g.connectErr = tt.body
				g.mu.Unlock()
				status, out := api(t, http.MethodPost, "/calls", apiToken, map[string]any{"to": userWaID})
				e, _ := out["error"].(map[string]any)
				meta, _ := e["meta"].(map[string]any)
				if status != tt.wantStatus || e["code"] != tt.wantCode || meta["code"] != tt.wantMeta {
					t.Errorf("POST /calls = %d %v; want %d %s with meta code %v", status, out, tt.wantStatus, tt.wantCode, tt.wantMeta)
				}
				g.expect(t, "/call_permissions", "")
				g.expect(t, "/calls", "connect")
				g.none(t, 100*time.Millisecond, "a refused connect needs nothing more")
			})
		}
		waitCalls(t, 0)
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, body := range []map[string]any{{}, {"to": userWaID, "recipient": "US.1"}, {"to": userWaID, "bot": "http://x"}, {"to": userWaID, "phone_number_id": "999"}, {"to": userWaID, "extra": 1}} {
			if status, out := api(t, http.MethodPost, "/calls", apiToken, body); status != http.StatusBadRequest {
				t.Errorf("POST /calls %v = %d %v; want 400", body, status, out)
			}
		}
		g.none(t, 100*time.Millisecond, "a bad request reached Meta")
	})
}

// TestPermissionReplyCallback checks that a call_permission_reply on the
// messages field reaches the status callback.
func TestPermissionReplyCallback(t *testing.T) {
	g := newMetaGraph(t, "permanent")
	sink := newCallbackSink(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(outboundConfig(g.URL, "ws://127.0.0.1:1/bot", sink.URL, ""), "caddyfile")
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"` + testPhone + `"},
"contacts":[{"profile":{"name":"Jane"},"wa_id":"` + userWaID + `"}],
"messages":[{"from":"` + userWaID + `","id":"wamid.REPLY","timestamp":"1750000000","type":"interactive",
"interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"accept","is_permanent":false,"expiration_timestamp":1750604800,"response_source":"user_action"}}}]}}]}]}`)
	signedPost(t, "http://localhost:9080/webhook", body)
	ev := sink.expect(t, "permission_reply")
	perm, _ := ev["permission"].(map[string]any)
	if ev["from"] != userWaID || perm["response"] != "accept" || perm["is_permanent"] != false || perm["expires"] != "2025-06-22T15:06:40Z" {
		t.Errorf("permission_reply callback = %v", ev)
	}
}

// TestTwilioHangupInboundCall hangs up a user-initiated call with the
// request pipecat sends, and lists it through the control API first.
func TestTwilioHangupInboundCall(t *testing.T) {
	graph := newFakeGraph(t)
	b := newTestBot(t, "twilio", 8000, 600)
	sink := newCallbackSink(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(outboundConfig(graph.URL, "ws"+strings.TrimPrefix(b.URL, "http"), sink.URL, ""), "caddyfile")

	call := placeCall(t, "http://localhost:9080/webhook", graph, "wacid.inbound-rest")
	if ev := sink.expect(t, "answered"); ev["direction"] != "inbound" || ev["call_id"] != call.id {
		t.Errorf("answered callback = %v", ev)
	}
	_, list := api(t, http.MethodGet, "/calls", apiToken, nil)
	calls, _ := list["calls"].([]any)
	if len(calls) != 1 || calls[0].(map[string]any)["direction"] != "inbound" || calls[0].(map[string]any)["from"] != nil {
		t.Fatalf("GET /calls = %v; want the inbound call without its number", list)
	}
	status, resp := pipecatHangup(t, bot.TwilioAccountSID(testPhone), bot.TwilioCallSID(call.id), twilioToken)
	if status != 200 || resp["direction"] != "inbound" {
		t.Fatalf("Twilio hang-up = %d %v; want 200", status, resp)
	}
	if a := graph.wait(t, 5*time.Second); a.Body["action"] != "terminate" || a.Body["call_id"] != call.id {
		t.Fatalf("Graph action after the REST hang-up = %v; want terminate", a.Body)
	}
	if ev := sink.expect(t, "ended"); ev["reason"] != "completed_bot" {
		t.Errorf("ended callback = %v; want completed_bot", ev)
	}
}

// TestOutboundReload places a call, reloads the config while it rings,
// and checks that Meta's answer and ACCEPTED after the reload still
// connect the bot, that the status callback queue went on, and that a
// real stop terminates the call toward Meta.
func TestOutboundReload(t *testing.T) {
	g := newMetaGraph(t, "permanent")
	b := newTestBot(t, "twilio", 8000, 600)
	sink := newCallbackSink(t)
	botURL := "ws" + strings.TrimPrefix(b.URL, "http")
	tester := caddytest.NewTester(t)
	tester.InitServer(outboundConfig(g.URL, botURL, sink.URL, ""), "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	id, offer := placeOutbound(t, g, map[string]any{"to": userWaID})
	sink.expect(t, "initiated")
	tester.InitServer(outboundConfig(g.URL, botURL, sink.URL, "bot_param reloaded yes"), "caddyfile")

	user := userAnswers(t, webhook, id, offer, caller.Config{})
	signedPost(t, webhook, statusWebhook(id, "ACCEPTED"))
	sink.expect(t, "answered")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := user.WaitConnected(ctx); err != nil {
		t.Fatalf("the user's side never connected after the reload: %v", err)
	}
	g.none(t, 200*time.Millisecond, "nothing toward Meta across a reload")

	tester.InitServer(`
	{
`+testGlobals+`	}
	http://localhost:9080 {
		respond "stopped" 503
	}`, "caddyfile")
	if a := g.expect(t, "/calls", "terminate"); a.Body["call_id"] != id {
		t.Errorf("terminate of %v on stop; want %s", a.Body["call_id"], id)
	}
}

// TestOutboundLogsHoldNoNumbers runs business-initiated calls, a
// permission request and reply, and control API calls with Caddy's log at
// INFO, and checks that no phone number, secret or SDP reaches it.
func TestOutboundLogsHoldNoNumbers(t *testing.T) {
	dir := t.TempDir()
	errorLog := dir + "/caddy.log"
	g := newMetaGraph(t, "permanent")
	b := newTestBot(t, "twilio", 8000, 600)
	sink := newCallbackSink(t)
	cfg := outboundConfig(g.URL, "ws"+strings.TrimPrefix(b.URL, "http"), sink.URL, "")
	cfg = strings.Replace(cfg, testGlobals, testGlobals+"\t\tlog {\n\t\t\toutput file "+errorLog+"\n\t\t\tlevel INFO\n\t\t}\n", 1)
	tester := caddytest.NewTester(t)
	tester.InitServer(cfg, "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	id, offer := placeOutbound(t, g, map[string]any{"to": userWaID, "biz_opaque_callback_data": "secret-ticket"})
	userAnswers(t, webhook, id, offer, caller.Config{})
	signedPost(t, webhook, statusWebhook(id, "RINGING"))
	signedPost(t, webhook, statusWebhook(id, "ACCEPTED"))
	for _, ev := range []string{"initiated", "ringing", "answered"} {
		sink.expect(t, ev)
	}
	if status, _ := api(t, http.MethodDelete, "/calls/"+id, apiToken, nil); status != 200 {
		t.Fatalf("DELETE /calls = %d", status)
	}
	sink.expect(t, "ended")
	if status, _ := api(t, http.MethodPost, "/permission_requests", apiToken, map[string]any{"to": userWaID, "body": "May we call?"}); status != 200 {
		t.Fatalf("POST /permission_requests = %d", status)
	}
	signedPost(t, webhook, []byte(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"`+testPhone+`"},
"messages":[{"from":"`+userWaID+`","id":"wamid.R","timestamp":"1750000000","type":"interactive",
"interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"accept","is_permanent":true,"response_source":"user_action"}}}]}}]}]}`))
	sink.expect(t, "permission_reply")
	tester.InitServer(`{"admin":{"listen":"localhost:2999"}}`, "json")

	data, err := os.ReadFile(errorLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{id, "call placed", "call permission reply"} {
		if !strings.Contains(string(data), want) {
			t.Fatalf("the log has no %q; the test would prove nothing", want)
		}
	}
	for what, s := range map[string]string{
		"user number": userWaID, "business no.": "15550001111", "api token": apiToken, "twilio token": twilioToken,
		"callback secret": cbSecret, "access token": testAccess, "callback data": "secret-ticket", "SDP": "a=ice-ufrag",
	} {
		if strings.Contains(string(data), s) {
			t.Errorf("the log contains the %s (%q)", what, s)
		}
	}
}

// TestInboundRejectedCallback checks that a user-initiated call that is
// rejected (here: the bot is down) reaches the status callback as ended,
// with the reason.
func TestInboundRejectedCallback(t *testing.T) {
	g := newMetaGraph(t, "permanent")
	sink := newCallbackSink(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(outboundConfig(g.URL, "ws://127.0.0.1:1/bot", sink.URL, "bot_timeout 200ms"), "caddyfile")
	c, err := caller.New(caller.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	signedPost(t, "http://localhost:9080/webhook", connectWebhook("wacid.in-rejected", c.Offer()))
	g.expect(t, "/calls", "reject")
	ev := sink.expect(t, "ended")
	if ev["call_id"] != "wacid.in-rejected" || ev["direction"] != "inbound" || ev["reason"] != "bot_unavailable" {
		t.Errorf("ended callback = %v; want the inbound call, reason bot_unavailable", ev)
	}
}
