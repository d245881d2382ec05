package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/redistest"
	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/tone"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// The cluster test runs real Caddy processes (a process-wide Caddy cannot
// be three nodes): three nodes with the plugin, each with its own HTTP and
// UDP port, behind a fourth Caddy whose reverse_proxy spreads the webhooks
// round-robin, and one real redis-server that requires a password.
const (
	clusterClaimTTL = 2 * time.Second
	clusterRedisPW  = "cluster-test-redis-password"
	// clusterSweepBound is how soon a peer terminates toward Meta the calls
	// of a node killed with SIGKILL: the lease runs out at most claim_ttl
	// after the kill, a peer's sweep (every claim_ttl/3) finds it, and one
	// Graph request follows. 1.5 claim_ttl plus a second of slack for a
	// loaded machine.
	clusterSweepBound = clusterClaimTTL*3/2 + time.Second
)

// clusterGraph is a Graph API fake that speaks Meta's wire format and
// records the call actions by call id, since calls on several nodes run
// at once.
type clusterGraph struct {
	*httptest.Server
	mu     sync.Mutex
	byCall map[string][]clusterAction
	placed int // connect requests: business-initiated calls placed
}

type clusterAction struct {
	Action string
	SDP    string
	At     time.Time
}

func newClusterGraph(t *testing.T) *clusterGraph {
	g := &clusterGraph{byCall: make(map[string][]clusterAction)}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			CallID  string `json:"call_id"`
			Action  string `json:"action"`
			Session struct {
				SDP string `json:"sdp"`
			} `json:"session"`
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/call_permissions") {
			io.WriteString(w, `{"messaging_product":"whatsapp","permission":{"status":"temporary","expiration_time":1900000000},`+
				`"actions":[{"action_name":"start_call","can_perform_action":true}]}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+testAccess || json.NewDecoder(r.Body).Decode(&body) != nil {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"message":"Invalid parameter","type":"OAuthException","code":100}}`)
			return
		}
		g.mu.Lock()
		if body.Action == "connect" {
			g.placed++
			body.CallID = fmt.Sprintf("wacid.CLUSTER-OUT%d", g.placed)
		}
		g.byCall[body.CallID] = append(g.byCall[body.CallID], clusterAction{Action: body.Action, SDP: body.Session.SDP, At: time.Now()})
		g.mu.Unlock()
		if body.Action == "connect" {
			fmt.Fprintf(w, `{"messaging_product":"whatsapp","calls":[{"id":%q}]}`, body.CallID)
			return
		}
		io.WriteString(w, `{"success":true}`)
	}))
	t.Cleanup(g.Close)
	return g
}

// actions returns the names of the actions recorded for a call.
func (g *clusterGraph) actions(id string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, a := range g.byCall[id] {
		out = append(out, a.Action)
	}
	return out
}

// wait returns the first action named action for call id, waiting up to
// timeout for it.
func (g *clusterGraph) wait(t *testing.T, id, action string, timeout time.Duration) clusterAction {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		g.mu.Lock()
		for _, a := range g.byCall[id] {
			if a.Action == action {
				g.mu.Unlock()
				return a
			}
		}
		g.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s for %s within %s (actions: %v)", action, id, timeout, g.actions(id))
		}
	}
}

// clusterBot is a Twilio Media Streams bot (PROTOCOLS.md) that tracks each
// call by the whatsapp_call_id of its start message.
type clusterBot struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string]*botCall
	wg    sync.WaitGroup
}

type botCall struct {
	media  atomic.Int64
	stop   atomic.Bool   // a stop message arrived
	ended  chan struct{} // closed when the socket ends
	hangup chan struct{} // close to hang up from the bot
	once   sync.Once
}

func newClusterBot(t *testing.T) *clusterBot {
	b := &clusterBot{calls: make(map[string]*botCall)}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(func() {
		b.Close()
		b.wg.Wait()
	})
	return b
}

// stopped reports whether the call's socket has ended.
func (c *botCall) stopped() bool {
	select {
	case <-c.ended:
		return true
	default:
		return false
	}
}

func (b *clusterBot) url() string { return "ws" + strings.TrimPrefix(b.URL, "http") }

