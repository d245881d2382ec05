package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// TestWebhookFlood floods the webhook from 32 concurrent clients with a mix
// of unsigned, wrongly signed and signed non-call deliveries, plus a bounded
// number of signed connect webhooks for fresh calls while the bot is down.
// Every request must get exactly its expected status (401, 403 or 200) and
// no transport error; every connect must become exactly one reject toward
// Meta and nothing else; a repeated connect must still be recognised (the
// dedupe record survived the flood); and once the calls are over, the
// goroutine count and the heap must be back near where they started.
func TestWebhookFlood(t *testing.T) {
	const (
		maxRequests  = 20000
		maxDuration  = 8 * time.Second
		workers      = 32
		connectEvery = 100 // one request in connectEvery is a connect...
		maxConnects  = 200 // ...up to this many: each one starts a call
		heapSlack    = 20 << 20
		goSlack      = 2 // goroutines some library starts once, lazily
	)
	graph := newFaultGraph(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log") // keeps 200 rejects out of the test output
	tester := caddytest.NewTester(t)
	tester.InitServer(faultConfig(graph.URL, "ws://127.0.0.1:1/bot", logPath, "flood", "bot_timeout 200ms"), "caddyfile")

	// One real offer, reused by every connect: each call builds a real
	// PeerConnection, then fails to reach the bot and is rejected.
	offer := newLiteCaller(t, nil).Offer()

	type kind int
	const (
		unsigned kind = iota
		wrongSig
		messages
		connect
	)
	wantStatus := map[kind]int{unsigned: http.StatusUnauthorized, wrongSig: http.StatusForbidden, messages: http.StatusOK, connect: http.StatusOK}
	kindName := map[kind]string{unsigned: "unsigned", wrongSig: "wrong signature", messages: "signed messages", connect: "signed connect"}
	unsignedBody := connectPayload("wacid.flood-unsigned")
	wrongBody := connectPayload("wacid.flood-wrong")
	wrongSignature := whatsapp.Sign([]byte("not the app secret"), wrongBody)
	messagesBody := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"id":"m"}]}}]}]}`)
	messagesSignature := whatsapp.Sign([]byte(testSecret), messagesBody)

	transport := &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers, DisableCompression: true}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	t.Cleanup(transport.CloseIdleConnections)
	send := func(body []byte, signature string) (int, error) {
		req, err := http.NewRequest(http.MethodPost, faultWebhook, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		if signature != "" {
			req.Header.Set("X-Hub-Signature-256", signature)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, err
	}

	// Warm up every path once, then take the baseline.
	for _, w := range []struct {
		body []byte
		sig  string
		want int
	}{{unsignedBody, "", 401}, {wrongBody, wrongSignature, 403}, {messagesBody, messagesSignature, 200}} {
		if got, err := send(w.body, w.sig); err != nil || got != w.want {
			t.Fatalf("warm-up POST = %d, %v; want %d", got, err, w.want)
		}
	}
	active := activeCalls(t)
	transport.CloseIdleConnections()
	graph.CloseClientConnections()
	baseG, baseHeap := settleProcess(0, 0)

	var (
		next, connects atomic.Int64
		mu             sync.Mutex
		counts         = map[kind]map[int]int{}
		errs           []string
		connectIDs     []string
		connectBodies  [][]byte
		wg             sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(maxDuration)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= maxRequests || time.Now().After(deadline) {
					return
				}
				k := kind(i % 3)
				var body []byte
				var sig, id string
				if i%connectEvery == 0 && connects.Add(1) <= maxConnects {
					k = connect
					id = fmt.Sprintf("wacid.flood-%d", i)
					body = connectWebhook(id, offer)
					sig = whatsapp.Sign([]byte(testSecret), body)
				} else {
					switch k {
					case unsigned:
						body = unsignedBody
					case wrongSig:
						body, sig = wrongBody, wrongSignature
					case messages:
						body, sig = messagesBody, messagesSignature
					}
				}
				status, err := send(body, sig)
				mu.Lock()
				if err != nil {
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					status = -1
				}
				if counts[k] == nil {
					counts[k] = map[int]int{}
				}
				counts[k][status]++
				if k == connect {
					connectIDs = append(connectIDs, id)
					connectBodies = append(connectBodies, body)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	sent := min(next.Load(), maxRequests)
	t.Logf("%d requests in %v (%.0f/s), %d of them connects", sent, took.Round(time.Millisecond), float64(sent)/took.Seconds(), len(connectIDs))

	for k, byStatus := range counts {
		for status, n := range byStatus {
			if status != wantStatus[k] {
				t.Errorf("%d %s requests got status %d; want %d", n, kindName[k], status, wantStatus[k])
			}
		}
	}
	if len(errs) > 0 {
		t.Errorf("transport errors, for example: %v", errs)
	}
	if len(connectIDs) < 20 {
		t.Fatalf("only %d connects were sent; want at least 20 for the call checks", len(connectIDs))
	}

	// Every connect becomes exactly one reject, and nothing else happens.
	rejected := map[string]int{}
	wait := time.After(20 * time.Second)
	for len(rejected) < len(connectIDs) {
		select {
		case a := <-graph.notify:
			id, _ := a.Body["call_id"].(string)
			if a.Body["action"] != "reject" {
				t.Fatalf("Graph action %v of %s during the flood; want only rejects", a.Body["action"], id)
			}
			rejected[id]++
		case <-wait:
			t.Fatalf("%d of %d flooded calls rejected within 20 s", len(rejected), len(connectIDs))
		}
	}
	sort.Strings(connectIDs)
	for _, id := range connectIDs {
		if rejected[id] != 1 {
			t.Errorf("call %s rejected %d times; want once", id, rejected[id])
		}
	}

	waitActive(t, active)

	// The flooded call ids are still remembered: a repeat does nothing.
	for _, body := range connectBodies[:5] {
		if got, err := send(body, whatsapp.Sign([]byte(testSecret), body)); err != nil || got != http.StatusOK {
			t.Fatalf("repeated connect POST = %d, %v; want 200", got, err)
		}
	}
	graph.quiet(t, 500*time.Millisecond)

	// Idle keep-alive connections (ours, and the Graph client's to the fake
	// Graph API) each hold goroutines on both ends: close them first.
	transport.CloseIdleConnections()
	graph.CloseClientConnections()
	g, heap := settleProcess(baseG, baseHeap+heapSlack)
	t.Logf("goroutines %d -> %d; heap in use %.1f MiB -> %.1f MiB", baseG, g, mib(baseHeap), mib(heap))
	if g > baseG+goSlack {
		t.Errorf("%d goroutines after the flood; want at most %d (%d before)", g, baseG+goSlack, baseG)
	}
	if heap > baseHeap+heapSlack {
		t.Errorf("heap in use %.1f MiB after the flood; want at most %.1f MiB (%.1f MiB before)", mib(heap), mib(baseHeap+heapSlack), mib(baseHeap))
	}
}

// settleProcess collects garbage and waits up to five seconds for the
// goroutine count and heap in use to drop to at most the given bounds (0
// means: until two readings agree), and returns them.
func settleProcess(maxG int, maxHeap uint64) (int, uint64) {
	read := func() (int, uint64) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return runtime.NumGoroutine(), m.HeapInuse
	}
	deadline := time.Now().Add(5 * time.Second)
	g, heap := read()
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		g2, heap2 := read()
		if maxG == 0 && g2 == g {
			return g2, heap2
		}
		g, heap = g2, heap2
		if maxG > 0 && g <= maxG && heap <= maxHeap {
			break
		}
	}
	return g, heap
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
