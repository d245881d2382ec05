package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/tone"
)

// nodeBot is integration/interop/bot.mjs: the OpenAI Agents SDK's Twilio
// transport against a fake Realtime API that streams at 10x real time. It
// reports what it sees as JSON lines.
type nodeBot struct {
	port  int
	stdin io.WriteCloser

	mu     sync.Mutex
	events []nodeEvent
	wake   chan struct{}
}

// nodeEvent is one line the node bot reported.
type nodeEvent struct {
	Event      string         `json:"event"`
	At         int64          `json:"at"` // wall clock, ms since the Unix epoch
	Type       string         `json:"type"`
	Digit      string         `json:"digit"`
	Port       int            `json:"port"`
	RMS        float64        `json:"rms"`
	AudioEndMs float64        `json:"audio_end_ms"`
	Error      string         `json:"error"`
	Format     map[string]any `json:"mediaFormat"`
}

func (e nodeEvent) time() time.Time { return time.UnixMilli(e.At) }

// startNodeBot runs the node bot, or skips the test when Node or the
// folder's node_modules are missing (.ci/run installs them with npm ci).
func startNodeBot(t *testing.T) *nodeBot {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the interop test needs Node 20 (.ci/run installs it)")
	}
	dir, err := filepath.Abs("interop")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@openai", "agents-extensions")); err != nil {
		t.Skip("integration/interop/node_modules is missing: run `npm ci` in integration/interop (.ci/run does)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, "bot.mjs")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &nodeBot{stdin: stdin, wake: make(chan struct{}, 1)}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e nodeEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				continue
			}
			b.mu.Lock()
			b.events = append(b.events, e)
			b.mu.Unlock()
			select {
			case b.wake <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cancel()
			<-done
		}
		cancel()
		<-read
		if t.Failed() {
			b.mu.Lock()
			for _, e := range b.events {
				t.Logf("node bot: %+v", e)
			}
			b.mu.Unlock()
		}
	})
	b.port = b.wait(t, "the node bot listening", 15*time.Second, func(e nodeEvent) bool { return e.Event == "listening" }).Port
	return b
}

// wait returns the first event (from the start) that match accepts; match
// runs with b.mu held.
func (b *nodeBot) wait(t *testing.T, what string, timeout time.Duration, match func(nodeEvent) bool) nodeEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		for _, e := range b.events {
			if match(e) {
				b.mu.Unlock()
				return e
			}
		}
		b.mu.Unlock()
		select {
		case <-b.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("node bot: no %s within %v", what, timeout)
		}
	}
}

