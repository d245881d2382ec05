package simulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

const testBusinessOffer = "v=0\r\no=- 5 6 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 126\r\n" +
	"a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\na=candidate:1 1 udp 1 127.0.0.1 7000 typ host\r\n"

func connectBody(to, sdp string) string {
	b, _ := json.Marshal(map[string]any{
		"messaging_product": "whatsapp", "to": to, "action": "connect", "biz_opaque_callback_data": "r-1",
		"session": map[string]string{"sdp_type": "offer", "sdp": sdp},
	})
	return string(b)
}

// placeBusinessCall sends connect as whatsapp_calls does and returns the
// call id Meta's answer carries.
func placeBusinessCall(t *testing.T, base string) string {
	t.Helper()
	status, out := graphPost(t, base+"/graph/v23.0/"+defaultPhoneNumberID+"/calls", testToken, "application/json", connectBody(defaultCaller, testBusinessOffer))
	calls, _ := out["calls"].([]any)
	if status != 200 || len(calls) != 1 || out["messaging_product"] != "whatsapp" {
		t.Fatalf("connect = %d %v; want 200 with one call id", status, out)
	}
	id, _ := calls[0].(map[string]any)["id"].(string)
	if !strings.HasPrefix(id, "wacid.") {
		t.Fatalf("call id %q; want wacid...", id)
	}
	return id
}

func pagePost(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	return graphPost(t, url, "", "application/json", body)
}

func TestBusinessInitiatedCallAnswered(t *testing.T) {
	checkLeaks(t)
	s, sink, base := newTestSimulator(t)
	id := placeBusinessCall(t, base)
	got := sink.waitWebhooks(1)
	st := got[0].Entry[0].Changes[0].Value.Statuses
	if len(st) != 1 || st[0].ID != id || st[0].Status != "RINGING" || st[0].Type != "call" || st[0].BizOpaque != "r-1" {
		t.Fatalf("first webhook statuses = %+v; want RINGING of %s", st, id)
	}
	calls := s.Calls()
	if len(calls) != 1 || calls[0].Direction != directionBusiness || calls[0].State != StateIncoming {
		t.Fatalf("Calls() = %+v; want one incoming business-initiated call", calls)
	}
	c, _ := s.lookup(id)
	if c.events[0].SDP != testBusinessOffer {
		t.Errorf("first event SDP = %q; want the business's offer", c.events[0].SDP)
	}

	if status, out := pagePost(t, base+"/api/calls/"+id+"/answer", `{"sdp":`+jsonQuote(testAnswer)+`}`); status != 200 || out["state"] != StateAccepted {
		t.Fatalf("answer = %d %v; want 200 accepted", status, out)
	}
	got = sink.waitWebhooks(3)
	conn := got[1].Entry[0].Changes[0].Value.Calls
	if len(conn) != 1 || conn[0].Event != "connect" || conn[0].Direction != directionBusiness || conn[0].Session == nil ||
		conn[0].Session.SDPType != "answer" || conn[0].Session.SDP != testAnswer || conn[0].To != defaultCaller {
		t.Fatalf("second webhook = %+v; want the connect with the answer", conn)
	}
	if st := got[2].Entry[0].Changes[0].Value.Statuses; len(st) != 1 || st[0].Status != "ACCEPTED" {
		t.Fatalf("third webhook statuses = %+v; want ACCEPTED", st)
	}
	if status, out := pagePost(t, base+"/api/calls/"+id+"/answer", `{"sdp":`+jsonQuote(testAnswer)+`}`); status != http.StatusConflict {
		t.Errorf("second answer = %d %v; want 409", status, out)
	}

	// The business hangs up: a terminate webhook of the business-initiated call.
	if status, out := graphPost(t, base+"/graph/v23.0/"+defaultPhoneNumberID+"/calls", testToken, "application/json", graphBody(id, "terminate", "", "")); status != 200 {
		t.Fatalf("terminate = %d %v", status, out)
	}
	got = sink.waitWebhooks(4)
	term := got[3].Entry[0].Changes[0].Value.Calls
	if len(term) != 1 || term[0].Event != "terminate" || term[0].Direction != directionBusiness || term[0].Status != terminateCompleted {
		t.Errorf("fourth webhook = %+v; want a COMPLETED terminate of the business-initiated call", term)
	}
}

