package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/redistest"
)

const testTTL = 900 * time.Millisecond

func waitHangup(t *testing.T, rec *recorder, wantID, wantReason string, within time.Duration) {
	t.Helper()
	select {
	case got := <-rec.hangups:
		if got != [2]string{wantID, wantReason} {
			t.Fatalf("%s OnHangup(%q, %q); want (%q, %q)", rec.node, got[0], got[1], wantID, wantReason)
		}
	case <-time.After(within):
		t.Fatalf("%s: no OnHangup(%q) within %s", rec.node, wantID, within)
	}
}

func TestNewValidates(t *testing.T) {
	noop := func(string, string, []byte) {}
	noorphan := func(Call) {}
	tests := []struct {
		name    string
		give    Config
		wantErr string
	}{
		{"ok", Config{Addr: "127.0.0.1:1", NodeID: "a", OnHangup: noop, OnOrphan: noorphan}, ""},
		{"no addr", Config{NodeID: "a", OnHangup: noop, OnOrphan: noorphan}, "redis address is required"},
		{"no node id", Config{Addr: "x:1", OnHangup: noop, OnOrphan: noorphan}, "node id is required"},
		{"space in node id", Config{Addr: "x:1", NodeID: "a b", OnHangup: noop, OnOrphan: noorphan}, "white space"},
		{"short ttl", Config{Addr: "x:1", NodeID: "a", ClaimTTL: time.Millisecond, OnHangup: noop, OnOrphan: noorphan}, "under 300ms"},
		{"no callbacks", Config{Addr: "x:1", NodeID: "a"}, "OnHangup and OnOrphan are required"},
		{"secret not in error", Config{Password: "hunter2", NodeID: "a", OnHangup: noop, OnOrphan: noorphan}, "redis address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(tt.give)
			if n != nil {
				defer n.Close()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New() = %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !contains(err.Error(), tt.wantErr)):
				t.Fatalf("New() = %v; want an error containing %q", err, tt.wantErr)
			case err != nil && contains(err.Error(), "hunter2"):
				t.Fatalf("New() = %v; the error shows the password", err)
			}
		})
	}
}

func contains(s, sub string) bool { return len(sub) == 0 || (len(s) >= len(sub) && index(s, sub) >= 0) }

func index(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// A connect retried on every node at once is claimed exactly once.
func TestClaimOnceAcrossNodes(t *testing.T) {
	s := startRedis(t)
	orphans := make(chan orphan, 10)
	var nodes []*Node
	for _, id := range []string{"a", "b", "c"} {
		n, _ := newNode(t, s, id, testTTL, orphans)
		n.Start()
		nodes = append(nodes, n)
	}
	ctx := context.Background()
	for round := range 20 {
		id := fmt.Sprintf("wacid.race%d", round)
		var mu sync.Mutex
		var winners []string
		var dups [][2]string // claiming node, holder named
		var wg sync.WaitGroup
		for _, n := range nodes {
			for range 3 {
				wg.Go(func() {
					holder, err := n.Claim(ctx, Call{ID: id, PhoneNumberID: "106540352242922"})
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						winners = append(winners, n.ID())
					case errors.Is(err, ErrDuplicate):
						dups = append(dups, [2]string{n.ID(), holder})
					default:
						t.Errorf("Claim(%s) on %s = %v", id, n.ID(), err)
					}
				})
			}
		}
		wg.Wait()
		if len(winners) != 1 || len(dups) != 8 {
			t.Fatalf("Claim(%s): %d winners %v, %d duplicates; want 1 and 8", id, len(winners), winners, len(dups))
		}
		for _, d := range dups {
			// A claim racing one in flight on the same node names that node.
			if d[1] != winners[0] && d[1] != d[0] {
				t.Fatalf("Claim(%s) on %s names holder %q; want %q", id, d[0], d[1], winners[0])
			}
		}
	}
}

// A released call stays deduplicated, and leaves the list.
func TestReleaseKeepsDedupe(t *testing.T) {
	s := startRedis(t)
	a, _ := newNode(t, s, "a", testTTL, make(chan orphan, 1))
	b, _ := newNode(t, s, "b", testTTL, make(chan orphan, 1))
	ctx := context.Background()
	if _, err := a.Claim(ctx, Call{ID: "wacid.1", PhoneNumberID: "p"}); err != nil {
		t.Fatal(err)
	}
	a.Release("wacid.1")
	if calls, err := b.List(ctx); err != nil || len(calls) != 0 {
		t.Fatalf("List() after release = %v, %v; want none", calls, err)
	}
	for _, n := range []*Node{a, b} {
		if holder, err := n.Claim(ctx, Call{ID: "wacid.1"}); !errors.Is(err, ErrDuplicate) || holder != "a" {
			t.Fatalf("%s.Claim(released call) = %q, %v; want a, ErrDuplicate", n.ID(), holder, err)
		}
	}
}