// waitCount waits until at least n events match.
func (b *nodeBot) waitCount(t *testing.T, what string, timeout time.Duration, match func(nodeEvent) bool, n int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for b.count(match) < n {
		if time.Now().After(deadline) {
			t.Fatalf("node bot: no %s within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// count returns how many events match.
func (b *nodeBot) count(match func(nodeEvent) bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, e := range b.events {
		if match(e) {
			n++
		}
	}
	return n
}

func (b *nodeBot) send(t *testing.T, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(b.stdin, line); err != nil {
		t.Fatal(err)
	}
}

func is(event, typ string) func(nodeEvent) bool {
	return func(e nodeEvent) bool { return e.Event == event && (typ == "" || e.Type == typ) }
}

// TestInteropOpenAIAgentsTwilio runs a real third-party bot, the OpenAI
// Agents SDK's TwilioRealtimeTransportLayer, against Caddy with the module:
// audio both ways, marks, a clear during a 20 s answer streamed at 10x real
// time (the caller is quiet within 100 ms), DTMF, and hang-up both ways.
func TestInteropOpenAIAgentsTwilio(t *testing.T) {
	bot := startNodeBot(t)
	graph := newFakeGraph(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(callConfig(graph.URL, fmt.Sprintf("ws://127.0.0.1:%d/media", bot.port), "twilio", ""), "caddyfile")
	const webhook = "http://localhost:9080/webhook"

	call := placeCall(t, webhook, graph, "wacid.interop-1")
	stop := make(chan struct{})
	spoke := make(chan struct{})
	go func() {
		defer close(spoke)
		speakUntil(call.caller, 1000, stop)
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-spoke
	}()

	start := bot.wait(t, "start", 10*time.Second, is("twilio", "start"))
	if f := start.Format; f["encoding"] != "audio/x-mulaw" || f["sampleRate"] != float64(8000) || f["channels"] != float64(1) {
		t.Errorf("start.mediaFormat = %v; want the SDK's exact mu-law 8000 1", f)
	}
	if e := bot.wait(t, "the SDK connected", 10*time.Second, func(e nodeEvent) bool {
		return e.Event == "sdk_connected" || e.Event == "sdk_error"
	}); e.Event == "sdk_error" {
		t.Fatalf("the SDK failed: %s", e.Error)
	}

	// Caller to bot: the fake Realtime API hears the caller's tone through
	// the SDK, and starts its answer.
	heard := bot.wait(t, "the caller's audio at the Realtime API", 10*time.Second, is("caller_audio", ""))
	if heard.RMS < 3000 {
		t.Errorf("Realtime API heard the caller at RMS %.0f; want the 1 kHz tone (about 7000)", heard.RMS)
	}

	// Bot to caller: the answer plays. Wait for one second of it, then
	// the whole 20 s answer must have been accepted by the module (the SDK
	// wrote it all at 10x real time).
	answerAt := bot.wait(t, "the answer", 10*time.Second, is("answer_started", "")).time()
	waitCaller(t, call, "one second of the answer", func(pcm []int16, _ []timedPacket) bool {
		return toneMs(pcm[max(0, len(pcm)-48000):], 600) >= 900
	})
	bot.wait(t, "the whole answer sent", 5*time.Second, is("answer_sent", ""))
	if el := time.Since(answerAt); el > 4*time.Second {
		t.Errorf("20 s answer took %v to reach the module; want it accepted at the SDK's 10x pace", el)
	}
	echoedBefore := bot.count(is("twilio", "mark"))
	if echoedBefore == 0 {
		t.Error("no mark echoed while the answer played; want the played marks echoed")
	}

	// Barge-in: the fake Realtime API reports speech; the SDK sends clear.
	bot.send(t, "barge")
	clearAt := bot.wait(t, "the SDK's clear", 5*time.Second, is("sent", "clear")).time()
	time.Sleep(500 * time.Millisecond)
	pcm, packets := call.audio.timed()
	loudAfter := 0
	var lastLoud time.Time
	for _, p := range packets {
		if tone.Amplitude(pcm[p.off:p.off+p.n], 48000, 600) <= 1500 {
			continue
		}
		lastLoud = p.at
		if p.at.After(clearAt.Add(100 * time.Millisecond)) {
			loudAfter++
		}
	}
	t.Logf("clear sent %v after the answer started (20 s of it queued); last answer packet reached the caller %v after the clear",
		clearAt.Sub(answerAt).Round(time.Millisecond), lastLoud.Sub(clearAt).Round(time.Millisecond))
	if loudAfter > 0 {
		t.Errorf("caller heard %d packets of the answer more than 100 ms after the clear; want none", loudAfter)
	}
	// Every mark the SDK sent is echoed: the played ones before the clear,
	// the pending ones at the clear.
	sentMarks := bot.count(is("sent", "mark"))
	if echoed := bot.count(is("twilio", "mark")); echoed != sentMarks || sentMarks < 50 {
		t.Errorf("module echoed %d of the SDK's %d marks; want all (at least 50: one per 100 ms delta)", echoed, sentMarks)
	}
	trunc := bot.wait(t, "the SDK's truncate", 5*time.Second, is("truncate", ""))
	played := clearAt.Sub(answerAt).Milliseconds()
	if trunc.AudioEndMs < 500 || trunc.AudioEndMs > float64(played)+200 {
		t.Errorf("SDK truncated the answer at %.0f ms; want about what the caller heard (< %d ms), from the echoed marks", trunc.AudioEndMs, played)
	}

	// DTMF, then "#" makes the bot hang up: Meta must get terminate.
	close(stop)
	<-spoke
	for _, d := range "5#" {
		if err := call.caller.SendDTMF(context.Background(), byte(d), 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if e := bot.wait(t, "the DTMF", 5*time.Second, is("twilio", "dtmf")); e.Digit != "5" {
		t.Errorf("bot got DTMF %q first; want 5", e.Digit)
	}
	bot.wait(t, "the bot hanging up", 5*time.Second, is("hanging_up", ""))
	term := graph.wait(t, 5*time.Second)
	if term.Body["action"] != "terminate" || term.Body["call_id"] != call.id {
		t.Fatalf("Graph action after the bot hung up = %v; want terminate of %s", term.Body, call.id)
	}

	// Second call: Meta hangs up; the bot gets stop and its socket closes.
	call2 := placeCall(t, webhook, graph, "wacid.interop-2")
	bot.waitCount(t, "the second start", 10*time.Second, is("twilio", "start"), 2)
	speak(t, call2.caller, 1000, 300*time.Millisecond)
	closedBefore := bot.count(is("twilio_closed", ""))
	signedPost(t, webhook, terminateWebhook(call2.id))
	bot.waitCount(t, "the bot's socket closed after Meta's terminate", 5*time.Second, is("twilio_closed", ""), closedBefore+1)
	if n := bot.count(is("twilio", "stop")); n < 1 {
		t.Errorf("bot got %d stop events; want stop before the close", n)
	}
	graph.none(t, 300*time.Millisecond, "after Meta's own terminate; want none")
}

// waitCaller polls the caller's audio until cond holds (10 s at most).
func waitCaller(t *testing.T, c *testCall, what string, cond func([]int16, []timedPacket) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond(c.audio.timed()) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("caller: no %s within 10s", what)
}

// toneMs is how many ms of pcm (48 kHz) carry freq, in 20 ms frames.
func toneMs(pcm []int16, freq float64) int {
	ms := 0
	for off := 0; off+960 <= len(pcm); off += 960 {
		if tone.Amplitude(pcm[off:off+960], 48000, freq) > 3000 {
			ms += 20
		}
	}
	return ms
}