func TestBusinessInitiatedCallDeclined(t *testing.T) {
	checkLeaks(t)
	s, sink, base := newTestSimulator(t)
	id := placeBusinessCall(t, base)
	sink.waitWebhooks(1)
	if status, out := pagePost(t, base+"/api/calls/"+id+"/decline", `{}`); status != 200 || out["state"] != StateRejected {
		t.Fatalf("decline = %d %v; want 200 rejected", status, out)
	}
	got := sink.waitWebhooks(3)
	if st := got[1].Entry[0].Changes[0].Value.Statuses; len(st) != 1 || st[0].Status != "REJECTED" {
		t.Errorf("second webhook statuses = %+v; want REJECTED", st)
	}
	if term := got[2].Entry[0].Changes[0].Value.Calls; len(term) != 1 || term[0].Event != "terminate" || term[0].Status != terminateRejected {
		t.Errorf("third webhook = %+v; want a REJECTED terminate", term)
	}
	if info := s.Calls()[0]; info.State != StateRejected || info.By != byCaller || info.Reason != ReasonDeclined {
		t.Errorf("call = %+v; want rejected by the caller", info)
	}
}

func TestBusinessInitiatedCallRefused(t *testing.T) {
	checkLeaks(t)
	_, _, base := newTestSimulator(t)
	url := base + "/graph/v23.0/" + defaultPhoneNumberID + "/calls"
	for _, tt := range []struct{ name, token, body string }{
		{"answer-shaped offer", testToken, connectBody(defaultCaller, strings.Replace(testBusinessOffer, "actpass", "active", 1))},
		{"another user", testToken, connectBody("15559999999", testBusinessOffer)},
		{"no recipient", testToken, connectBody("", testBusinessOffer)},
	} {
		if status, out := graphPost(t, url, tt.token, "application/json", tt.body); status != http.StatusBadRequest {
			t.Errorf("%s: connect = %d %v; want 400", tt.name, status, out)
		}
	}
	if status, _ := graphPost(t, url, "wrong", "application/json", connectBody(defaultCaller, testBusinessOffer)); status != http.StatusUnauthorized {
		t.Errorf("connect with a wrong token = %d; want 401", status)
	}
}

func TestSimulatedPermissions(t *testing.T) {
	checkLeaks(t)
	_, sink, base := newTestSimulator(t)
	req, _ := http.NewRequest(http.MethodGet, base+"/graph/v23.0/"+defaultPhoneNumberID+"/call_permissions?user_wa_id="+defaultCaller, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var perm map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&perm)
	resp.Body.Close()
	if p, _ := perm["permission"].(map[string]any); resp.StatusCode != 200 || p["status"] != "temporary" {
		t.Fatalf("call_permissions = %d %v; want a temporary permission", resp.StatusCode, perm)
	}

	body := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"` + defaultCaller + `","type":"interactive",` +
		`"interactive":{"type":"call_permission_request","action":{"name":"call_permission_request"},"body":{"text":"May we call?"}}}`
	status, out := graphPost(t, base+"/graph/v23.0/"+defaultPhoneNumberID+"/messages", testToken, "application/json", body)
	msgs, _ := out["messages"].([]any)
	if status != 200 || len(msgs) != 1 {
		t.Fatalf("messages = %d %v; want a message id", status, out)
	}
	got := sink.waitWebhooks(1)
	ch := got[0].Entry[0].Changes[0]
	if ch.Field != "messages" || len(ch.Value.Messages) != 1 || ch.Value.Messages[0].Interactive == nil ||
		ch.Value.Messages[0].Interactive.Type != "call_permission_reply" || ch.Value.Messages[0].Interactive.CallPermissionReply.Response != "accept" {
		t.Errorf("permission reply webhook = %+v; want an accepted call_permission_reply on messages", ch)
	}
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
