package simulator_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/whatsappcalls/caddy-whatsapp-calls"
	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/simulator"
)

// demoImport is the line of examples/demo.Caddyfile that sets the demo's
// port, the one place it is written.
const demoImport = "import demo 8080"

// TestDemoCaddyfilePlacesACall runs examples/demo.Caddyfile, on a free port
// instead of 8080, and places a call through the simulator's page API with
// a pion caller that plays the browser: the call is accepted, and the echo
// bot's audio reaches the caller. It needs no address but loopback, so it
// also passes on a host whose only interface is lo (`unshare -n`).
func TestDemoCaddyfilePlacesACall(t *testing.T) {
	if testing.Short() {
		t.Skip("full-server test skipped in -short mode")
	}
	demo, err := os.ReadFile("../examples/demo.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(demo, []byte(demoImport)) {
		t.Fatalf("examples/demo.Caddyfile lacks %q, the line that sets its port", demoImport)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	config := "{\n\tadmin off\n\tpersist_config off\n\tlog {\n\t\tlevel WARN\n\t}\n}\n" +
		strings.Replace(string(demo), demoImport, fmt.Sprintf("import demo %d", port), 1)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config), map[string]any{"filename": "demo.Caddyfile"})
	if err != nil {
		t.Fatalf("adapt examples/demo.Caddyfile: %v", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("load examples/demo.Caddyfile: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	base := fmt.Sprintf("http://localhost:%d", port)

	c, err := caller.New(caller.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body, _ := json.Marshal(map[string]string{"sdp": c.Offer()})
	resp, err := http.Post(base+"/api/calls", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var placed struct {
		CallID string `json:"call_id"`
		Error  string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&placed)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/calls = %s (%s); want 201", resp.Status, placed.Error)
	}

	answer := waitAnswer(t, base, placed.CallID)
	if err := c.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("caller never connected: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for simCall(t, base, placed.CallID).State != simulator.StateAccepted {
		if time.Now().After(deadline) {
			t.Fatalf("call %s: state %+v; want accepted", placed.CallID, simCall(t, base, placed.CallID))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for time.Now().Before(deadline) && c.Received() < 25 {
		time.Sleep(50 * time.Millisecond)
	}
	if got := c.Received(); got < 25 {
		t.Errorf("caller received %d RTP packets; want the demo's audio (≥ 25, half a second)", got)
	}

	// The README's curl line: the business calls the simulated user, and
	// the call rings on the page.
	req, _ := http.NewRequest(http.MethodPost, base+"/control/calls", strings.NewReader(`{"to":"15551234567"}`))
	req.Header.Set("Authorization", "Bearer demo-api-token")
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		CallID string `json:"call_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || out.CallID == "" {
		t.Fatalf("POST /control/calls = %s %+v; want 201 with a call id", resp.Status, out)
	}
	if got := simCall(t, base, out.CallID); got.State != simulator.StateIncoming || got.Direction != "BUSINESS_INITIATED" {
		t.Errorf("the business's call in the simulator = %+v; want it ringing on the page", got)
	}
}

// waitAnswer reads the call's event stream until an event carries the
// business's answer SDP.
func waitAnswer(t *testing.T, base, callID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/calls/"+callID+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev simulator.Event
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.SDP != "" {
			return ev.SDP
		}
		if ev.State == simulator.StateRejected || ev.State == simulator.StateFailed {
			t.Fatalf("call %s: %s (%s) before an answer", callID, ev.State, ev.Reason)
		}
	}
	t.Fatalf("call %s: no answer SDP in its events (%v)", callID, sc.Err())
	return ""
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