// A terminate that lands before its connect makes the connect a duplicate
// wherever it lands.
func TestTerminateBeforeConnect(t *testing.T) {
	s := startRedis(t)
	a, _ := newNode(t, s, "a", testTTL, make(chan orphan, 1))
	b, _ := newNode(t, s, "b", testTTL, make(chan orphan, 1))
	ctx := context.Background()
	if owner, err := a.Forward(ctx, "wacid.early", "meta_terminate", nil); !errors.Is(err, ErrNotFound) || owner != "" {
		t.Fatalf("Forward(unknown call) = %q, %v; want ErrNotFound", owner, err)
	}
	if holder, err := b.Claim(ctx, Call{ID: "wacid.early"}); !errors.Is(err, ErrDuplicate) || holder != "~ended" {
		t.Fatalf("Claim(terminated call) = %q, %v; want ~ended, ErrDuplicate", holder, err)
	}
}

// A hang-up forwarded from any node reaches the owner, once, and none
// reaches a node that does not own the call.
func TestForwardReachesOwner(t *testing.T) {
	s := startRedis(t)
	orphans := make(chan orphan, 1)
	a, ra := newNode(t, s, "a", testTTL, orphans)
	b, rb := newNode(t, s, "b", testTTL, orphans)
	c, _ := newNode(t, s, "c", testTTL, orphans)
	for _, n := range []*Node{a, b, c} {
		n.Start()
	}
	ctx := context.Background()
	if _, err := a.Claim(ctx, Call{ID: "wacid.f", PhoneNumberID: "p"}); err != nil {
		t.Fatal(err)
	}
	// The subscription is asynchronous; a forward may beat it and then the
	// marker delivers, which is also a pass.
	owner, err := b.Forward(ctx, "wacid.f", "meta_terminate", nil)
	if owner != "a" || (err != nil && !errors.Is(err, ErrOwnerUnreachable)) {
		t.Fatalf("Forward() = %q, %v; want a", owner, err)
	}
	waitHangup(t, ra, "wacid.f", "meta_terminate", 2*testTTL)
	if _, err := c.Forward(ctx, "wacid.f", "api", nil); err != nil {
		t.Fatalf("second Forward() = %v", err)
	}
	if owner, err := a.Forward(ctx, "wacid.f", "api", nil); owner != "a" || err != nil {
		t.Fatalf("owner's own Forward() = %q, %v; want a, nil", owner, err)
	}
	time.Sleep(testTTL) // a refresh runs, with the marker still set
	select {
	case got := <-ra.hangups:
		t.Fatalf("OnHangup called twice for one call: %v", got)
	case got := <-rb.hangups:
		t.Fatalf("a node that owns nothing got OnHangup %v", got)
	default:
	}
}

// A hang-up published while the owner is not listening is delivered by
// the marker at the owner's next refresh.
func TestForwardMarkerWhenOwnerNotListening(t *testing.T) {
	s := startRedis(t)
	a, ra := newNode(t, s, "a", testTTL, make(chan orphan, 1))
	b, _ := newNode(t, s, "b", testTTL, make(chan orphan, 1))
	ctx := context.Background()
	if _, err := a.Claim(ctx, Call{ID: "wacid.m"}); err != nil {
		t.Fatal(err)
	}
	if owner, err := b.Forward(ctx, "wacid.m", "twilio_rest", nil); owner != "a" || !errors.Is(err, ErrOwnerUnreachable) {
		t.Fatalf("Forward() to a node not subscribed = %q, %v; want a, ErrOwnerUnreachable", owner, err)
	}
	a.Start()
	waitHangup(t, ra, "wacid.m", "twilio_rest", 2*testTTL)
}

