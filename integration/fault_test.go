package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/zaf/g711"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/tone"
)

// This file holds the fault tests of a whole server: a Graph API that fails
// or hangs on each call action, bots that break the WebSocket, and a caller
// that disappears. Every test checks what Meta is told (the fake Graph API's
// recorded actions) and that the bot's socket is closed.

const faultWebhook = "http://localhost:9080/webhook"

// graphFault is how the fake Graph API answers one call action.
type graphFault int

const (
	graphOK     graphFault = iota
	graphError             // HTTP 500 with a Graph error body
	graphHang              // no answer until the client gives up
	graphRefuse            // HTTP 400 with a Graph error body: refused, not done
	graphSlow              // success, but only after slowGraphDelay
)

// slowGraphDelay is how long a graphSlow action takes to succeed.
const slowGraphDelay = 1500 * time.Millisecond

// faultGraph is a Graph API that answers chosen call actions with an error
// or not at all, and records every request. Its record never blocks.
type faultGraph struct {
	*httptest.Server
	notify chan graphAction // every action, in arrival order

	mu       sync.Mutex
	faults   map[string]graphFault
	release  chan struct{}        // closing it ends the current hangs
	answered map[string]time.Time // "action call_id" → when its answer was written
}

func newFaultGraph(t *testing.T) *faultGraph {
	t.Helper()
	g := &faultGraph{notify: make(chan graphAction, 4096), faults: map[string]graphFault{}, release: make(chan struct{}), answered: map[string]time.Time{}}
	g.Server = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(func() {
		g.releaseHangs()
		g.Close()
	})
	return g
}

func (g *faultGraph) serve(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":{"message":"bad json","code":100}}`, http.StatusBadRequest)
		return
	}
	a := graphAction{Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Body: body}
	action, _ := body["action"].(string)
	g.mu.Lock()
	fault, release := g.faults[action], g.release
	g.mu.Unlock()
	select {
	case g.notify <- a:
	default:
		panic("fault graph: more than 4096 unread actions")
	}
	w.Header().Set("Content-Type", "application/json")
	switch fault {
	case graphHang:
		select {
		case <-r.Context().Done():
		case <-release:
		}
		w.WriteHeader(http.StatusGatewayTimeout)
	case graphError:
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"error":{"message":"(#131000) Something went wrong","type":"OAuthException","code":131000,"fbtrace_id":"AfaultTEST"}}`)
	case graphRefuse:
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"(#138000) Call not found","type":"OAuthException","code":138000,"fbtrace_id":"ArefuseTEST"}}`)
	case graphSlow:
		select {
		case <-r.Context().Done():
			return
		case <-time.After(slowGraphDelay):
		}
		g.markAnswered(action, body)
		io.WriteString(w, `{"success":true}`)
	default:
		g.markAnswered(action, body)
		io.WriteString(w, `{"success":true}`)
	}
}

// markAnswered records when the success answer of an action was written.
func (g *faultGraph) markAnswered(action string, body map[string]any) {
	id, _ := body["call_id"].(string)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.answered[action+" "+id] = time.Now()
}

// answeredAt returns when the success answer of action for callID was
// written, or the zero time.
func (g *faultGraph) answeredAt(action, callID string) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.answered[action+" "+callID]
}

// set makes action answer with fault from now on; graphOK clears it.
func (g *faultGraph) set(action string, fault graphFault) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.faults[action] = fault
}

// reset clears every fault.
func (g *faultGraph) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.faults = map[string]graphFault{}
}

// releaseHangs answers every request that hangs now.
func (g *faultGraph) releaseHangs() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.release)
	g.release = make(chan struct{})
}

// expect waits for the next action and checks that it is action for callID.
func (g *faultGraph) expect(t *testing.T, action, callID string, timeout time.Duration) graphAction {
	t.Helper()
	select {
	case a := <-g.notify:
		if a.Body["action"] != action || a.Body["call_id"] != callID {
			t.Fatalf("Graph action %v of %v; want %s of %s", a.Body["action"], a.Body["call_id"], action, callID)
		}
		return a
	case <-time.After(timeout):
		t.Fatalf("no %s of %s within %s", action, callID, timeout)
		return graphAction{}
	}
}

