package integration

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// candidatePorts returns the ports of the host candidates in an SDP.
func candidatePorts(sdp string) []string {
	re := regexp.MustCompile(`a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host`)
	var ports []string
	for _, m := range re.FindAllStringSubmatch(sdp, -1) {
		ports = append(ports, m[1])
	}
	return ports
}

// TestReloadKeepsCalls holds 5 live calls through a config reload, checks
// that audio keeps flowing both ways on the same UDP port, then stops the
// handler and checks that every call is terminated toward Meta and its bot.
func TestReloadKeepsCalls(t *testing.T) {
	const udpPort = 39478
	graph := newFakeGraph(t)
	bot := newTestBot(t, "twilio", 8000, 600)
	botURL := "ws" + strings.TrimPrefix(bot.URL, "http")
	tester := caddytest.NewTester(t)
	tester.InitServer(callConfig(graph.URL, botURL, "twilio", fmt.Sprintf("udp_port %d\nmax_calls 10", udpPort)), "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	var calls []*testCall
	for i := range 5 {
		c := placeCall(t, webhook, graph, fmt.Sprintf("wacid.reload-%d", i))
		for _, p := range candidatePorts(c.answer) {
			if p != fmt.Sprint(udpPort) {
				t.Fatalf("call %d answer has a candidate on port %s; want every candidate on udp_port %d", i, p, udpPort)
			}
		}
		calls = append(calls, c)
	}

	// Every caller speaks for the whole test, as a real caller would.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			speakUntil(c.caller, 1000, stop)
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	time.Sleep(500 * time.Millisecond)
	before := make([]uint64, len(calls))
	for i, c := range calls {
		before[i] = c.caller.Received()
	}
	heardBefore, _, _ := bot.snapshot()

	// Reload with a changed config: a new bot parameter and a new cap.
	tester.InitServer(callConfig(graph.URL, botURL, "twilio", fmt.Sprintf("udp_port %d\nmax_calls 20\nbot_param reloaded yes", udpPort)), "caddyfile")

	time.Sleep(time.Second)
	for i, c := range calls {
		// 50 packets a second: after a second, at least 40 more must have come.
		if got := c.caller.Received() - before[i]; got < 40 {
			t.Errorf("call %d received %d packets in the second after reload; want ≥ 40 (audio stopped)", i, got)
		}
	}
	heardAfter, _, _ := bot.snapshot()
	if grew := len(heardAfter) - len(heardBefore); grew < 5*8000*8/10 {
		t.Errorf("bots heard %d samples across 5 calls in ~1.3 s around the reload; want ≥ %d", grew, 5*8000*8/10)
	}
	select {
	case a := <-graph.notify:
		t.Fatalf("Graph call %v during reload; want none", a.Body)
	default:
	}

	// A new call after the reload uses the new config and the same port.
	c := placeCall(t, webhook, graph, "wacid.after-reload")
	for _, p := range candidatePorts(c.answer) {
		if p != fmt.Sprint(udpPort) {
			t.Errorf("post-reload answer candidate on port %s; want %d", p, udpPort)
		}
	}
	calls = append(calls, c)

	// A real stop: a config without whatsapp_calls.
	tester.InitServer(`
	{
`+testGlobals+`	}
	http://localhost:9080 {
		respond "stopped" 503
	}`, "caddyfile")

	terminated := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(terminated) < len(calls) {
		select {
		case a := <-graph.notify:
			if a.Body["action"] != "terminate" {
				t.Fatalf("Graph action %v on stop; want terminate", a.Body)
			}
			terminated[a.Body["call_id"].(string)] = true
		case <-deadline:
			t.Fatalf("after stop, %d of %d calls terminated toward Meta: %v", len(terminated), len(calls), terminated)
		}
	}
	for range calls {
		select {
		case <-bot.ended:
		case <-time.After(5 * time.Second):
			t.Fatal("a bot connection is still open after stop")
		}
	}
	_, _, events := bot.snapshot()
	stops := 0
	for _, e := range events {
		if e == "stop" {
			stops++
		}
	}
	if stops != len(calls) {
		t.Errorf("bots got %d stop events; want %d", stops, len(calls))
	}
}