// call returns the bot's record of a call, creating it so that a test can
// wait on it before the call dials the bot.
func (b *clusterBot) call(id string) *botCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.calls[id]
	if c == nil {
		c = &botCall{ended: make(chan struct{}), hangup: make(chan struct{})}
		b.calls[id] = c
	}
	return c
}

func (b *clusterBot) serve(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var bc *botCall
	defer func() {
		if bc != nil {
			close(bc.ended)
		}
	}()
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return
		}
		var msg struct {
			Event string `json:"event"`
			Start struct {
				CustomParameters map[string]string `json:"customParameters"`
			} `json:"start"`
		}
		if json.Unmarshal(data, &msg) != nil {
			continue
		}
		switch msg.Event {
		case "start":
			bc = b.call(msg.Start.CustomParameters["whatsapp_call_id"])
			b.wg.Add(1)
			go func(bc *botCall) {
				defer b.wg.Done()
				select {
				case <-bc.hangup:
					conn.Close(websocket.StatusNormalClosure, "bot hangs up")
				case <-ctx.Done():
				}
			}(bc)
		case "media":
			if bc != nil {
				bc.media.Add(1)
			}
		case "stop":
			if bc != nil {
				bc.stop.Store(true)
			}
		}
	}
}

// caddyProc is one Caddy process.
type caddyProc struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
}

func startCaddy(t *testing.T, bin, dir, name, caddyfile string) *caddyProc {
	t.Helper()
	cfgPath := filepath.Join(dir, name+".Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &caddyProc{name: name, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	home := filepath.Join(dir, name+"-home")
	p.cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_DATA_HOME="+home,
		"REDIS_PASSWORD="+clusterRedisPW)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			out, _ := os.ReadFile(p.logPath)
			t.Logf("--- %s log (last 4 KiB) ---\n%s", name, tail(out, 4096))
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// exited reports whether the process has exited.
func (p *caddyProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends the process as a crash would (SIGKILL).
func (p *caddyProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop asks the process to exit (SIGINT, as Ctrl-C) and kills it if it
// has not within 10 s.
func (p *caddyProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// waitHTTP waits until the webhook verification answers on addr.
func waitHTTP(t *testing.T, p *caddyProc, addr string) {
	t.Helper()
	url := fmt.Sprintf("http://%s/webhook?hub.mode=subscribe&hub.verify_token=%s&hub.challenge=ready", addr, testToken)
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before serving", p.name)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not serving on %s within 30s: %v", p.name, addr, err)
		}
	}
}

// clusterNode is one Caddy node of the test.
type clusterNode struct {
	*caddyProc
	id      string
	httpAdr string
	udpPort int
}

// startNodes starts count Caddy nodes named prefix1, prefix2, ..., each on
// free loopback HTTP and UDP ports, all on the same Graph API, bot and Redis.
func startNodes(t *testing.T, bin, dir, prefix string, count int, graphURL, botURL, redisAddr string) []*clusterNode {
	t.Helper()
	var nodes []*clusterNode
	for i := range count {
		n := &clusterNode{id: fmt.Sprintf("%s%d", prefix, i+1),
			httpAdr: net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t))),
			udpPort: freeUDPPort(t)}
		n.caddyProc = startCaddy(t, bin, dir, n.id, nodeCaddyfile(n, graphURL, botURL, redisAddr))
		nodes = append(nodes, n)
	}
	return nodes
}

func nodeCaddyfile(n *clusterNode, graphURL, botURL, redisAddr string) string {
	return fmt.Sprintf(`{
	admin off
	persist_config off
	grace_period 1ns
}
http://%[1]s {
	bind 127.0.0.1
	whatsapp_calls /webhook {
		app_secret %[2]s
		verify_token %[3]s
		access_token %[4]s
		bot %[5]s
		graph_url %[6]s
		ice_networks 127.0.0.0/8
		udp_port %[7]d
		cluster %[8]s {
			password {env.REDIS_PASSWORD}
			key_prefix test:
			node_id %[9]s
			node_address %[1]s
			claim_ttl %[10]s
		}
	}
	handle_path /api/* {
		whatsapp_calls_api {
			token %[11]s
			twilio_auth_token %[12]s
		}
	}
}
`, n.httpAdr, testSecret, testToken, testAccess, botURL, graphURL, n.udpPort, redisAddr, n.id, clusterClaimTTL, apiToken, twilioToken)
}

