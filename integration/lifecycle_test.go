package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// startedCalls returns the WhatsApp call ids of the twilio start messages
// the bot got, in order.
func (b *testBot) startedCalls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	for _, m := range b.messages {
		if m["event"] != "start" {
			continue
		}
		start, _ := m["start"].(map[string]any)
		params, _ := start["customParameters"].(map[string]any)
		id, _ := params["whatsapp_call_id"].(string)
		ids = append(ids, id)
	}
	return ids
}

// keepsFlowing checks that audio still flows both ways on a live call over
// the next second: the caller receives packets and the bot hears samples.
func keepsFlowing(t *testing.T, what string, c *testCall, bot *testBot) {
	t.Helper()
	before := c.caller.Received()
	heard, _, _ := bot.snapshot()
	time.Sleep(time.Second)
	if got := c.caller.Received() - before; got < 40 {
		t.Errorf("%s: call %s received %d packets in a second; want ≥ 40 (audio stopped)", what, c.id, got)
	}
	after, _, _ := bot.snapshot()
	if grew := len(after) - len(heard); grew < 8000*8/10 {
		t.Errorf("%s: bot heard %d samples of call %s in a second; want ≥ %d", what, grew, c.id, 8000*8/10)
	}
}

// speaking makes the caller speak until the test ends.
func speaking(t *testing.T, c *testCall) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		speakUntil(c.caller, 1000, stop)
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}

func wsURL(b *testBot) string { return "ws" + strings.TrimPrefix(b.URL, "http") }

// TestValidateBesideRunningInstance runs `caddy validate`'s code path
// (caddy.Validate on the adapted Caddyfile) while the config's udp_port is
// held by another socket, as it is when a Caddy with the same config runs:
// validation binds nothing, so it passes. Starting that config does bind,
// and fails with an error that names udp_port.
func TestValidateBesideRunningInstance(t *testing.T) {
	held, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.LocalAddr().(*net.UDPAddr).Port
	graph := newFakeGraph(t)
	bot := newTestBot(t, "twilio", 8000, 600)
	caddyfile := callConfig(graph.URL, wsURL(bot), "twilio", fmt.Sprintf("udp_port %d", port))

	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("validate with udp_port %d held by another socket = %v; want nil (validation must bind nothing)", port, err)
	}

	caddytest.AssertLoadError(t, caddyfile, "caddyfile", fmt.Sprintf("udp_port %d: ", port))
	caddytest.AssertLoadError(t, caddyfile, "caddyfile", "address already in use")
}

