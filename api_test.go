package whatsappcalls

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// newTestAPI returns a control API over a handler whose registry is f's,
// listed in the directory until the test ends.
func newTestAPI(t *testing.T, f *outboundFixture) *API {
	t.Helper()
	h := &Handler{phoneNumbers: f.cfg.phoneNumbers, holds: &handlerHolds{}}
	h.holds.running.Store(&running{calls: f.r, cfg: f.cfg})
	directory.add(h)
	t.Cleanup(func() { directory.remove(h) })
	a := &API{token: "tok", twilioToken: "twtok", logger: zap.NewNop()}
	a.routes()
	return a
}

func serve(a *API, req *http.Request) (int, map[string]any) {
	w := httptest.NewRecorder()
	_ = a.ServeHTTP(w, req, nil)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func TestAPIAuth(t *testing.T) {
	f := newOutboundFixture(t, 10)
	a := newTestAPI(t, f)
	tests := []struct {
		name, method, path, auth string
		want                     int
	}{
		{"no token", "GET", "/calls", "", 401},
		{"wrong token", "GET", "/calls", "Bearer nope", 401},
		{"basic instead of bearer", "GET", "/calls", "Basic dG9rOg==", 401},
		{"token of another prefix", "GET", "/calls", "Bearer tokx", 401},
		{"good token", "GET", "/calls", "Bearer tok", 200},
		{"unknown route", "GET", "/nope", "Bearer tok", 404},
		{"wrong method", "PUT", "/calls", "Bearer tok", 405},
		{"twilio without basic auth", "POST", "/2010-04-01/Accounts/AC1/Calls/CA1.json", "", 401},
		{"twilio with the bearer token", "POST", "/2010-04-01/Accounts/AC1/Calls/CA1.json", "Bearer tok", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			if got, out := serve(a, req); got != tt.want {
				t.Errorf("%s %s = %d %v; want %d", tt.method, tt.path, got, out, tt.want)
			}
		})
	}
	if got := f.g.calls(); len(got) != 0 {
		t.Errorf("Graph saw %v; want nothing", got)
	}
}

func TestAPIPermissionRequestLimit(t *testing.T) {
	f := newOutboundFixture(t, 10)
	a := newTestAPI(t, f)
	f.g.permission = &whatsapp.Permission{Status: whatsapp.PermissionNone, Actions: []whatsapp.PermissionAction{{
		Name: whatsapp.ActionSendPermissionRequest, Limits: []whatsapp.PermissionLimit{{TimePeriod: "PT24H", MaxAllowed: 1, CurrentUsage: 1}},
	}}}
	req := httptest.NewRequest("POST", "/permission_requests", strings.NewReader(`{"to":"15551234567","body":"May we call?"}`))
	req.Header.Set("Authorization", "Bearer tok")
	status, out := serve(a, req)
	e, _ := out["error"].(map[string]any)
	if status != http.StatusTooManyRequests || e["code"] != "limit_reached" || !strings.Contains(e["message"].(string), "1 of 1 per PT24H") {
		t.Fatalf("POST /permission_requests over Meta's limit = %d %v; want 429 limit_reached naming the limit", status, out)
	}
	if got, want := f.g.calls(), []string{"call_permissions 15551234567"}; !slices.Equal(got, want) {
		t.Errorf("Graph actions = %v; want %v (no request sent)", got, want)
	}
}

// TestTwilioHangupShapes checks the Twilio route's answers for the request
// pipecat sends, on a call being placed.
func TestTwilioHangupShapes(t *testing.T) {
	f := newOutboundFixture(t, 10)
	a := newTestAPI(t, f)
	c, err := f.r.place(t.Context(), f.cfg, placeRequest{To: "15551234567"})
	if err != nil {
		t.Fatal(err)
	}
	account, sid := bot.TwilioAccountSID("1"), bot.TwilioCallSID(c.ev.Call.ID)
	hangup := func(account, sid, token, status string) (int, map[string]any) {
		req := httptest.NewRequest("POST", "/2010-04-01/Accounts/"+account+"/Calls/"+sid+".json",
			strings.NewReader(url.Values{"Status": {status}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(account, token)
		return serve(a, req)
	}
	if st, out := hangup(account, sid, "wrong", "completed"); st != 401 || out["code"] != float64(20003) {
		t.Errorf("wrong token = %d %v; want 401 code 20003", st, out)
	}
	if st, out := hangup(bot.TwilioAccountSID("2"), sid, "twtok", "completed"); st != 404 || out["code"] != float64(20404) {
		t.Errorf("another account's sid = %d %v; want 404 code 20404", st, out)
	}
	if st, out := hangup(account, sid, "twtok", "in-progress"); st != 400 {
		t.Errorf("Status=in-progress = %d %v; want 400", st, out)
	}
	st, out := hangup(account, sid, "twtok", "completed")
	if st != 200 || out["sid"] != sid || out["account_sid"] != account || out["status"] != "completed" || out["direction"] != "outbound-api" {
		t.Fatalf("hang-up = %d %v; want 200 with Twilio's call resource", st, out)
	}
	waitGone(t, f.r)
	if !slices.Contains(f.g.calls(), "terminate "+c.ev.Call.ID) {
		t.Errorf("Graph actions = %v; want a terminate", f.g.calls())
	}
}