func lbCaddyfile(addr string, nodes []*clusterNode) string {
	var ups []string
	for _, n := range nodes {
		ups = append(ups, n.httpAdr)
	}
	return fmt.Sprintf(`{
	admin off
	persist_config off
	grace_period 1ns
}
http://%s {
	bind 127.0.0.1
	reverse_proxy %s {
		lb_policy round_robin
		lb_try_duration 3s
		fail_duration 10s
	}
}
`, addr, strings.Join(ups, " "))
}

var candidatePort = regexp.MustCompile(`a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host`)

// liveCall is one call of the test: its Meta-shaped caller, which node
// answered it, and what the bot sees of it.
type liveCall struct {
	id     string
	caller *caller.Caller
	owner  *clusterNode
	bot    *botCall
	stop   chan struct{}
	wg     sync.WaitGroup
}

// end stops the caller's audio and closes it.
func (c *liveCall) end() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.wg.Wait()
	_ = c.caller.Close()
}

// dial posts a connect for a new call to url, answers as Meta does once
// pre_accept arrives, and waits for accept. The caller then speaks until
// the call ends.
func dial(t *testing.T, url string, g *clusterGraph, b *clusterBot, nodes []*clusterNode, id string) *liveCall {
	t.Helper()
	cl, err := caller.New(caller.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := &liveCall{id: id, caller: cl, bot: b.call(id), stop: make(chan struct{})}
	t.Cleanup(c.end)
	signedPost(t, url, connectWebhook(id, cl.Offer()))
	pre := g.wait(t, id, "pre_accept", 10*time.Second)
	m := candidatePort.FindStringSubmatch(pre.SDP)
	if m == nil {
		t.Fatalf("pre_accept answer of %s has no loopback host candidate:\n%s", id, pre.SDP)
	}
	port, _ := strconv.Atoi(m[1])
	for _, n := range nodes {
		if n.udpPort == port {
			c.owner = n
		}
	}
	if c.owner == nil {
		t.Fatalf("answer of %s names UDP port %d, no node's", id, port)
	}
	if err := cl.SetAnswer(pre.SDP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatalf("caller of %s never connected to %s: %v", id, c.owner.id, err)
	}
	g.wait(t, id, "accept", 10*time.Second)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			_ = cl.SendPCM(tone.Sine(nil, caller.MetaSampleRate, 440, 8000, i*caller.MetaFrameSamples, caller.MetaFrameSamples))
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return c
}

// waitEnded waits for the bot's socket of c to end and returns how long
// that took from since.
func waitEnded(t *testing.T, c *liveCall, since time.Time, within time.Duration, why string) time.Duration {
	t.Helper()
	select {
	case <-c.bot.ended:
		return time.Since(since)
	case <-time.After(within):
		t.Fatalf("bot of %s (on %s) still connected %s after %s", c.id, c.owner.id, within, why)
		return 0
	}
}

// mediaFlows checks that the bot of c keeps receiving the caller's audio.
func mediaFlows(t *testing.T, c *liveCall, why string) {
	t.Helper()
	// Ten more 20 ms frames prove the call goes on; a dead call sends none.
	// They have 2 s to arrive, so that a loaded machine does not fail it.
	before := c.bot.media.Load()
	deadline := time.Now().Add(2 * time.Second)
	for c.bot.media.Load()-before < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("bot of %s got %d media messages in 2s %s; want the call going on", c.id, c.bot.media.Load()-before, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkLeaks fails the test if a goroutine it started outlives it. It
// must be called first, so that its check runs after every other cleanup.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		goleak.VerifyNone(t, before)
	})
}

func buildCaddy(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "caddy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	return bin
}

