package whatsappcalls

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/cluster"
	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/redistest"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// peerNode is another node of the cluster, driven by the test.
func peerNode(t *testing.T, s *redistest.Server, id string) *cluster.Node {
	t.Helper()
	n, err := cluster.New(cluster.Config{Addr: s.Addr(), NodeID: id, ClaimTTL: time.Second,
		OnHangup: func(string, string, []byte) {}, OnOrphan: func(cluster.Call) {}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func clusteredRegistry(t *testing.T, s *redistest.Server, cfg callConfig) *registry {
	t.Helper()
	r := newRegistry(nil)
	if err := r.attachCluster(cluster.Config{Addr: s.Addr(), NodeID: "self", ClaimTTL: time.Second, Logger: zap.NewNop()}, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Destruct() })
	return r
}

// A full node rejects the calls it claimed, never a retried connect of a
// call that a peer answered.
func TestClusterFullNodeRejectsOnlyItsClaims(t *testing.T) {
	s := redistest.Start(t, "")
	peer := peerNode(t, s, "peer")
	if _, err := peer.Claim(context.Background(), cluster.Call{ID: "wacid.elsewhere", PhoneNumberID: "1"}); err != nil {
		t.Fatal(err)
	}
	g := &recordingGraph{}
	cfg := callConfig{logger: zap.NewNop(), graph: g, maxCalls: 0}
	r := clusteredRegistry(t, s, cfg)
	r.connect(connectEvent("wacid.elsewhere"), cfg)
	r.connect(connectEvent("wacid.fresh"), cfg)
	if err := r.Destruct(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"reject wacid.fresh"}; !reflect.DeepEqual(g.actions, want) {
		t.Errorf("Graph actions = %v; want %v (nothing for the peer's call)", g.actions, want)
	}
}

// A hang-up forwarded by a peer ends the live call with the cause that
// decides whether Meta is told.
func TestClusterForwardedHangup(t *testing.T) {
	tests := []struct {
		reason string
		want   error
	}{
		{hangupMetaTerminate, errCallerHungUp},
		{hangupAPI, errHungUpByAPI},
		{hangupTwilioREST, errHungUpByBotREST},
		{"unknown", errRemoteHangup},
	}
	s := redistest.Start(t, "")
	peer := peerNode(t, s, "peer")
	peer.Start()
	cfg := callConfig{logger: zap.NewNop(), graph: &recordingGraph{}, maxCalls: 10}
	r := clusteredRegistry(t, s, cfg)
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			id := "wacid.fwd-" + tt.reason
			ctx, hangup := context.WithCancelCause(context.Background())
			defer hangup(nil)
			c := &call{ev: connectEvent(id), received: time.Now(), ctx: ctx, hangup: hangup}
			r.mu.Lock()
			r.live[id] = c
			r.mu.Unlock()
			if !r.claim(r.link, c.ev, c.received, cfg) {
				t.Fatalf("claim(%s) = false", id)
			}
			owner, err := peer.Forward(context.Background(), id, tt.reason, nil)
			if owner != "self" || (err != nil && !errors.Is(err, cluster.ErrOwnerUnreachable)) {
				t.Fatalf("Forward(%s) = %q, %v; want self", id, owner, err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(3 * time.Second):
				t.Fatalf("forwarded %s hang-up did not end the call", tt.reason)
			}
			if got := context.Cause(ctx); !errors.Is(got, tt.want) {
				t.Fatalf("call ended with %v; want %v", got, tt.want)
			}
			r.release(c)
		})
	}
}

