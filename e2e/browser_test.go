package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/chromedp/chromedp"

	_ "github.com/whatsappcalls/caddy-whatsapp-calls"
	"github.com/whatsappcalls/caddy-whatsapp-calls/simulator"
)

var screenshotPath = flag.String("screenshot", "", "TestBrowserCall writes a PNG of the page mid-call to this path")

// pageState mirrors the page's window.simState.
type pageState struct {
	State           string   `json:"state"`
	Reason          string   `json:"reason"`
	By              string   `json:"by"`
	States          []string `json:"states"`
	CallID          string   `json:"callId"`
	MicLevel        float64  `json:"micLevel"`
	BotLevel        float64  `json:"botLevel"`
	BotPeakHz       float64  `json:"botPeakHz"`
	BotEnergy       float64  `json:"botEnergy"`
	PacketsReceived int      `json:"packetsReceived"`
	PacketsSent     int      `json:"packetsSent"`
	DTMFSent        string   `json:"dtmfSent"`
	CanInsertDTMF   bool     `json:"canInsertDTMF"`
	PCState         string   `json:"pcState"`
	Error           string   `json:"error"`
}

// toneHz is the frequency the fake microphone plays and the bot echoes.
const toneHz = 1000

// TestBrowserCall places real calls from Chromium through the simulator
// page to whatsapp_calls and the echo bot, all in one Caddy: it checks that
// the caller hears the echo of its own tone, that keypad presses reach the
// bot, that hanging up on the page reaches the bot as stop, and that the
// bot's hang-up (its hangup_digit) reaches the page.
func TestBrowserCall(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	chromium := findChromium()
	if chromium == "" {
		t.Skip("no chromium found: `apt-get install -y chromium` enables this test")
	}
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	wav := filepath.Join(dir, "mic.wav")
	if err := os.WriteFile(wav, toneWAV(48000, 500*time.Millisecond, 4*time.Second, toneHz), 0o600); err != nil {
		t.Fatal(err)
	}
	base := startCaddy(t, dir)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), chromeOptions(chromium, wav, filepath.Join(dir, "chrome"))...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelCtx()
	// The first action starts the browser: its context has no timeout.
	run(t, ctx, "open the page",
		chromedp.Navigate(base+"/?processing=off"),
		chromedp.WaitVisible(chromedp.CSS("#call")),
		chromedp.WaitReady(chromedp.CSS(`#caller:not(:empty)`)))

	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	// Call 1: echo, keypad, caller hangs up.
	run(t, ctx, "place call 1", chromedp.Click(chromedp.CSS("#call")))
	st := waitPage(t, ctx, "call 1 accepted", func(s pageState) bool { return s.State == simulator.StateAccepted })
	callID := st.CallID
	st = waitPage(t, ctx, "the echo of the caller's tone", func(s pageState) bool {
		return s.BotLevel > 0.01 && math.Abs(s.BotPeakHz-toneHz) < 50
	})
	t.Logf("echo heard: level %.3f at %.0f Hz, energy %.3f, %d packets", st.BotLevel, st.BotPeakHz, st.BotEnergy, st.PacketsReceived)
	if !st.CanInsertDTMF {
		t.Fatalf("the page cannot send DTMF: the answer lacks telephone-event (state %+v)", st)
	}
	for _, key := range []string{"#key-1", "#key-2", "#key-3"} {
		run(t, ctx, "press "+key, chromedp.Click(chromedp.CSS(key)))
	}
	rec := waitBot(t, base, callID, func(r simulator.CallRecord) bool { return r.Digits == "123" })
	if rec.LoudFramesIn == 0 || rec.FramesOut == 0 {
		t.Errorf("bot record %+v: want loud frames in and echo frames out", rec)
	}
	if *screenshotPath != "" {
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(*screenshotPath, png, 0o644); err != nil {
			t.Errorf("write screenshot: %v", err)
		}
	}
	run(t, ctx, "hang up call 1", chromedp.Click(chromedp.CSS("#hangup")))
	st = waitPage(t, ctx, "call 1 ended", func(s pageState) bool { return s.State == simulator.StateEnded })
	if st.Reason != simulator.ReasonCallerHungUp || st.By != "caller" {
		t.Errorf("call 1 ended with %q by %q; want %q by caller", st.Reason, st.By, simulator.ReasonCallerHungUp)
	}
	rec = waitBot(t, base, callID, func(r simulator.CallRecord) bool { return !r.Active })
	if !rec.Stopped || rec.EndedBy != "peer" {
		t.Errorf("bot after the caller hung up: stopped %v, ended by %q; want stop then a close by whatsapp_calls", rec.Stopped, rec.EndedBy)
	}
	info := simCall(t, base, callID)
	if got := actionNames(info); got != "pre_accept accept" {
		t.Errorf("Graph actions of call 1 = %q; want %q", got, "pre_accept accept")
	}
	if n := len(info.Webhooks); n != 2 || info.Webhooks[1].Event != "terminate" || info.Webhooks[1].HTTPStatus != http.StatusOK {
		t.Errorf("webhooks of call 1 = %+v; want connect and terminate, both acknowledged", info.Webhooks)
	}

	// Call 2: the bot hangs up when the caller presses *.
	run(t, ctx, "place call 2", chromedp.Click(chromedp.CSS("#call")))
	st = waitPage(t, ctx, "call 2 accepted", func(s pageState) bool {
		return s.State == simulator.StateAccepted && s.CallID != callID && s.CanInsertDTMF
	})
	callID2 := st.CallID
	run(t, ctx, "press *", chromedp.Click(chromedp.CSS("#key-star")))
	st = waitPage(t, ctx, "call 2 ended by the business", func(s pageState) bool { return s.State == simulator.StateEnded })
	if st.Reason != simulator.ReasonBusinessTerminated || st.By != "business" {
		t.Errorf("call 2 ended with %q by %q; want %q by business", st.Reason, st.By, simulator.ReasonBusinessTerminated)
	}
	reasonText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#reason")))
	if err != nil {
		t.Fatalf("read #reason: %v", err)
	}
	if reasonText != "the business hung up" {
		t.Errorf("#reason = %q; want %q", reasonText, "the business hung up")
	}
	rec = waitBot(t, base, callID2, func(r simulator.CallRecord) bool { return !r.Active })
	if rec.EndedBy != "hangup_digit" || rec.Digits != "*" {
		t.Errorf("bot record of call 2 = %+v; want ended by hangup_digit after *", rec)
	}
	if got := actionNames(simCall(t, base, callID2)); got != "pre_accept accept terminate" {
		t.Errorf("Graph actions of call 2 = %q; want %q", got, "pre_accept accept terminate")
	}

	// Call 3: the business calls the page through the control API; the
	// page rings, answers, hears the echo, and the business hangs up.
	callID3 := placeBusinessCall(t, base)
	st = waitPage(t, ctx, "call 3 rings on the page", func(s pageState) bool {
		return s.State == simulator.StateIncoming && s.CallID == callID3
	})
	run(t, ctx, "answer call 3", chromedp.Click(chromedp.CSS("#answer")))
	st = waitPage(t, ctx, "call 3 accepted", func(s pageState) bool { return s.State == simulator.StateAccepted })
	st = waitPage(t, ctx, "the echo in call 3", func(s pageState) bool {
		return s.BotLevel > 0.01 && math.Abs(s.BotPeakHz-toneHz) < 50
	})
	t.Logf("business-initiated call: echo heard at %.0f Hz, %d packets", st.BotPeakHz, st.PacketsReceived)
	controlAPI(t, http.MethodDelete, base+"/control/calls/"+callID3, "", http.StatusOK)
	st = waitPage(t, ctx, "call 3 ended by the business", func(s pageState) bool { return s.State == simulator.StateEnded })
	if st.By != "business" {
		t.Errorf("call 3 ended by %q; want business", st.By)
	}

	// Call 4: the page declines.
	callID4 := placeBusinessCall(t, base)
	waitPage(t, ctx, "call 4 rings on the page", func(s pageState) bool {
		return s.State == simulator.StateIncoming && s.CallID == callID4
	})
	run(t, ctx, "decline call 4", chromedp.Click(chromedp.CSS("#decline")))
	st = waitPage(t, ctx, "call 4 declined", func(s pageState) bool { return s.State == simulator.StateRejected })
	if info := simCall(t, base, callID4); len(info.Webhooks) < 3 || info.Webhooks[1].Status != "REJECTED" {
		t.Errorf("webhooks of call 4 = %+v; want RINGING, REJECTED, terminate", info.Webhooks)
	}
}

