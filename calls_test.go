package whatsappcalls

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// recordingGraph is a graphAPI that records the actions asked of it. For
// business-initiated calls it answers connect with connectID (or
// connectErr) and call_permissions with permission (or permErr).
type recordingGraph struct {
	mu      sync.Mutex
	actions []string

	connectID  string
	connectErr error
	permission *whatsapp.Permission
	permErr    error
	offers     []string // the offers connect was sent
	placed     int
	// onConnect, if set, runs before connect returns the call id, as
	// webhooks that overtake connect's answer do.
	onConnect func(id, offer string)
}

func (g *recordingGraph) record(action, callID string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.actions = append(g.actions, action+" "+callID)
	return nil
}

func (g *recordingGraph) PreAccept(_ context.Context, _, callID, _ string) error {
	return g.record("pre_accept", callID)
}

func (g *recordingGraph) Accept(_ context.Context, _, callID, _, _ string) error {
	return g.record("accept", callID)
}

func (g *recordingGraph) Reject(_ context.Context, _, callID string) error {
	return g.record("reject", callID)
}

func (g *recordingGraph) Terminate(_ context.Context, _, callID string) error {
	return g.record("terminate", callID)
}

func (g *recordingGraph) Connect(_ context.Context, _ string, req whatsapp.ConnectRequest) (string, error) {
	g.mu.Lock()
	g.offers = append(g.offers, req.OfferSDP)
	g.mu.Unlock()
	_ = g.record("connect", req.To+req.Recipient)
	if g.connectErr != nil {
		return "", g.connectErr
	}
	g.mu.Lock()
	g.placed++
	id := g.connectID
	if id == "" {
		id = fmt.Sprintf("wacid.OUT%d", g.placed)
	}
	g.mu.Unlock()
	if g.onConnect != nil {
		g.onConnect(id, req.OfferSDP)
	}
	return id, nil
}

func (g *recordingGraph) CallPermission(_ context.Context, _, user string) (*whatsapp.Permission, error) {
	_ = g.record("call_permissions", user)
	if g.permErr != nil {
		return nil, g.permErr
	}
	if g.permission == nil {
		return &whatsapp.Permission{Status: whatsapp.PermissionPermanent}, nil
	}
	return g.permission, nil
}

func (g *recordingGraph) SendPermissionRequest(_ context.Context, _ string, req whatsapp.PermissionRequest) (string, error) {
	return "wamid.TEST", g.record("call_permission_request", req.To+req.Recipient)
}

func (g *recordingGraph) calls() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.actions...)
}

func connectEvent(id string) whatsapp.CallEvent {
	return whatsapp.CallEvent{PhoneNumberID: "1", Call: whatsapp.Call{ID: id, Event: whatsapp.EventConnect}}
}

func TestRegistryOverCapacityRejectsOnce(t *testing.T) {
	g := &recordingGraph{}
	r := newRegistry(nil)
	cfg := callConfig{logger: zap.NewNop(), graph: g, maxCalls: 0}
	r.connect(connectEvent("wacid.1"), cfg)
	r.connect(connectEvent("wacid.1"), cfg) // a retried delivery
	r.connect(connectEvent("wacid.2"), cfg)
	if err := r.Destruct(); err != nil {
		t.Fatal(err)
	}
	want := []string{"reject wacid.1", "reject wacid.2"}
	if got := g.actions; len(got) != 2 || !(reflect.DeepEqual(got, want) || reflect.DeepEqual(got, []string{want[1], want[0]})) {
		t.Errorf("Graph actions = %v; want %v, once each", got, want)
	}
}

func TestRegistryIgnoresConnectAfterDestruct(t *testing.T) {
	g := &recordingGraph{}
	r := newRegistry(nil)
	if err := r.Destruct(); err != nil {
		t.Fatal(err)
	}
	r.connect(connectEvent("wacid.late"), callConfig{logger: zap.NewNop(), graph: g, maxCalls: 0})
	r.wg.Wait()
	if len(g.actions) != 0 || len(r.live) != 0 {
		t.Errorf("after Destruct: Graph actions %v, live calls %d; want none", g.actions, len(r.live))
	}
}

func TestRegistryDedupeWindow(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	now := start
	r := newRegistry(nil)
	r.now = func() time.Time { return now }

	tests := []struct {
		name     string
		after    time.Duration
		remember string
		want     []string
	}{
		{"first id", 0, "wacid.a", []string{"wacid.a"}},
		{"within a minute no prune", 30 * time.Second, "wacid.b", []string{"wacid.a", "wacid.b"}},
		{"within the window all kept", 59 * time.Minute, "wacid.c", []string{"wacid.a", "wacid.b", "wacid.c"}},
		{"past the window the old go", 90 * time.Minute, "wacid.d", []string{"wacid.c", "wacid.d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = start.Add(tt.after)
			r.mu.Lock()
			r.remember(tt.remember)
			var got []string
			for id := range r.seen {
				got = append(got, id)
			}
			r.mu.Unlock()
			if !sameSet(got, tt.want) {
				t.Errorf("seen after remember(%q) at +%s = %v; want %v", tt.remember, tt.after, got, tt.want)
			}
		})
	}
}

func TestRegistryTerminateBeforeConnect(t *testing.T) {
	g := &recordingGraph{}
	r := newRegistry(nil)
	cfg := callConfig{logger: zap.NewNop(), graph: g, maxCalls: 0}
	r.terminate(whatsapp.CallEvent{Call: whatsapp.Call{ID: "wacid.early", Event: whatsapp.EventTerminate}}, cfg)
	r.connect(connectEvent("wacid.early"), cfg) // delivered late: must do nothing
	if err := r.Destruct(); err != nil {
		t.Fatal(err)
	}
	if len(g.actions) != 0 {
		t.Errorf("Graph actions = %v; want none for a call Meta already ended", g.actions)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[string]int)
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}