// The calls of a node that died are terminated toward Meta by a peer; one
// that Meta says was never accepted is rejected.
func TestClusterOrphansEnded(t *testing.T) {
	notAccepted := &whatsapp.APIError{StatusCode: http.StatusBadRequest, Code: 138000, Message: "call not found"}
	tests := []struct {
		name string
		errs map[string]error
		want []string
	}{
		{"terminated", nil, []string{"terminate wacid.orphan"}},
		{"never accepted: rejected", map[string]error{"terminate": notAccepted}, []string{"terminate wacid.orphan", "reject wacid.orphan"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redistest.Start(t, "")
			dying := peerNode(t, s, "dying")
			dying.Start()
			if _, err := dying.Claim(context.Background(), cluster.Call{ID: "wacid.orphan", PhoneNumberID: "106540352242922"}); err != nil {
				t.Fatal(err)
			}
			g := &failingGraph{errs: tt.errs}
			events := make(chan statusEvent, 4)
			sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var ev statusEvent
				_ = json.NewDecoder(r.Body).Decode(&ev)
				events <- ev
			}))
			defer sink.Close()
			n := newNotifier(callbackConfig{url: sink.URL}, zap.NewNop())
			defer n.Destruct()
			clusteredRegistry(t, s, callConfig{logger: zap.NewNop(), graph: g, maxCalls: 10, notify: n})
			_ = dying.Close() // its lease runs out within a second
			for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				g.mu.Lock()
				got := slices.Clone(g.actions)
				g.mu.Unlock()
				if len(got) >= len(tt.want) {
					if !reflect.DeepEqual(got, tt.want) {
						t.Fatalf("Graph actions = %v; want %v", got, tt.want)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Graph actions after 3s = %v; want %v", got, tt.want)
				}
			}
			select {
			case ev := <-events:
				if ev.Event != eventEnded || ev.CallID != "wacid.orphan" || ev.Reason != reasonNodeLost ||
					ev.PhoneNumberID != "106540352242922" || ev.Direction != directionInbound {
					t.Fatalf("status callback = %+v; want ended, node_lost, with the call's ids", ev)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("no status callback for the lost node's call")
			}
		})
	}
}

// A registry keeps its cluster node across a reload with the same cluster
// settings, and refuses other settings rather than moving live calls.
func TestAttachClusterOnReload(t *testing.T) {
	s := redistest.Start(t, "")
	cfg := callConfig{logger: zap.NewNop(), graph: &recordingGraph{}, maxCalls: 1}
	r := clusteredRegistry(t, s, cfg)
	node := r.link.node
	same := cluster.Config{Addr: s.Addr(), NodeID: "self", ClaimTTL: time.Second, Logger: zap.NewNop()}
	if err := r.attachCluster(same, cfg); err != nil || r.link.node != node {
		t.Fatalf("attachCluster(same settings) = %v, new node %t; want nil and the same node", err, r.link.node != node)
	}
	other := same
	other.NodeID = "renamed"
	if err := r.attachCluster(other, cfg); err == nil || r.link.node != node {
		t.Fatalf("attachCluster(other node id) = %v; want an error and the node kept", err)
	}
}

// A forwarded terminate carries Meta's status and errors, and none of the
// users' numbers, ids or names.
func TestTerminatePayload(t *testing.T) {
	ev := whatsapp.CallEvent{
		PhoneNumberID: "106540352242922",
		CallerName:    "Jane",
		Contact:       whatsapp.Contact{WaID: "15551234567", Profile: whatsapp.Profile{Name: "Jane"}},
		Errors:        []whatsapp.ErrorInfo{{Code: 138021, Title: "No media for a long time."}},
		Call: whatsapp.Call{ID: "wacid.p", From: "15551234567", To: "15550001111", FromUserID: "US.1",
			Event: "terminate", Status: "COMPLETED", Duration: 24},
	}
	raw := terminatePayload(ev)
	for _, secret := range []string{"15551234567", "15550001111", "Jane", "US.1"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("terminatePayload() = %s; holds %q", raw, secret)
		}
	}
	var got whatsapp.CallEvent
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Call.ID != "wacid.p" || got.Call.Status != "COMPLETED" || got.PhoneNumberID != ev.PhoneNumberID ||
		got.Reason() != ev.Reason() || got.Call.Duration != 24 {
		t.Errorf("terminatePayload() round trip = %+v; want the call id, status, number id, reason and duration", got)
	}
}