// TestClusterThreeNodes runs three nodes behind a round-robin load
// balancer on one Redis: calls spread over the nodes, connect retries on
// other nodes do nothing, Meta's terminate and a bot's hang-up end the
// call wherever they land, a Redis crash breaks no call and the cluster
// recovers by itself, and the calls of a node killed with SIGKILL are
// terminated toward Meta by a peer within clusterSweepBound.
func TestClusterThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy and runs four processes")
	}
	checkLeaks(t)
	redis := redistest.Start(t, clusterRedisPW)
	graph := newClusterGraph(t)
	bot := newClusterBot(t)
	dir := t.TempDir()
	bin := buildCaddy(t, dir)

	nodes := startNodes(t, bin, dir, "node", 3, graph.URL, bot.url(), redis.Addr())
	lbAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
	lb := startCaddy(t, bin, dir, "lb", lbCaddyfile(lbAddr, nodes))
	for _, n := range nodes {
		waitHTTP(t, n.caddyProc, n.httpAdr)
	}
	waitHTTP(t, lb, lbAddr)
	lbURL := "http://" + lbAddr + "/webhook"
	nodeURL := func(n *clusterNode) string { return "http://" + n.httpAdr + "/webhook" }
	other := func(n *clusterNode) *clusterNode {
		for _, o := range nodes {
			if o != n && !o.exited() {
				return o
			}
		}
		t.Fatal("no other node")
		return nil
	}

	// Calls spread: three connects through the round-robin balancer land
	// on three different nodes.
	var calls []*liveCall
	owners := map[string]bool{}
	for i := range 3 {
		c := dial(t, lbURL, graph, bot, nodes, fmt.Sprintf("wacid.cluster-%d", i))
		calls = append(calls, c)
		owners[c.owner.id] = true
	}
	if len(owners) != 3 {
		t.Fatalf("3 calls answered by %d nodes (%v); want one each", len(owners), owners)
	}

	// Retries: every connect again, on every node directly and through the
	// balancer. Nobody pre-accepts, accepts or rejects a second time.
	for _, c := range calls {
		body := connectWebhook(c.id, c.caller.Offer())
		for _, n := range nodes {
			signedPost(t, nodeURL(n), body)
		}
		signedPost(t, lbURL, body)
	}
	time.Sleep(500 * time.Millisecond)
	for _, c := range calls {
		if got := strings.Join(graph.actions(c.id), " "); got != "pre_accept accept" {
			t.Fatalf("Graph actions of %s after retried connects = %s; want pre_accept accept", c.id, got)
		}
		mediaFlows(t, c, "after retried connects")
	}

	// Meta's terminate lands on the owner (for the same-run comparison),
	// then on a node that does not own the call: the owner ends it, stops
	// the bot, and sends Meta nothing.
	local := dial(t, lbURL, graph, bot, nodes, "wacid.cluster-local")
	sent := time.Now()
	signedPost(t, nodeURL(local.owner), terminateWebhook(local.id))
	tookLocal := waitEnded(t, local, sent, 3*time.Second, "Meta's terminate on its own node")
	a := calls[0]
	sent = time.Now()
	signedPost(t, nodeURL(other(a.owner)), terminateWebhook(a.id))
	took := waitEnded(t, a, sent, 3*time.Second, "Meta's terminate on another node")
	t.Logf("terminate webhook -> bot socket closed: on the owner %s, forwarded from another node %s (%.1fx)",
		tookLocal, took, float64(took)/float64(tookLocal))
	if !a.bot.stop.Load() {
		t.Errorf("bot of %s got no stop before the close", a.id)
	}
	time.Sleep(200 * time.Millisecond)
	if got := strings.Join(graph.actions(a.id), " "); got != "pre_accept accept" {
		t.Errorf("Graph actions of %s after Meta's terminate = %s; want nothing more", a.id, got)
	}

	// The bot hangs up: its node terminates toward Meta.
	b := calls[1]
	close(b.bot.hangup)
	graph.wait(t, b.id, "terminate", 3*time.Second)

	// Redis crashes with a call live: the call goes on, and a new call is
	// answered by the node it lands on, with that node's dedupe only.
	c := calls[2]
	redis.Stop()
	mediaFlows(t, c, "with Redis down")
	during := dial(t, lbURL, graph, bot, nodes, "wacid.cluster-during-outage")
	mediaFlows(t, during, "answered with Redis down")
	redis.Restart()

	// After Redis returns, the owners record their calls again by
	// themselves: a terminate landing on another node reaches the owner.
	time.Sleep(clusterClaimTTL)
	sent = time.Now()
	for deadline := time.Now().Add(3 * clusterClaimTTL); ; {
		signedPost(t, nodeURL(other(c.owner)), terminateWebhook(c.id))
		select {
		case <-c.bot.ended:
		case <-time.After(300 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
			t.Fatalf("terminate of %s on another node not forwarded within %s of Redis's return", c.id, 3*clusterClaimTTL)
		}
		break
	}
	t.Logf("after the Redis restart, terminate of %s on another node ended it in %s", c.id, time.Since(sent))
	mediaFlows(t, during, "after Redis came back")

	// A node dies with live calls: a peer terminates them toward Meta.
	victim := during.owner
	var doomed []*liveCall
	doomed = append(doomed, during)
	for i := 0; len(doomed) < 2 && i < 6; i++ {
		d := dial(t, lbURL, graph, bot, nodes, fmt.Sprintf("wacid.cluster-doomed-%d", i))
		if d.owner == victim {
			doomed = append(doomed, d)
		}
	}
	time.Sleep(clusterClaimTTL / 2) // the new calls' leases are refreshed once
	killed := time.Now()
	victim.kill()
	for _, d := range doomed {
		term := graph.wait(t, d.id, "terminate", clusterSweepBound+time.Second)
		if took := term.At.Sub(killed); took > clusterSweepBound {
			t.Errorf("terminate of %s came %s after %s was killed; want within %s", d.id, took, victim.id, clusterSweepBound)
		} else {
			t.Logf("%s killed: %s terminated toward Meta by a peer after %s", victim.id, d.id, took)
		}
	}

	// No log line shows the Redis password.
	for _, n := range nodes {
		out, _ := os.ReadFile(n.logPath)
		if strings.Contains(string(out), clusterRedisPW) {
			t.Errorf("%s's log shows the Redis password", n.id)
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if os.Getenv("CLUSTER_LOGS") != "" || strings.Contains(sc.Text(), `"level":"error"`) && !strings.Contains(sc.Text(), "terminate toward meta failed") {
				t.Logf("%s: %s", n.id, sc.Text())
			}
		}
	}
}