// placeBusinessCall places a business-initiated call to the simulator's
// user through the control API and returns its call id.
func placeBusinessCall(t *testing.T, base string) string {
	t.Helper()
	body := controlAPI(t, http.MethodPost, base+"/control/calls", `{"to":"15551234567","phone_number_id":"100000000000001"}`, http.StatusCreated)
	id, _ := body["call_id"].(string)
	if id == "" {
		t.Fatalf("POST /control/calls = %v; want a call id", body)
	}
	return id
}

// controlAPI sends one control API request and checks its status.
func controlAPI(t *testing.T, method, url, body string, want int) map[string]any {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer e2e-api-token")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d %v; want %d", method, url, resp.StatusCode, out, want)
	}
	return out
}

func findChromium() string {
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// chromeOptions are the flags of TESTING.md for a headless WebRTC call on
// loopback, plus flags that keep Chromium off the network.
func chromeOptions(path, wav, profile string) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		// chromedp.Headless would add mute-audio; the page must hear the bot.
		chromedp.Flag("headless", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(460, 900),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-audio-capture", wav),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns,Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
	}
}

// startCaddy runs whatsapp_calls, whatsapp_bot and whatsapp_simulator in
// one Caddy on a free loopback port and returns the site's base URL.
func startCaddy(t *testing.T, dir string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	config := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %[2]s
	log {
		level WARN
	}
}