// TestReloadFailedKeepsCalls loads a config that fails after a new
// whatsapp_calls handler (another bot, another Graph API) has provisioned:
// the live call goes on, and the next call still uses the running config.
func TestReloadFailedKeepsCalls(t *testing.T) {
	graphA, graphB := newFakeGraph(t), newFakeGraph(t)
	botA, botB := newTestBot(t, "twilio", 8000, 600), newTestBot(t, "twilio", 8000, 600)
	tester := caddytest.NewTester(t)
	tester.InitServer(callConfig(graphA.URL, wsURL(botA), "twilio", ""), "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	first := placeCall(t, webhook, graphA, "wacid.failed-reload-1")
	speaking(t, first)

	// Routes with longer paths come first, so /webhook provisions before
	// the broken /x.
	broken := fmt.Sprintf(`
	{
`+testGlobals+`	}
	http://localhost:9080 {
		whatsapp_calls /webhook {
			app_secret %s
			verify_token %s
			access_token %s
			bot %s
			graph_url %s
			ice_networks 127.0.0.0/8
			udp_port 0
		}
		whatsapp_calls /x {
			app_secret {env.WA_TEST_UNSET_SECRET}
			verify_token v
			access_token a
			bot ws://127.0.0.1:1/
		}
	}`, testSecret, testToken, testAccess, wsURL(botB), graphB.URL)
	caddytest.AssertLoadError(t, broken, "caddyfile", "app_secret: {env.WA_TEST_UNSET_SECRET} is not set")

	keepsFlowing(t, "after the failed reload", first, botA)
	graphA.none(t, 100*time.Millisecond, "after a failed reload; want none")

	second := placeCall(t, webhook, graphA, "wacid.failed-reload-2")
	speaking(t, second)
	if got := botA.startedCalls(); len(got) != 2 || got[1] != second.id {
		t.Errorf("running config's bot got calls %v; want both, the second %s", got, second.id)
	}
	if got := botB.startedCalls(); len(got) != 0 {
		t.Errorf("the rejected config's bot got calls %v; want none", got)
	}
	graphB.none(t, 100*time.Millisecond, "to the rejected config's Graph API; want none")
}

// TestTwoSitesWithoutPhoneNumbers runs two handlers of two Meta apps, each
// with max_calls 1 and no phone_number_ids: each call uses its own site's
// bot and Graph API, neither site's calls count against the other's cap,
// and a terminate webhook of one app cannot end the other app's call.
func TestTwoSitesWithoutPhoneNumbers(t *testing.T) {
	const secretA, secretB = "site-a-app-secret", "site-b-app-secret"
	graphA, graphB := newFakeGraph(t), newFakeGraph(t)
	botA, botB := newTestBot(t, "twilio", 8000, 600), newTestBot(t, "twilio", 8000, 600)
	site := func(path, secret string, graph *fakeGraph, bot *testBot) string {
		return fmt.Sprintf(`
		whatsapp_calls %s {
			app_secret %s
			verify_token %s
			access_token %s
			bot %s
			graph_url %s
			ice_networks 127.0.0.0/8
			udp_port 0
			max_calls 1
		}`, path, secret, testToken, testAccess, wsURL(bot), graph.URL)
	}
	tester := caddytest.NewTester(t)
	tester.InitServer(`
	{
`+testGlobals+`	}
	http://localhost:9080 {`+site("/a", secretA, graphA, botA)+site("/b", secretB, graphB, botB)+`
	}`, "caddyfile")

	a := placeCallAs(t, "http://localhost:9080/a", secretA, graphA, "wacid.site-a")
	b := placeCallAs(t, "http://localhost:9080/b", secretB, graphB, "wacid.site-b")
	speaking(t, a)
	speaking(t, b)
	if got := botA.startedCalls(); len(got) != 1 || got[0] != a.id {
		t.Errorf("site a's bot got calls %v; want only %s", got, a.id)
	}
	if got := botB.startedCalls(); len(got) != 1 || got[0] != b.id {
		t.Errorf("site b's bot got calls %v; want only %s", got, b.id)
	}

	// Site b's app reports a's call id as terminated: a's call goes on.
	signedPostAs(t, "http://localhost:9080/b", secretB, terminateWebhook(a.id))
	keepsFlowing(t, "after the other site's terminate", a, botA)
	select {
	case <-botA.ended:
		t.Fatal("site a's bot was hung up by site b's terminate webhook")
	default:
	}

	signedPostAs(t, "http://localhost:9080/a", secretA, terminateWebhook(a.id))
	select {
	case <-botA.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("site a's terminate did not end its call")
	}
	graphA.none(t, 200*time.Millisecond, "after Meta's own terminate; want none")
	graphB.none(t, 0, "to site b's Graph API for site a's call; want none")
}

// TestReloadAddsNumberMidCall reloads, mid-call, with one more phone number
// and another bot URL: the live call goes on with its bot, a terminate
// webhook after the reload still ends it, and the next call gets the new
// bot.
func TestReloadAddsNumberMidCall(t *testing.T) {
	graph := newFakeGraph(t)
	botA, botB := newTestBot(t, "twilio", 8000, 600), newTestBot(t, "twilio", 8000, 600)
	tester := caddytest.NewTester(t)
	tester.InitServer(callConfig(graph.URL, wsURL(botA), "twilio", "phone_number_ids "+testPhone), "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	first := placeCall(t, webhook, graph, "wacid.add-number-1")
	speaking(t, first)

	tester.InitServer(callConfig(graph.URL, wsURL(botB), "twilio", "phone_number_ids "+testPhone+" 106540352249999"), "caddyfile")
	keepsFlowing(t, "after the reload", first, botA)
	graph.none(t, 100*time.Millisecond, "during a reload that adds a number; want none")

	signedPost(t, webhook, terminateWebhook(first.id))
	select {
	case <-botA.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("a terminate webhook after the reload did not end the call started before it")
	}
	if _, _, events := botA.snapshot(); len(events) == 0 || events[len(events)-1] != "stop" {
		t.Errorf("first bot's last event = %v; want stop", events)
	}
	graph.none(t, 200*time.Millisecond, "after Meta's own terminate; want none")

	second := placeCall(t, webhook, graph, "wacid.add-number-2")
	speaking(t, second)
	if got := botB.startedCalls(); len(got) != 1 || got[0] != second.id {
		t.Errorf("new bot got calls %v; want %s", got, second.id)
	}
}

// TestLoadErrorsNameTheProblem validates configs, as `caddy validate`
// does, whose placeholders cannot resolve: the error names the option and
// the placeholder, and never a value.
func TestLoadErrorsNameTheProblem(t *testing.T) {
	t.Setenv("WA_TEST_BOT_URL", "ws://127.0.0.1:1/bot?token=s3cr3t")
	t.Setenv("WA_TEST_HTTP_BOT_URL", "http://127.0.0.1:1/bot?token=s3cr3t")
	t.Setenv("WA_TEST_EMPTY", "")
	tests := []struct {
		name, options, wantErr string
	}{
		{"bot from the environment", "bot {env.WA_TEST_BOT_URL}", ""},
		{"bot from the environment, not ws", "bot {env.WA_TEST_HTTP_BOT_URL}", "bot: not a ws:// or wss:// URL after placeholders"},
		{"bot unset", "bot {env.WA_TEST_UNSET_BOT_URL}", "bot: {env.WA_TEST_UNSET_BOT_URL} is not set"},
		{"app_secret unset", "app_secret {env.WA_TEST_UNSET_SECRET}", "app_secret: {env.WA_TEST_UNSET_SECRET} is not set"},
		{"access_token empty", "access_token {env.WA_TEST_EMPTY}", "access_token: {env.WA_TEST_EMPTY} is empty"},
		{"bot_header unset", `bot_header Authorization "Bearer {env.WA_TEST_UNSET_TOKEN}"`, "bot_header Authorization: {env.WA_TEST_UNSET_TOKEN} is not set"},
		{"bot_param unset", "bot_param agent {env.WA_TEST_UNSET_AGENT}", "bot_param agent: {env.WA_TEST_UNSET_AGENT} is not set"},
		{"bot_header unknown per-call", "bot_header X-Id {whatsapp.nope}", "bot_header X-Id: unrecognized placeholder {whatsapp.nope}"},
		{"bot_param per-call", "bot_param caller {whatsapp.from}", ""},
		{"bot_param per-call user id", "bot_param user {whatsapp.from_user_id}", ""},
		{"biz_opaque_callback_data unset", "biz_opaque_callback_data {env.WA_TEST_UNSET_DATA}", "biz_opaque_callback_data: {env.WA_TEST_UNSET_DATA} is not set"},
		{"biz_opaque_callback_data per-call", "biz_opaque_callback_data call={whatsapp.call_id}", ""},
		{"request placeholder", "bot_header X-Host {http.request.host}", "bot_header X-Host: {http.request.host} is a request placeholder"},
		{"graph_url unset", "graph_url {env.WA_TEST_UNSET_GRAPH}", "graph_url: {env.WA_TEST_UNSET_GRAPH} is not set"},
		{"ice_server credential unset", "ice_server turn:127.0.0.1:3478 user {env.WA_TEST_UNSET_TURN}", "ice_server credential: {env.WA_TEST_UNSET_TURN} is not set"},
		{"per-call placeholder in a secret", "verify_token {whatsapp.call_id}", "verify_token: {whatsapp.call_id} is a per-call placeholder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := map[string]string{
				"app_secret": "s", "verify_token": "v", "access_token": "a", "bot": "ws://127.0.0.1:1/bot",
			}
			name, _, _ := strings.Cut(tt.options, " ")
			extra := tt.options
			if _, ok := opts[name]; ok {
				delete(opts, name)
			}
			var block strings.Builder
			for k, v := range opts {
				fmt.Fprintf(&block, "\t\t%s %s\n", k, v)
			}
			caddyfile := fmt.Sprintf(":9081 {\n\twhatsapp_calls {\n%s\t\t%s\n\t\tudp_port 0\n\t}\n}\n", block.String(), extra)
			adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var cfg caddy.Config
			if err := json.Unmarshal(adapted, &cfg); err != nil {
				t.Fatal(err)
			}
			err = caddy.Validate(&cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validate = %v; want an error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error %q echoes a value", err)
			}
		})
	}
}
