package integration

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// TestWebhookRejectionsLogged sends every kind of bad webhook request
// twice, at Caddy's default log level: each reason is logged once at WARN
// (the repeat falls in the rate limit), with the client's address, and no
// line holds the body, the signature or the verify token sent. A made-up
// HTTP method is counted under method="OTHER".
func TestWebhookRejectionsLogged(t *testing.T) {
	graph := newFakeGraph(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	tester := caddytest.NewTester(t)
	tester.InitServer(faultConfig(graph.URL, "ws://127.0.0.1:1/bot", logPath, "rejections", "max_body_size 4KiB"), "caddyfile")
	const url = "http://localhost:9080/webhook"

	const marker = "BODY-MARKER-7f3a"
	body := []byte(`{"object":"whatsapp_business_account","note":"` + marker + `"}`)
	badSig := whatsapp.Sign([]byte("other-secret"), body)
	oversized := bytes.Repeat([]byte(marker), 4096/len(marker)+1)
	malformed := []byte(`{"object":"` + marker)
	for range 2 {
		post(t, url, body, nil)
		post(t, url, body, map[string]string{"X-Hub-Signature-256": badSig})
		post(t, url, oversized, map[string]string{"X-Hub-Signature-256": whatsapp.Sign([]byte(testSecret), oversized)})
		post(t, url, malformed, map[string]string{"X-Hub-Signature-256": whatsapp.Sign([]byte(testSecret), malformed)})
		resp, err := http.Get(url + "?hub.mode=subscribe&hub.verify_token=WRONG-TOKEN-MARKER&hub.challenge=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		req, _ := http.NewRequest("BREW", url, nil)
		tester.AssertResponseCode(req, http.StatusMethodNotAllowed)
	}

	want := map[string]int{
		"missing_signature":  http.StatusUnauthorized,
		"bad_signature":      http.StatusForbidden,
		"body_too_large":     http.StatusRequestEntityTooLarge,
		"malformed_body":     http.StatusBadRequest,
		"wrong_verify_token": http.StatusForbidden,
		"method_not_allowed": http.StatusMethodNotAllowed,
	}
	got := map[string]int{}
	deadline := time.Now().Add(3 * time.Second)
	var data []byte
	for {
		var err error
		if data, err = os.ReadFile(logPath); err != nil {
			t.Fatal(err)
		}
		clear(got)
		for line := range bytes.Lines(data) {
			var e logEntry
			if json.Unmarshal(line, &e) != nil || e["msg"] != "webhook rejected" {
				continue
			}
			reason, _ := e["reason"].(string)
			got[reason]++
			ip, _ := e["remote_ip"].(string)
			if addr, err := netip.ParseAddr(ip); e["level"] != "warn" || err != nil || !addr.IsLoopback() || e["status"] != float64(want[reason]) {
				t.Errorf("log line %s; want level warn, a loopback remote_ip, status %d", line, want[reason])
			}
		}
		if len(got) == len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for reason := range want {
		if got[reason] != 1 {
			t.Errorf("%d %q log lines for two such requests; want 1 (the second is rate-limited)", got[reason], reason)
		}
	}
	for _, secret := range []string{marker, "WRONG-TOKEN-MARKER", strings.TrimPrefix(badSig, "sha256=")} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the log holds %q, from a rejected request", secret)
		}
	}

	metrics := adminMetrics(t)
	if !strings.Contains(metrics, `caddy_whatsapp_calls_webhook_requests_total{code="405",method="OTHER"}`) {
		t.Errorf("metrics lack method=\"OTHER\" for a made-up method")
	}
	if strings.Contains(metrics, `method="BREW"`) {
		t.Errorf("metrics have a series for the made-up method BREW")
	}
}