// clusterAPI sends one control API request to a node and decodes the JSON
// answer.
func clusterAPI(t *testing.T, n *clusterNode, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, "http://"+n.httpAdr+"/api"+path, rd)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(t, req)
}

// listed returns the calls a node's control API lists, by call id.
func listed(t *testing.T, n *clusterNode) map[string]map[string]any {
	t.Helper()
	status, out := clusterAPI(t, n, http.MethodGet, "/calls", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /calls on %s = %d %v", n.id, status, out)
	}
	byID := map[string]map[string]any{}
	calls, _ := out["calls"].([]any)
	for _, c := range calls {
		m := c.(map[string]any)
		byID[m["call_id"].(string)] = m
	}
	return byID
}

// TestClusterControlAPIAndOutbound runs two nodes and sends everything to
// the node that does not hold the call: the control API lists the calls of
// both nodes, its hang-up and pipecat's Twilio REST hang-up end the call
// on its node (which tells Meta), and a business-initiated call placed on
// one node connects though Meta's answer, statuses and terminate webhooks
// all land on the other.
func TestClusterControlAPIAndOutbound(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy and runs two processes")
	}
	checkLeaks(t)
	redis := redistest.Start(t, clusterRedisPW)
	graph := newClusterGraph(t)
	bots := newClusterBot(t)
	dir := t.TempDir()
	bin := buildCaddy(t, dir)
	nodes := startNodes(t, bin, dir, "api", 2, graph.URL, bots.url(), redis.Addr())
	for _, n := range nodes {
		waitHTTP(t, n.caddyProc, n.httpAdr)
	}
	a, b := nodes[0], nodes[1]
	hook := func(n *clusterNode) string { return "http://" + n.httpAdr + "/webhook" }

	// Two calls on a; b lists them as a's.
	x := dial(t, hook(a), graph, bots, nodes, "wacid.cluster-api-x")
	y := dial(t, hook(a), graph, bots, nodes, "wacid.cluster-api-y")
	if x.owner != a || y.owner != a {
		t.Fatalf("calls answered by %s and %s; want %s", x.owner.id, y.owner.id, a.id)
	}
	onB := listed(t, b)
	for _, c := range []*liveCall{x, y} {
		v := onB[c.id]
		if v == nil || v["node"] != a.id || v["state"] != "remote" || v["direction"] != "inbound" || v["from"] != nil {
			t.Fatalf("b lists %s as %v; want a remote inbound call on %s without numbers", c.id, v, a.id)
		}
	}
	if v := listed(t, a)[x.id]; v == nil || v["node"] != a.id || v["state"] != "answered" {
		t.Fatalf("a lists %s as %v; want answered on %s", x.id, v, a.id)
	}

	// The control API's hang-up on b ends x on a, which tells Meta.
	status, out := clusterAPI(t, b, http.MethodDelete, "/calls/"+x.id, nil)
	if status != http.StatusOK || out["node"] != a.id {
		t.Fatalf("DELETE /calls/%s on b = %d %v; want 200 naming %s", x.id, status, out, a.id)
	}
	waitEnded(t, x, time.Now(), 3*time.Second, "the control API's hang-up on the other node")
	graph.wait(t, x.id, "terminate", 3*time.Second)

	// pipecat's Twilio REST hang-up on b ends y on a, which tells Meta.
	account, callSID := bot.TwilioAccountSID(testPhone), bot.TwilioCallSID(y.id)
	req, _ := http.NewRequest(http.MethodPost, "http://"+b.httpAdr+"/api/2010-04-01/Accounts/"+account+"/Calls/"+callSID+".json",
		strings.NewReader(url.Values{"Status": {"completed"}}.Encode()))
	req.SetBasicAuth(account, twilioToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if status, out := do(t, req); status != http.StatusOK || out["sid"] != callSID || out["status"] != "completed" {
		t.Fatalf("Twilio hang-up of %s on b = %d %v; want 200 with the call resource", y.id, status, out)
	}
	waitEnded(t, y, time.Now(), 3*time.Second, "the Twilio REST hang-up on the other node")
	graph.wait(t, y.id, "terminate", 3*time.Second)

	// A call placed on a; Meta's webhooks for it all land on b.
	status, out = clusterAPI(t, a, http.MethodPost, "/calls", map[string]any{"to": userWaID, "phone_number_id": testPhone})
	id, _ := out["call_id"].(string)
	if status != http.StatusCreated || id == "" {
		t.Fatalf("POST /calls on a = %d %v; want 201 with a call id", status, out)
	}
	offer := graph.wait(t, id, "connect", 3*time.Second).SDP
	user, err := caller.NewAnswerer(caller.Config{}, offer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { user.Close() })
	out1 := bots.call(id)
	signedPost(t, hook(b), statusWebhook(id, "RINGING"))
	signedPost(t, hook(b), answerWebhook(id, user.Answer()))
	signedPost(t, hook(b), statusWebhook(id, "ACCEPTED"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := user.WaitConnected(ctx); err != nil {
		t.Fatalf("the user's side of %s never connected to a: %v", id, err)
	}
	for deadline := time.Now().Add(5 * time.Second); out1.media.Load() == 0 && out1.stopped() == false; time.Sleep(50 * time.Millisecond) {
		_ = user.SendPCM(tone.Sine(nil, caller.MetaSampleRate, 440, 8000, 0, caller.MetaFrameSamples))
		if time.Now().After(deadline) {
			t.Fatalf("the bot never heard the user of %s", id)
		}
	}
	if v := listed(t, b)[id]; v == nil || v["node"] != a.id || v["direction"] != "outbound" {
		t.Fatalf("b lists %s as %v; want an outbound call on %s", id, v, a.id)
	}
	sent := time.Now()
	signedPost(t, hook(b), outboundTerminate(id))
	select {
	case <-out1.ended:
		t.Logf("outbound %s: terminate on b ended it on a in %s", id, time.Since(sent))
	case <-time.After(3 * time.Second):
		t.Fatalf("bot of outbound %s still connected 3s after Meta's terminate on b", id)
	}
	if got := graph.actions(id); slices.Contains(got, "terminate") {
		t.Errorf("Graph actions of %s = %v; want no terminate after Meta's own", id, got)
	}
}