// quiet checks that no Graph action arrives within d.
func (g *faultGraph) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case a := <-g.notify:
		t.Fatalf("unexpected Graph action %v of %v", a.Body["action"], a.Body["call_id"])
	case <-time.After(d):
	}
}

// faultConfig is callConfig's server with the handler's logs in a JSON file,
// so that tests can check what was logged. registry names the test's own
// call registry: handlers share a registry across configs when they serve
// the same phone_number_ids, so an extra name gives each test a fresh one.
func faultConfig(graphURL, botURL, logPath, registry, extra string) string {
	return fmt.Sprintf(`
	{
`+testGlobals+`		log {
			output file %s
			format json
		}
	}
	http://localhost:9080 {
		whatsapp_calls /webhook {
			app_secret %s
			verify_token %s
			access_token %s
			phone_number_ids %s %s
			bot %s
			bot_protocol twilio
			bot_header X-Call-Id {whatsapp.call_id}
			graph_url %s
			udp_port 0
			ice_networks 127.0.0.0/8
			%s
		}
	}`, logPath, testSecret, testToken, testAccess, testPhone, registry, botURL, graphURL, extra)
}

// logEntry is one line of Caddy's JSON log.
type logEntry map[string]any

// waitLog waits up to three seconds for a log line with msg about callID
// and returns it. If there is none, the test fails but goes on, with a nil
// entry, so that the checks that follow still run.
func waitLog(t *testing.T, path, msg, callID string) logEntry {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for line := range bytes.Lines(data) {
			var e logEntry
			if json.Unmarshal(line, &e) == nil && e["msg"] == msg && e["call_id"] == callID {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("no %q log line for %s in the current config's log", msg, callID)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// activeCalls reads the caddy_whatsapp_calls_active gauge from the admin
// endpoint's metrics, without keeping a connection open.
func activeCalls(t *testing.T) float64 {
	t.Helper()
	for line := range strings.Lines(adminMetrics(t)) {
		if v, ok := strings.CutPrefix(line, "caddy_whatsapp_calls_active "); ok {
			var n float64
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("caddy_whatsapp_calls_active %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatal("no caddy_whatsapp_calls_active in /metrics")
	return 0
}

// waitActive waits up to five seconds for the active calls gauge to come
// back to want: every call has left the registry.
func waitActive(t *testing.T, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := activeCalls(t)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("caddy_whatsapp_calls_active = %v after the calls ended; want %v", got, want)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newLiteCaller returns a Meta-faithful caller (ICE-lite, Meta's offer; see
// internal/caller) closed at cleanup.
func newLiteCaller(t *testing.T, onAudio *callerAudio) *caller.Caller {
	t.Helper()
	cfg := caller.Config{}
	if onAudio != nil {
		cfg.OnAudio = onAudio.onAudio
	}
	c, err := caller.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// answerCall plays the caller's part once pre_accept arrived: apply the
// answer and wait for media.
func answerCall(t *testing.T, c *caller.Caller, pre graphAction) {
	t.Helper()
	applyAnswer(t, c, pre)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("caller never connected: %v", err)
	}
}

// applyAnswer gives the caller the answer of a pre_accept without waiting
// for media. A call whose accept fails at once is torn down by the server
// as soon as its own side connects, which can be before the caller's side
// (the DTLS server) has seen the handshake finish.
func applyAnswer(t *testing.T, c *caller.Caller, pre graphAction) {
	t.Helper()
	session, _ := pre.Body["session"].(map[string]any)
	sdp, _ := session["sdp"].(string)
	if err := c.SetAnswer(sdp); err != nil {
		t.Fatal(err)
	}
}

// connected places a call and takes it to answered: connect webhook,
// pre_accept, media, accept.
func connected(t *testing.T, g *faultGraph, id string, audio *callerAudio) *caller.Caller {
	t.Helper()
	c := newLiteCaller(t, audio)
	signedPost(t, faultWebhook, connectWebhook(id, c.Offer()))
	answerCall(t, c, g.expect(t, "pre_accept", id, 5*time.Second))
	g.expect(t, "accept", id, 5*time.Second)
	return c
}

// TestFaultGraph fails each Graph call action in turn, with a 500 or a hang,
// and checks that the call is rejected or ended, the bot is closed, the
// failure is logged, and later calls still work.
func TestFaultGraph(t *testing.T) {
	graph := newFaultGraph(t)
	bot := newWSBot(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	const answerTimeout = 1500 * time.Millisecond
	const acceptTimeout = time.Second
	tester := caddytest.NewTester(t)
	tester.InitServer(faultConfig(graph.URL, bot.wsURL(), logPath, "fault-graph", "answer_timeout 1500ms\naccept_timeout 1s\nbot_timeout 1s"), "caddyfile")
	active := activeCalls(t)
	defer waitActive(t, active)

	// rejected checks that the call ends with reject toward Meta and its
	// bot connection closed, and nothing more.
	rejected := func(t *testing.T, id string, within time.Duration) {
		t.Helper()
		graph.expect(t, "reject", id, within)
		bc := bot.conn(t, id)
		bc.waitDone(t, 3*time.Second)
		if evs := bc.events(); len(evs) == 0 || evs[len(evs)-1] != "stop" {
			t.Errorf("bot's events = %v; want stop last: the bot must learn the call ended", evs)
		}
		graph.quiet(t, 300*time.Millisecond)
	}

	t.Run("pre_accept error rejects", func(t *testing.T) {
		defer graph.reset()
		graph.set("pre_accept", graphError)
		id := "wacid.fault-preaccept-500"
		c := newLiteCaller(t, nil)
		signedPost(t, faultWebhook, connectWebhook(id, c.Offer()))
		graph.expect(t, "pre_accept", id, 5*time.Second)
		rejected(t, id, 3*time.Second)
		e := waitLog(t, logPath, "call ended", id)
		if e != nil && (e["reason"] != "graph_pre_accept" || !strings.Contains(fmt.Sprint(e["error"]), "code=131000")) {
			t.Errorf("call ended log = %v; want reason graph_pre_accept and the Graph error", e)
		}
	})

	t.Run("an offer without opus is rejected as bad_offer", func(t *testing.T) {
		defer graph.reset()
		id := "wacid.fault-no-opus"
		c := newLiteCaller(t, nil)
		// Meta's offer with its Opus replaced by G.722, which we never
		// answer: nothing is pre-accepted and the call is rejected.
		offer := strings.NewReplacer(
			"SAVPF 111 126", "SAVPF 9 126",
			"a=rtpmap:111 opus/48000/2", "a=rtpmap:9 G722/8000",
			"a=rtcp-fb:111 transport-cc", "a=rtcp-fb:9 transport-cc",
			"a=fmtp:111 ", "a=fmtp:9 ",
		).Replace(c.Offer())
		if strings.Contains(strings.ToLower(offer), "opus") {
			t.Fatalf("offer still has opus:\n%s", offer)
		}
		signedPost(t, faultWebhook, connectWebhook(id, offer))
		graph.expect(t, "reject", id, 5*time.Second)
		e := waitLog(t, logPath, "call ended", id)
		if e != nil && (e["result"] != "rejected" || e["reason"] != "bad_offer") {
			t.Errorf("call ended log = %v; want result rejected, reason bad_offer", e)
		}
		graph.quiet(t, 300*time.Millisecond)
	})

	t.Run("pre_accept hang is cut at answer_timeout", func(t *testing.T) {
		defer graph.reset()
		graph.set("pre_accept", graphHang)
		id := "wacid.fault-preaccept-hang"
		c := newLiteCaller(t, nil)
		start := time.Now()
		signedPost(t, faultWebhook, connectWebhook(id, c.Offer()))
		graph.expect(t, "pre_accept", id, 5*time.Second)
		rejected(t, id, answerTimeout+3*time.Second)
		if el := time.Since(start); el < answerTimeout-100*time.Millisecond {
			t.Errorf("rejected %v after connect; want after answer_timeout (%v)", el, answerTimeout)
		}
	})

	// ended checks that the call ends with terminate toward Meta (the call
	// may already be accepted) and its bot connection closed, and nothing
	// more: no reject.
	ended := func(t *testing.T, id string, within time.Duration) {
		t.Helper()
		graph.expect(t, "terminate", id, within)
		bc := bot.conn(t, id)
		bc.waitDone(t, 3*time.Second)
		if evs := bc.events(); len(evs) == 0 || evs[len(evs)-1] != "stop" {
			t.Errorf("bot's events = %v; want stop last: the bot must learn the call ended", evs)
		}
		graph.quiet(t, 300*time.Millisecond)
	}

	t.Run("accept refused with a 4xx rejects and closes the media", func(t *testing.T) {
		defer graph.reset()
		graph.set("accept", graphRefuse)
		id := "wacid.fault-accept-400"
		c := newLiteCaller(t, nil)
		signedPost(t, faultWebhook, connectWebhook(id, c.Offer()))
		applyAnswer(t, c, graph.expect(t, "pre_accept", id, 5*time.Second))
		graph.expect(t, "accept", id, 5*time.Second)
		rejected(t, id, 3*time.Second)
		select {
		case <-c.Failed():
		case <-time.After(5 * time.Second):
			t.Error("the caller's media is still up after the call was rejected")
		}
		e := waitLog(t, logPath, "call ended", id)
		if e != nil && (e["result"] != "rejected" || e["reason"] != "graph_accept") {
			t.Errorf("call ended log = %v; want result rejected, reason graph_accept", e)
		}
	})

	t.Run("accept 5xx terminates: Meta may have accepted", func(t *testing.T) {
		defer graph.reset()
		graph.set("accept", graphError)
		id := "wacid.fault-accept-500"
		c := newLiteCaller(t, nil)
		signedPost(t, faultWebhook, connectWebhook(id, c.Offer()))
		applyAnswer(t, c, graph.expect(t, "pre_accept", id, 5*time.Second))
		graph.expect(t, "accept", id, 5*time.Second)
		ended(t, id, 3*time.Second)
		select {
		case <-c.Failed():
		case <-time.After(5 * time.Second):
			t.Error("the caller's media is still up after the call was terminated")
		}
		e := waitLog(t, logPath, "call ended", id)
		if e != nil && (e["result"] != "failed" || e["reason"] != "graph_accept") {
			t.Errorf("call ended log = %v; want result failed, reason graph_accept", e)
		}
	})

	t.Run("accept hang is cut at accept_timeout and terminated", func(t *testing.T) {
		defer graph.reset()
		graph.set("accept", graphHang)
		id := "wacid.fault-accept-hang"
		c := newLiteCaller(t, nil)
		signedPost(t, faultWebhook, connectWebhook(id, c.Offer()))
		answerCall(t, c, graph.expect(t, "pre_accept", id, 5*time.Second))
		graph.expect(t, "accept", id, 5*time.Second)
		sent := time.Now()
		ended(t, id, acceptTimeout+3*time.Second)
		if el := time.Since(sent); el < acceptTimeout-100*time.Millisecond {
			t.Errorf("terminated %v after accept was sent; want after accept_timeout (%v)", el, acceptTimeout)
		}
	})

	t.Run("reject error is logged", func(t *testing.T) {
		defer graph.reset()
		graph.set("pre_accept", graphError)
		graph.set("reject", graphError)
		id := "wacid.fault-reject-500"
		c := newLiteCaller(t, nil)
		signedPost(t, faultWebhook, connectWebhook(id, c.Offer()))
		graph.expect(t, "pre_accept", id, 5*time.Second)
		rejected(t, id, 3*time.Second)
		e := waitLog(t, logPath, "call ended", id)
		if e != nil && !strings.Contains(fmt.Sprint(e["reject_error"]), "code=131000") {
			t.Errorf("call ended log = %v; want reject_error with the Graph error", e)
		}
	})

	t.Run("terminate error after bot hang-up is logged and the next call works", func(t *testing.T) {
		defer graph.reset()
		graph.set("terminate", graphError)
		id := "wacid.fault-terminate-500"
		connected(t, graph, id, nil)
		bc := bot.conn(t, id)
		bc.hangup()
		graph.expect(t, "terminate", id, 5*time.Second)
		bc.waitDone(t, 3*time.Second)
		e := waitLog(t, logPath, "terminate toward meta failed", id)
		if e != nil && !strings.Contains(fmt.Sprint(e["error"]), "code=131000") {
			t.Errorf("terminate log = %v; want the Graph error", e)
		}
		waitLog(t, logPath, "call ended", id) // the call goroutine went on to the end

		graph.reset()
		next := "wacid.fault-terminate-500-next"
		audio := newCallerAudio(t)
		c := connected(t, graph, next, audio)
		speak(t, c, 1000, 500*time.Millisecond)
		if got := bot.conn(t, next).mediaCount(); got < 15 {
			t.Errorf("bot got %d media messages in 0.5 s of the next call; want about 25", got)
		}
		bot.conn(t, next).hangup()
		graph.expect(t, "terminate", next, 5*time.Second)
	})

	t.Run("terminate hang holds up no other call", func(t *testing.T) {
		defer graph.reset()
		graph.set("terminate", graphHang)
		id := "wacid.fault-terminate-hang"
		connected(t, graph, id, nil)
		bot.conn(t, id).hangup()
		graph.expect(t, "terminate", id, 5*time.Second)
		bot.conn(t, id).waitDone(t, 3*time.Second)

		// While that terminate hangs, a new call is answered and ended.
		graph.set("terminate", graphOK)
		next := "wacid.fault-terminate-hang-next"
		connected(t, graph, next, nil)
		bot.conn(t, next).hangup()
		graph.expect(t, "terminate", next, 5*time.Second)

		graph.releaseHangs()
		waitLog(t, logPath, "call ended", id)
	})
}

// TestFaultBot has bots misbehave during answered calls: garbage must be
// ignored while audio flows both ways; a message over the read limit, a TCP
// close in the middle of a frame and a protocol violation must each end the
// call with terminate toward Meta and close the bot's socket.
func TestFaultBot(t *testing.T) {
	graph := newFaultGraph(t)
	bot := newWSBot(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	tester := caddytest.NewTester(t)
	tester.InitServer(faultConfig(graph.URL, bot.wsURL(), logPath, "fault-bot", "answer_timeout 3s"), "caddyfile")
	active := activeCalls(t)
	defer waitActive(t, active)

	t.Run("garbage is ignored and audio flows", func(t *testing.T) {
		id := "wacid.fault-bot-garbage"
		audio := newCallerAudio(t)
		c := connected(t, graph, id, audio)
		bc := bot.conn(t, id)
		garbage := []string{
			"not json", `{"event":`, `[]`, `null`, `{"event":123}`,
			`{"event":"media","media":{"payload":12345}}`,
			`{"event":"media","media":{"payload":"!!! not base64 !!!"}}`,
			`{"event":"media","media":"oops"}`,
			`{"event":"unknownEvent","x":[1,{"y":2}]}`,
			`{"event":"stop"}`,
			"\xff\xfe\x00 not utf-8",
			strings.Repeat("[", 100000),
		}
		for _, g := range garbage {
			bc.writeFrame(t, wsText, []byte(g))
		}
		bc.writeFrame(t, wsBinary, bytes.Repeat([]byte{0xA5}, 333))
		bc.writeFrame(t, wsPing, []byte("are you there"))

		before := bc.mediaCount()
		speak(t, c, 1000, time.Second)
		if got := bc.mediaCount() - before; got < 40 {
			t.Errorf("bot got %d media messages in 1 s after garbage; want about 50", got)
		}
		if !bc.ponged() {
			t.Error("bot's ping was not answered")
		}
		heard := audio.samples()
		if len(heard) < 48000/2 {
			t.Fatalf("caller decoded %d samples; want at least 0.5 s", len(heard))
		}
		tail := heard[len(heard)/2:]
		if a := tone.Amplitude(tail, 48000, 600); a < 3000 {
			t.Errorf("caller heard the bot's 600 Hz at amplitude %.0f after garbage; want ≥ 3000", a)
		}
		graph.quiet(t, 100*time.Millisecond) // the call is still up
		bc.hangup()
		graph.expect(t, "terminate", id, 5*time.Second)
		bc.waitDone(t, 3*time.Second)
	})

	tests := []struct {
		name      string
		breakIt   func(*testing.T, *wsConn)
		wantClose int    // close code the bot must see; 0: none
		endedBy   string // the call ended log's ended_by; "" means any but unknown
	}{
		{
			name: "message over 1 MiB",
			breakIt: func(t *testing.T, bc *wsConn) {
				big := append([]byte(`{"event":"media","media":{"payload":"`), bytes.Repeat([]byte("A"), 3<<19)...)
				bc.writeFrame(t, wsText, append(big, `"}}`...))
			},
			wantClose: 1009,
		},
		{
			name: "tcp close in the middle of a frame",
			breakIt: func(t *testing.T, bc *wsConn) {
				bc.writeRaw(t, []byte{0x81, 126, 0x03, 0xE8, '{', '"', 'e', 'v'})
				bc.closeTCP()
			},
			endedBy: "bot",
		},
		{
			name:      "reserved opcode",
			breakIt:   func(t *testing.T, bc *wsConn) { bc.writeRaw(t, []byte{0x83, 0x00}) },
			wantClose: 1002,
			endedBy:   "bot",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("wacid.fault-bot-break-%d", i)
			c := connected(t, graph, id, nil)
			bc := bot.conn(t, id)
			speak(t, c, 1000, 200*time.Millisecond)
			tt.breakIt(t, bc)
			graph.expect(t, "terminate", id, 5*time.Second)
			bc.waitDone(t, 3*time.Second)
			if tt.wantClose != 0 {
				if got := bc.closeCode(); got != tt.wantClose {
					t.Errorf("bot got close code %d; want %d", got, tt.wantClose)
				}
			}
			e := waitLog(t, logPath, "call ended", id)
			switch got := e["ended_by"]; {
			case e == nil:
			case tt.endedBy == "" && got == "unknown":
				t.Errorf("call ended log ended_by = %v; want the bot failure (media.ErrBotFailed) attributed", got)
			case tt.endedBy != "" && got != tt.endedBy:
				t.Errorf("call ended log ended_by = %v; want %s", got, tt.endedBy)
			}
			select {
			case <-c.Failed():
			case <-time.After(5 * time.Second):
				t.Error("the caller's media is still up after the call ended")
			}
		})
	}
}

// TestFaultCallerGone has the caller drop its media without a terminate
// webhook: the call must end within the disconnect grace with terminate
// toward Meta, and the bot must get stop and a closed socket.
func TestFaultCallerGone(t *testing.T) {
	graph := newFaultGraph(t)
	bot := newWSBot(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	tester := caddytest.NewTester(t)
	tester.InitServer(faultConfig(graph.URL, bot.wsURL(), logPath, "fault-caller", ""), "caddyfile")
	active := activeCalls(t)
	defer waitActive(t, active)

	id := "wacid.fault-caller-gone"
	c := connected(t, graph, id, nil)
	speak(t, c, 1000, 300*time.Millisecond)
	c.Close()
	graph.expect(t, "terminate", id, 8*time.Second) // the default grace is 5 s
	bc := bot.conn(t, id)
	bc.waitDone(t, 3*time.Second)
	if ev := bc.events(); len(ev) == 0 || ev[len(ev)-1] != "stop" {
		t.Errorf("bot's last events %v; want stop", ev[max(0, len(ev)-3):])
	}
	if e := waitLog(t, logPath, "call ended", id); e != nil && e["ended_by"] != "media" {
		t.Errorf("call ended log ended_by = %v; want media", e["ended_by"])
	}
}

// TestFaultLogsAfterReload checks that a call started after a config reload
// logs through the new config's logger: here, to the new log file. The two
// configs share one call registry (the same phone_number_ids), as a reload
// does.
func TestFaultLogsAfterReload(t *testing.T) {
	graph := newFaultGraph(t)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.log"), filepath.Join(dir, "second.log")
	tester := caddytest.NewTester(t)
	tester.InitServer(faultConfig(graph.URL, "ws://127.0.0.1:1/bot", first, "fault-reload", "bot_timeout 200ms"), "caddyfile")
	tester.InitServer(faultConfig(graph.URL, "ws://127.0.0.1:1/bot", second, "fault-reload", "bot_timeout 200ms"), "caddyfile")

	id := "wacid.fault-log-after-reload"
	signedPost(t, faultWebhook, connectPayload(id)) // an unusable offer: rejected at once
	graph.expect(t, "reject", id, 5*time.Second)
	waitLog(t, second, "call ended", id)
}

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	wsText   = 0x1
	wsBinary = 0x2
	wsClose  = 0x8
	wsPing   = 0x9
	wsPong   = 0xA
)

// wsBot is a Twilio-dialect bot written on raw sockets, so that it can send
// what no WebSocket library would. Each connection plays a 600 Hz tone,
// counts the media messages it gets and records the other events.
type wsBot struct {
	*httptest.Server

	mu    sync.Mutex
	conns map[string]*wsConn // by X-Call-Id
	added chan struct{}      // size 1: a connection was added
	wg    sync.WaitGroup
}

func newWSBot(t *testing.T) *wsBot {
	t.Helper()
	b := &wsBot{conns: map[string]*wsConn{}, added: make(chan struct{}, 1)}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(func() {
		b.mu.Lock()
		for _, c := range b.conns {
			c.closeTCP()
		}
		b.mu.Unlock()
		b.Close()
		b.wg.Wait()
	})
	return b
}

func (b *wsBot) wsURL() string { return "ws" + strings.TrimPrefix(b.URL, "http") }

// conn waits for the connection of call id.
func (b *wsBot) conn(t *testing.T, id string) *wsConn {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		b.mu.Lock()
		c := b.conns[id]
		b.mu.Unlock()
		if c != nil {
			return c
		}
		select {
		case <-b.added:
		case <-deadline:
			t.Fatalf("the bot was never dialed for %s", id)
		}
	}
}

func (b *wsBot) serve(w http.ResponseWriter, r *http.Request) {
	b.wg.Add(1)
	defer b.wg.Done()
	nc, brw, err := upgradeByHand(w, r)
	if err != nil {
		return
	}
	c := &wsConn{nc: nc, stop: make(chan struct{}), done: make(chan struct{})}
	c.closeRecv.Store(-1)
	b.mu.Lock()
	b.conns[r.Header.Get("X-Call-Id")] = c
	b.mu.Unlock()
	select {
	case b.added <- struct{}{}:
	default:
	}
	var speaker sync.WaitGroup
	speaker.Add(1)
	go func() {
		defer speaker.Done()
		c.speak()
	}()
	c.read(brw.Reader)
	c.stopSpeaking()
	speaker.Wait()
	nc.Close()
	close(c.done)
}

// wsConn is one call's bot connection.
type wsConn struct {
	nc       net.Conn
	wmu      sync.Mutex // serializes frames
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{} // closed when the connection is over

	media     atomic.Int64
	closeRecv atomic.Int32 // close code received; -1 none
	pongs     atomic.Int32

	mu  sync.Mutex
	evs []string
}

// speak sends a 600 Hz tone as Twilio media messages every 20 ms.
func (c *wsConn) speak() {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		pcm := tone.Sine(nil, 8000, 600, 8000, i*160, 160)
		payload := base64.StdEncoding.EncodeToString(g711.EncodeUlaw(pcmBytes(pcm)))
		if c.send(wsText, []byte(`{"event":"media","streamSid":"MZ","media":{"payload":"`+payload+`"}}`)) != nil {
			return
		}
	}
}

func (c *wsConn) stopSpeaking() { c.stopOnce.Do(func() { close(c.stop) }) }

// send writes one unmasked frame.
func (c *wsConn) send(op byte, payload []byte) error {
	hdr := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, byte(n))
	case n < 1<<16:
		hdr = append(hdr, 126, byte(n>>8), byte(n))
	default:
		hdr = binary.BigEndian.AppendUint64(append(hdr, 127), uint64(n))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(append(hdr, payload...))
	return err
}

func (c *wsConn) writeFrame(t *testing.T, op byte, payload []byte) {
	t.Helper()
	if err := c.send(op, payload); err != nil {
		t.Fatalf("bot write: %v", err)
	}
}

// writeRaw stops the tone and writes p as it is.
func (c *wsConn) writeRaw(t *testing.T, p []byte) {
	t.Helper()
	c.stopSpeaking()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.nc.Write(p); err != nil {
		t.Fatalf("bot write: %v", err)
	}
}

// hangup ends the call the polite way: a normal close frame.
func (c *wsConn) hangup() {
	c.stopSpeaking()
	_ = c.send(wsClose, []byte{0x03, 0xE8})
}

// closeTCP drops the connection without a close frame.
func (c *wsConn) closeTCP() {
	c.stopSpeaking()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.Close()
}

// read reads the session's masked frames until the connection ends.
func (c *wsConn) read(r *bufio.Reader) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return
		}
		fin, op, n := h[0]&0x80 != 0, h[0]&0x0F, uint64(h[1]&0x7F)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(r, ext[:]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(r, ext[:]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(ext[:])
		}
		if h[1]&0x80 == 0 || n > 1<<20 {
			return // clients must mask; nothing we send is that big
		}
		var mask [4]byte
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return
		}
		for i := range p {
			p[i] ^= mask[i%4]
		}
		switch op {
		case wsClose:
			code := int32(1005)
			if len(p) >= 2 {
				code = int32(binary.BigEndian.Uint16(p))
			}
			c.closeRecv.CompareAndSwap(-1, code)
			c.stopSpeaking()
			_ = c.send(wsClose, p[:min(len(p), 2)])
			return
		case wsPong:
			c.pongs.Add(1)
			continue
		case wsPing:
			_ = c.send(wsPong, p)
			continue
		}
		msg = append(msg, p...)
		if !fin {
			continue
		}
		var m struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(msg, &m) == nil {
			if m.Event == "media" {
				c.media.Add(1)
			} else {
				c.mu.Lock()
				c.evs = append(c.evs, m.Event)
				c.mu.Unlock()
			}
		}
		msg = msg[:0]
	}
}

func (c *wsConn) mediaCount() int64 { return c.media.Load() }
func (c *wsConn) closeCode() int    { return int(c.closeRecv.Load()) }
func (c *wsConn) ponged() bool      { return c.pongs.Load() > 0 }

func (c *wsConn) events() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.evs...)
}

// waitDone waits for the connection to end.
func (c *wsConn) waitDone(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("bot connection still open %v later", timeout)
	}
}

// upgradeByHand answers a WebSocket upgrade (RFC 6455 section 4.2.2) and
// returns the hijacked connection.
func upgradeByHand(w http.ResponseWriter, r *http.Request) (net.Conn, *bufio.ReadWriter, error) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "not a websocket upgrade", http.StatusBadRequest)
		return nil, nil, errors.New("not a websocket upgrade")
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]))
	if err := brw.Flush(); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, brw, nil
}