%[1]s {
	bind 127.0.0.1
	handle /webhook {
		whatsapp_calls {
			app_secret   e2e-app-secret
			verify_token e2e-verify-token
			access_token e2e-access-token
			bot          ws://127.0.0.1:%[3]d/bot
			graph_url    %[1]s/graph
			udp_port     0
			ice_networks 127.0.0.0/8
		}
	}
	handle_path /control/* {
		whatsapp_calls_api {
			token e2e-api-token
		}
	}
	handle /bot* {
		whatsapp_bot echo {
			hangup_digit *
			delay 200ms
		}
	}
	handle {
		whatsapp_simulator {
			webhook      %[1]s/webhook
			app_secret   e2e-app-secret
			access_token e2e-access-token
		}
	}
}
`, base, filepath.Join(dir, "storage"), port)
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(caddyfile.Format([]byte(config)), map[string]any{"filename": "e2e.Caddyfile"})
	if err != nil {
		t.Fatalf("adapt Caddyfile: %v", err)
	}
	for _, w := range warnings {
		t.Logf("Caddyfile warning: %s", w.String())
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("load Caddy config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return base
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitPage polls window.simState until cond holds.
func waitPage(t *testing.T, ctx context.Context, what string, cond func(pageState) bool) pageState {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](`window.simState`))
		if err != nil {
			t.Fatalf("waiting for %s: read page state: %v", what, err)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: page state %+v", what, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitBot polls the bot's call records until cond holds for callID.
func waitBot(t *testing.T, base, callID string, cond func(simulator.CallRecord) bool) simulator.CallRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last simulator.CallRecord
	for {
		var body struct {
			Calls []simulator.CallRecord `json:"calls"`
		}
		getJSON(t, base+"/bot/calls?call_id="+callID, &body)
		if n := len(body.Calls); n > 0 {
			last = body.Calls[n-1]
			if cond(last) {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("bot record of %s never met the condition; last %+v", callID, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// simCall returns the simulator's record of a call.
func simCall(t *testing.T, base, callID string) simulator.CallInfo {
	t.Helper()
	var body struct {
		Calls []simulator.CallInfo `json:"calls"`
	}
	getJSON(t, base+"/api/calls", &body)
	for _, c := range body.Calls {
		if c.ID == callID {
			return c
		}
	}
	t.Fatalf("the simulator does not know call %s", callID)
	return simulator.CallInfo{}
}

func actionNames(c simulator.CallInfo) string {
	var names []string
	for _, a := range c.Actions {
		name := a.Action
		if a.Status != http.StatusOK {
			name += fmt.Sprintf("(%d %s)", a.Status, a.Error)
		}
		names = append(names, name)
	}
	return strings.Join(names, " ")
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// toneWAV returns a mono 16-bit PCM WAV file: lead-in silence, then a
// tone at -12 dBFS. Chromium loops it as the fake microphone.
func toneWAV(rate int, silence, tone time.Duration, freq float64) []byte {
	n0 := int(silence.Seconds() * float64(rate))
	n1 := int(tone.Seconds() * float64(rate))
	data := make([]byte, 2*(n0+n1))
	for i := range n1 {
		v := 0.25 * math.MaxInt16 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))
		binary.LittleEndian.PutUint16(data[2*(n0+i):], uint16(int16(v)))
	}
	h := make([]byte, 44)
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], uint32(36+len(data)))
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], uint32(rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(2*rate))
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], uint32(len(data)))
	return append(h, data...)
}
