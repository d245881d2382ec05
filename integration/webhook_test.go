package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

const (
	testSecret = "integration-app-secret"
	testToken  = "integration-verify-token"
	testAccess = "integration-access-token"
	testPhone  = "106540352242922"
)

// testGlobals are the global options of every full-server test's Caddyfile:
// caddytest's fixed admin port, and plain HTTP on 9080.
const testGlobals = `
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
`

// graphAction is one Graph API call the fake recorded.
type graphAction struct {
	Path, Auth string
	Body       map[string]any
}

// fakeGraph is an httptest Graph API that speaks Meta's wire format and
// records every call action.
type fakeGraph struct {
	*httptest.Server
	mu      sync.Mutex
	actions []graphAction
	notify  chan graphAction
}

func newFakeGraph(t *testing.T) *fakeGraph {
	t.Helper()
	g := &fakeGraph{notify: make(chan graphAction, 64)}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, `{"error":{"message":"bad json","code":100}}`, http.StatusBadRequest)
			return
		}
		a := graphAction{Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Body: body}
		g.mu.Lock()
		g.actions = append(g.actions, a)
		g.mu.Unlock()
		g.notify <- a
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"success":true}`)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *fakeGraph) recorded() []graphAction {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]graphAction(nil), g.actions...)
}

// wait returns the next recorded action, or fails the test after timeout.
func (g *fakeGraph) wait(t *testing.T, timeout time.Duration) graphAction {
	t.Helper()
	select {
	case a := <-g.notify:
		return a
	case <-time.After(timeout):
		t.Fatalf("no Graph API call within %s", timeout)
		return graphAction{}
	}
}

// none fails the test if the fake records any Graph call within d; why
// says what such a call would mean.
func (g *fakeGraph) none(t *testing.T, d time.Duration, why string) {
	t.Helper()
	select {
	case a := <-g.notify:
		t.Fatalf("Graph call %v: %s", a.Body, why)
	case <-time.After(d):
	}
}

// adminMetrics returns the Prometheus text served by the test Caddy's admin
// endpoint, on a connection that is not kept open.
func adminMetrics(t *testing.T) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://localhost:2999/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return string(body)
}

func connectPayload(callID string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"calls","value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":%q},
"contacts":[{"profile":{"name":"Jane"},"wa_id":"15551234567"}],
"calls":[{"id":%q,"from":"15551234567","to":"15550001111","event":"connect","timestamp":"%d","direction":"USER_INITIATED",
"session":{"sdp_type":"offer","sdp":"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}}]}}]}]}`, testPhone, callID, time.Now().Unix()))
}

func post(t *testing.T, url string, body []byte, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestWebhookServer runs a real Caddy with whatsapp_calls and checks every
// answer the webhook gives, and the Graph calls that follow.
func TestWebhookServer(t *testing.T) {
	graph := newFakeGraph(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(fmt.Sprintf(`
	{
`+testGlobals+`	}
	http://localhost:9080 {
		whatsapp_calls /webhook {
			app_secret %s
			verify_token %s
			access_token %s
			phone_number_ids %s
			bot ws://127.0.0.1:1/unreachable
			bot_timeout 200ms
			graph_url %s
			udp_port 0
			ice_networks 127.0.0.0/8
			max_body_size 4KiB
		}
		respond "not the webhook" 404
	}`, testSecret, testToken, testAccess, testPhone, graph.URL), "caddyfile")

	const url = "http://localhost:9080/webhook"

	t.Run("verification", func(t *testing.T) {
		tester.AssertGetResponse(url+"?hub.mode=subscribe&hub.verify_token="+testToken+"&hub.challenge=1158201444", 200, "1158201444")
		tester.AssertGetResponse(url+"?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1158201444", 403, "")
		tester.AssertGetResponse(url+"?hub.mode=unsubscribe&hub.verify_token="+testToken+"&hub.challenge=1", 403, "")
	})

	signed := func(body []byte) map[string]string {
		return map[string]string{"X-Hub-Signature-256": whatsapp.Sign([]byte(testSecret), body), "Content-Type": "application/json"}
	}
	messages := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"id":"m"}]}}]}]}`)

	tests := []struct {
		name   string
		body   []byte
		header map[string]string
		want   int
	}{
		{"unsigned", connectPayload("wacid.unsigned"), nil, http.StatusUnauthorized},
		{"prefix missing", connectPayload("wacid.noprefix"), map[string]string{"X-Hub-Signature-256": strings.TrimPrefix(whatsapp.Sign([]byte(testSecret), connectPayload("wacid.noprefix")), "sha256=")}, http.StatusUnauthorized},
		{"wrong secret", connectPayload("wacid.wrong"), map[string]string{"X-Hub-Signature-256": whatsapp.Sign([]byte("other"), connectPayload("wacid.wrong"))}, http.StatusForbidden},
		{"oversized", bytes.Repeat([]byte("x"), 5<<10), signed(bytes.Repeat([]byte("x"), 5<<10)), http.StatusRequestEntityTooLarge},
		{"malformed json", []byte(`{"object":`), signed([]byte(`{"object":`)), http.StatusBadRequest},
		{"messages webhook", messages, signed(messages), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(t, url, tt.body, tt.header); got != tt.want {
				t.Errorf("POST %s = %d; want %d", tt.name, got, tt.want)
			}
		})
	}

	t.Run("method not allowed", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, url, nil)
		tester.AssertResponseCode(req, http.StatusMethodNotAllowed)
	})

	// None of the above may reach the Graph API.
	if got := graph.recorded(); len(got) != 0 {
		t.Fatalf("Graph calls after bad webhooks = %v; want none", got)
	}

	t.Run("connect with the bot down is rejected once", func(t *testing.T) {
		c, err := caller.New(caller.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		body := connectWebhook("wacid.botdown", c.Offer())
		start := time.Now()
		for range 2 { // Meta retries deliveries: the second must do nothing.
			if got := post(t, url, body, signed(body)); got != http.StatusOK {
				t.Fatalf("POST connect = %d; want 200", got)
			}
		}
		if elapsed := time.Since(start); elapsed > 150*time.Millisecond {
			t.Logf("note: two webhook POSTs took %s", elapsed)
		}
		a := graph.wait(t, 5*time.Second)
		if a.Body["action"] != "reject" || a.Body["call_id"] != "wacid.botdown" {
			t.Fatalf("Graph action = %v; want reject of wacid.botdown", a.Body)
		}
		if a.Path != "/v23.0/"+testPhone+"/calls" || a.Auth != "Bearer "+testAccess {
			t.Errorf("Graph request path %q auth %q; want /v23.0/%s/calls with the bearer token", a.Path, a.Auth, testPhone)
		}
		graph.none(t, 500*time.Millisecond, "want one reject for a repeated webhook")
		if want := `caddy_whatsapp_calls_total{reason="bot_unavailable",result="rejected"}`; !strings.Contains(adminMetrics(t), want) {
			t.Errorf("admin /metrics lacks %s: the reject was not for the bot being down", want)
		}
	})

	t.Run("other phone number is acknowledged and left alone", func(t *testing.T) {
		body := bytes.Replace(connectPayload("wacid.other"), []byte(testPhone), []byte("999"), 1)
		if got := post(t, url, body, signed(body)); got != http.StatusOK {
			t.Fatalf("POST = %d; want 200", got)
		}
		graph.none(t, 300*time.Millisecond, "for a number this handler does not serve")
	})
}