// The calls of a node that died are ended by exactly one peer, within
// 1.5 ClaimTTL (plus a tick of slack), and the list shows them until then.
func TestSweepEndsDeadNodesCalls(t *testing.T) {
	s := startRedis(t)
	orphans := make(chan orphan, 10)
	dead, _ := newNode(t, s, "dead", testTTL, orphans)
	b, _ := newNode(t, s, "b", testTTL, orphans)
	c, _ := newNode(t, s, "c", testTTL, orphans)
	dead.Start()
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 3 {
		id := fmt.Sprintf("wacid.d%d", i)
		if _, err := dead.Claim(ctx, Call{ID: id, PhoneNumberID: "106540352242922", Direction: "USER_INITIATED"}); err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	if _, err := b.Claim(ctx, Call{ID: "wacid.alive", PhoneNumberID: "p"}); err != nil {
		t.Fatal(err)
	}
	b.Start()
	c.Start()
	killed := time.Now()
	_ = dead.Close() // stops refreshing: the leases run out
	for len(want) > 0 {
		select {
		case o := <-orphans:
			if !want[o.call.ID] {
				t.Fatalf("OnOrphan(%s) by %s: not a dead node's call, or twice", o.call.ID, o.by)
			}
			if o.call.PhoneNumberID != "106540352242922" || o.call.Node != "dead" || !o.call.Orphaned {
				t.Fatalf("OnOrphan(%+v): want the call's phone number id, owner and Orphaned", o.call)
			}
			delete(want, o.call.ID)
		case <-time.After(3 * testTTL):
			t.Fatalf("calls %v not swept within %s", want, 3*testTTL)
		}
	}
	if took, bound := time.Since(killed), testTTL*3/2+testTTL/2; took > bound {
		t.Errorf("sweep took %s; want under %s", took, bound)
	}
	select {
	case o := <-orphans:
		t.Fatalf("OnOrphan(%s) by %s after every dead call was swept", o.call.ID, o.by)
	case <-time.After(testTTL):
	}
	calls, err := c.List(ctx)
	if err != nil || len(calls) != 1 || calls[0].ID != "wacid.alive" || calls[0].Orphaned {
		t.Fatalf("List() after the sweep = %+v, %v; want only b's live call", calls, err)
	}
}

// List shows every node's calls, oldest first, without phone numbers.
func TestListClusterWide(t *testing.T) {
	s := startRedis(t)
	a, _ := newNode(t, s, "a", testTTL, make(chan orphan, 1))
	b, _ := newNode(t, s, "b", testTTL, make(chan orphan, 1))
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, n := range []*Node{a, b, a} {
		if _, err := n.Claim(ctx, Call{ID: fmt.Sprintf("wacid.l%d", i), PhoneNumberID: "p", Started: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	calls, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range calls {
		got = append(got, c.ID+"@"+c.Node)
	}
	if want := "[wacid.l0@a wacid.l1@b wacid.l2@a]"; fmt.Sprint(got) != want {
		t.Fatalf("List() = %v; want %s", got, want)
	}
}

// A Redis crash (every key lost) breaks nothing: a claim during the outage
// returns ErrUnavailable and the call stays this node's; once Redis is back
// the owners record their calls again, forwarding works again, and no live
// call is swept.
func TestRedisRestart(t *testing.T) {
	s := startRedis(t)
	orphans := make(chan orphan, 10)
	a, ra := newNode(t, s, "a", testTTL, orphans)
	b, _ := newNode(t, s, "b", testTTL, orphans)
	a.Start()
	b.Start()
	ctx := context.Background()
	if _, err := a.Claim(ctx, Call{ID: "wacid.before", PhoneNumberID: "p"}); err != nil {
		t.Fatal(err)
	}

	s.Stop()
	if holder, err := a.Claim(ctx, Call{ID: "wacid.during", PhoneNumberID: "p"}); !errors.Is(err, ErrUnavailable) || holder != "a" {
		t.Fatalf("Claim() with Redis down = %q, %v; want a, ErrUnavailable", holder, err)
	}
	if _, err := b.Forward(ctx, "wacid.before", "meta_terminate", nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Forward() with Redis down = %v; want ErrUnavailable", err)
	}
	if _, err := b.List(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("List() with Redis down = %v; want ErrUnavailable", err)
	}
	time.Sleep(testTTL) // the loops fail for a while
	s.Restart()

	deadline := time.Now().Add(5 * testTTL)
	for {
		calls, err := b.List(ctx)
		if err == nil && len(calls) == 2 && !calls[0].Orphaned && !calls[1].Orphaned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("List() after Redis came back = %+v, %v; want both of a's calls", calls, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if holder, err := b.Claim(ctx, Call{ID: "wacid.during"}); !errors.Is(err, ErrDuplicate) || holder != "a" {
		t.Fatalf("Claim() of a call recorded after the outage = %q, %v; want a, ErrDuplicate", holder, err)
	}
	// The subscriber reconnects on its own; retry until it has.
	deadline = time.Now().Add(5 * testTTL)
	for {
		_, err := b.Forward(ctx, "wacid.during", "api", nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Forward() after Redis came back = %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitHangup(t, ra, "wacid.during", "api", 2*testTTL)
	select {
	case o := <-orphans:
		t.Fatalf("live call %s swept by %s after the outage", o.call.ID, o.by)
	case <-time.After(testTTL):
	}
}

// A node authenticates with its password; a wrong one fails every call
// with ErrUnavailable and an error that does not show it.
func TestPassword(t *testing.T) {
	s := redistest.Start(t, "right-password-123")
	tests := []struct {
		name     string
		password string
		wantErr  error
	}{
		{"right", "right-password-123", nil},
		{"wrong", "wrong-password-456", ErrUnavailable},
		{"none", "", ErrUnavailable},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(Config{Addr: s.Addr(), Password: tt.password, NodeID: "a",
				OnHangup: func(string, string, []byte) {}, OnOrphan: func(Call) {}})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			_, err = n.Claim(context.Background(), Call{ID: fmt.Sprintf("wacid.pw%d", i)})
			if !errors.Is(err, tt.wantErr) && !(tt.wantErr == nil && err == nil) {
				t.Fatalf("Claim() with the %s password = %v; want %v", tt.name, err, tt.wantErr)
			}
			if err != nil && tt.password != "" && contains(err.Error(), tt.password) {
				t.Fatalf("Claim() error %q shows the password", err)
			}
		})
	}
}

// A node started while Redis is down subscribes and records its calls
// once Redis is up, without a restart.
func TestRedisDownAtStart(t *testing.T) {
	s := startRedis(t)
	s.Stop()
	a, ra := newNode(t, s, "a", testTTL, make(chan orphan, 1))
	b, _ := newNode(t, s, "b", testTTL, make(chan orphan, 1))
	a.Start()
	b.Start()
	ctx := context.Background()
	if _, err := a.Claim(ctx, Call{ID: "wacid.early"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Claim() with Redis down = %v; want ErrUnavailable", err)
	}
	time.Sleep(testTTL / 2)
	s.Restart()
	deadline := time.Now().Add(5 * testTTL)
	for {
		_, err := b.Forward(ctx, "wacid.early", "api", nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Forward() after Redis came up = %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitHangup(t, ra, "wacid.early", "api", 2*testTTL)
}

// A node restarted under the same id ends the calls its previous run left.
func TestRestartedNodeSweepsItsPredecessor(t *testing.T) {
	s := startRedis(t)
	orphans := make(chan orphan, 4)
	before, _ := newNode(t, s, "a", testTTL, orphans)
	before.Start()
	if _, err := before.Claim(context.Background(), Call{ID: "wacid.left", PhoneNumberID: "p"}); err != nil {
		t.Fatal(err)
	}
	_ = before.Close() // a crash: nothing released
	after, _ := newNode(t, s, "a", testTTL, orphans)
	after.Start()
	select {
	case o := <-orphans:
		if o.call.ID != "wacid.left" || o.by != "a" {
			t.Fatalf("OnOrphan(%s) by %s; want wacid.left by the restarted a", o.call.ID, o.by)
		}
	case <-time.After(3 * testTTL):
		t.Fatal("the previous run's call was never swept")
	}
}

// A hang-up's payload reaches the owner by the channel and by the marker.
func TestForwardCarriesPayload(t *testing.T) {
	s := startRedis(t)
	got := make(chan string, 4)
	a, err := New(Config{Addr: s.Addr(), NodeID: "a", ClaimTTL: testTTL,
		OnHangup: func(id, reason string, payload []byte) { got <- id + " " + reason + " " + string(payload) },
		OnOrphan: func(Call) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := newNode(t, s, "b", testTTL, make(chan orphan, 1))
	ctx := context.Background()
	for _, id := range []string{"wacid.marker", "wacid.channel"} {
		if _, err := a.Claim(ctx, Call{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	// Before a listens: the marker carries it.
	_, _ = b.Forward(ctx, "wacid.marker", "meta_terminate", []byte(`{"status":"COMPLETED"}`))
	a.Start()
	waitSubscribed(t, b, a)
	if _, err := b.Forward(ctx, "wacid.channel", "meta_terminate", []byte(`{"status":"FAILED"}`)); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		`wacid.marker meta_terminate {"status":"COMPLETED"}`: true,
		`wacid.channel meta_terminate {"status":"FAILED"}`:   true,
	}
	for len(want) > 0 {
		select {
		case g := <-got:
			if g == probeCall+" probe " {
				continue
			}
			if !want[g] {
				t.Fatalf("OnHangup(%s); want one of %v", g, want)
			}
			delete(want, g)
		case <-time.After(3 * testTTL):
			t.Fatalf("hang-ups %v never arrived", want)
		}
	}
}
