package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestLogsHoldNoSecrets runs a whole call, bad webhooks and the webhook
// verification through a Caddy that logs at INFO (error log and access log,
// the latter with the query filter the README recommends), then checks that
// no secret, phone number, caller name or SDP reached either log. It also
// replays the call's connect webhook after the call ended, which must not
// start a second call.
func TestLogsHoldNoSecrets(t *testing.T) {
	dir := t.TempDir()
	errorLog, accessLog := filepath.Join(dir, "caddy.log"), filepath.Join(dir, "access.log")
	graph := newFakeGraph(t)
	bot := newTestBot(t, "twilio", 8000, 600)
	tester := caddytest.NewTester(t)
	tester.InitServer(fmt.Sprintf(`
	{
`+testGlobals+`		log {
			output file %s
			level INFO
		}
	}
	http://localhost:9080 {
		log {
			output file %s
			format filter {
				wrap json
				fields {
					request>uri query {
						replace hub.verify_token REDACTED
						replace hub.challenge REDACTED
					}
				}
			}
		}
		whatsapp_calls /webhook {
			app_secret %s
			verify_token %s
			access_token %s
			bot %s
			bot_header X-From {whatsapp.from}
			graph_url %s
			udp_port 0
			ice_networks 127.0.0.0/8
		}
	}`, errorLog, accessLog, testSecret, testToken, testAccess, "ws"+strings.TrimPrefix(bot.URL, "http"), graph.URL), "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	tester.AssertGetResponse(webhook+"?hub.mode=subscribe&hub.verify_token="+testToken+"&hub.challenge=42", 200, "42")
	post(t, webhook, connectPayload("wacid.unsigned-log"), nil)
	post(t, webhook, connectPayload("wacid.badsig-log"), map[string]string{"X-Hub-Signature-256": "sha256=00"})

	call := placeCall(t, webhook, graph, "wacid.log-check")
	speak(t, call.caller, 1000, 300*time.Millisecond)
	if err := call.caller.SendDTMF(context.Background(), '5', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	close(bot.hangup)
	if a := graph.wait(t, 5*time.Second); a.Body["action"] != "terminate" {
		t.Fatalf("Graph action = %v; want terminate after the bot hung up", a.Body)
	}

	// A replay of the connect webhook, validly signed, after the call ended.
	signedPost(t, webhook, connectWebhook(call.id, call.caller.Offer()))
	graph.none(t, time.Second, "the replayed connect webhook must do nothing")

	// Stop the server so that every log line is written.
	tester.InitServer(`{"admin":{"listen":"localhost:2999"}}`, "json")

	forbidden := map[string]string{
		"app secret":    testSecret,
		"access token":  testAccess,
		"verify token":  testToken,
		"caller number": "15551234567",
		"business no.":  "15550001111",
		"caller name":   "Jane",
		"SDP":           "a=fingerprint",
		"SDP ice":       "a=ice-ufrag",
	}
	for _, file := range []string{errorLog, accessLog} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		if !strings.Contains(string(data), "wacid.log-check") && file == errorLog {
			t.Fatalf("%s has no line about the call; the test would prove nothing", file)
		}
		for what, s := range forbidden {
			if strings.Contains(string(data), s) {
				t.Errorf("%s contains the %s (%q)", filepath.Base(file), what, s)
			}
		}
	}
}
