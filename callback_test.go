package whatsappcalls

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fastNotifier is a notifier whose backoff waits are recorded, not slept.
func fastNotifier(cfg callbackConfig, logger *zap.Logger) (*notifier, *[]time.Duration) {
	n := newNotifier(cfg, logger)
	var mu sync.Mutex
	var waits []time.Duration
	n.sleep = func(ctx context.Context, d time.Duration) bool {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return ctx.Err() == nil
	}
	return n, &waits
}

func TestNotifierDelivers(t *testing.T) {
	type got struct {
		header http.Header
		body   []byte
	}
	seen := make(chan got, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- got{r.Header.Clone(), b}
	}))
	defer srv.Close()
	n, _ := fastNotifier(callbackConfig{url: srv.URL + "/cb?k=secret", secret: "s3cret", header: http.Header{"Authorization": {"Bearer x"}}}, zap.NewNop())
	defer n.Destruct()

	for _, ev := range []string{eventInitiated, eventRinging, eventEnded} {
		n.send(statusEvent{Event: ev, CallID: "wacid.1", Reason: "r"})
	}
	for _, want := range []string{eventInitiated, eventRinging, eventEnded} {
		g := <-seen
		var ev statusEvent
		if err := json.Unmarshal(g.body, &ev); err != nil || ev.Event != want || ev.CallID != "wacid.1" || ev.Timestamp.IsZero() {
			t.Fatalf("callback body %s (%v); want event %s, in order", g.body, err, want)
		}
		mac := hmac.New(sha256.New, []byte("s3cret"))
		mac.Write([]byte(g.header.Get(callbackTimestampHeader) + "."))
		mac.Write(g.body)
		if sig := g.header.Get(callbackSignatureHeader); sig != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("signature %q does not verify", sig)
		}
		if g.header.Get(callbackEventHeader) != want || g.header.Get("Authorization") != "Bearer x" || g.header.Get("Content-Type") != "application/json" {
			t.Errorf("headers = %v", g.header)
		}
	}
}

func TestNotifierRetries(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int // answered in turn; the last repeats
		wantTries int32
		wantWarn  bool
	}{
		{"ok at once", []int{200}, 1, false},
		{"503 then ok", []int{503, 204}, 2, false},
		{"always 500: bounded", []int{500}, callbackAttempts, true},
		{"429 then ok", []int{429, 200}, 2, false},
		{"404: no retry", []int{404}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tries atomic.Int32
			done := make(chan struct{}, 8)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(tries.Add(1)) - 1
				w.WriteHeader(tt.statuses[min(i, len(tt.statuses)-1)])
				done <- struct{}{}
			}))
			defer srv.Close()
			core, logs := observer.New(zapcore.WarnLevel)
			n, waits := fastNotifier(callbackConfig{url: srv.URL}, zap.New(core))
			finished := make(chan struct{}, 1)
			n.delivered = func() { finished <- struct{}{} }
			n.send(statusEvent{Event: eventEnded, CallID: "wacid.2"})
			<-finished
			n.Destruct()
			if got := tries.Load(); got != tt.wantTries {
				t.Errorf("deliveries = %d; want %d", got, tt.wantTries)
			}
			if got := logs.FilterMessage("status callback not delivered").Len() > 0; got != tt.wantWarn {
				t.Errorf("warned = %v; want %v", got, tt.wantWarn)
			}
			if tt.wantTries == callbackAttempts && len(*waits) >= 2 && ((*waits)[0] != time.Second || (*waits)[1] != 2*time.Second) {
				t.Errorf("backoff = %v; want 1s then 2s", *waits)
			}
		})
	}
}

// TestNotifierReceiverDown checks that a receiver that is down costs the
// sender nothing: send returns at once, a full queue drops, and Destruct
// ends the worker.
func TestNotifierReceiverDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	core, logs := observer.New(zapcore.WarnLevel)
	n := newNotifier(callbackConfig{url: "http://" + addr + "/down"}, zap.New(core)) // real backoff: the queue fills
	start := time.Now()
	for range callbackQueue + 50 {
		n.send(statusEvent{Event: eventRinging, CallID: "wacid.3"})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("sending %d events took %s; want no waiting on the receiver", callbackQueue+50, d)
	}
	if logs.FilterMessage("status callback dropped: queue full (receiver too slow or down)").Len() == 0 {
		t.Error("no warning for dropped events")
	}
	if err := n.Destruct(); err != nil {
		t.Fatal(err)
	}
	n.send(statusEvent{Event: eventEnded}) // after Destruct: dropped, no panic
}

func TestNilNotifier(t *testing.T) {
	var n *notifier
	n.send(statusEvent{Event: eventEnded}) // no status_callback: nothing happens
}

func TestCallbackConfigKey(t *testing.T) {
	a := callbackConfig{url: "https://x/cb", secret: "s", header: http.Header{"A": {"1"}}}
	b := callbackConfig{url: "https://x/cb", secret: "s", header: http.Header{"A": {"1"}}}
	c := callbackConfig{url: "https://x/cb", secret: "t", header: http.Header{"A": {"1"}}}
	if a.key() != b.key() || a.key() == c.key() {
		t.Errorf("keys %s %s %s; want equal configs to share one, a changed secret not", a.key(), b.key(), c.key())
	}
}
