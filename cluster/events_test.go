package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func takeEvents(t *testing.T, rec *recorder, n int, within time.Duration) []string {
	t.Helper()
	var got []string
	deadline := time.After(within)
	for len(got) < n {
		select {
		case ev := <-rec.events:
			got = append(got, ev.Kind+"="+string(ev.Payload))
		case <-deadline:
			t.Fatalf("%s got events %v within %s; want %d", rec.node, got, within, n)
		}
	}
	return got
}

// Events forwarded to the owner arrive once each, in order, even though
// each also waits in the queue for the owner's refresh.
func TestForwardEventOnce(t *testing.T) {
	s := startRedis(t)
	a, ra := newNode(t, s, "a", testTTL, make(chan orphan, 1))
	b, _ := newNode(t, s, "b", testTTL, make(chan orphan, 1))
	a.Start()
	ctx := context.Background()
	if _, err := a.Claim(ctx, Call{ID: "wacid.out"}); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, b, a)
	for _, st := range []string{"RINGING", "ACCEPTED", "answer"} {
		if owner, err := b.ForwardEvent(ctx, "wacid.out", "status", []byte(st)); owner != "a" || err != nil {
			t.Fatalf("ForwardEvent(%s) = %q, %v; want a, nil", st, owner, err)
		}
	}
	got := takeEvents(t, ra, 3, 2*testTTL)
	if want := "[status=RINGING status=ACCEPTED status=answer]"; fmt.Sprint(got) != want {
		t.Fatalf("owner's events = %v; want %s", got, want)
	}
	time.Sleep(testTTL) // a refresh drains the queue of the same events
	select {
	case ev := <-ra.events:
		t.Fatalf("event %s=%s delivered twice", ev.Kind, ev.Payload)
	default:
	}
}

// An event forwarded while the owner is not listening waits in the queue
// for the owner's refresh.
func TestForwardEventQueued(t *testing.T) {
	s := startRedis(t)
	a, ra := newNode(t, s, "a", testTTL, make(chan orphan, 1))
	b, _ := newNode(t, s, "b", testTTL, make(chan orphan, 1))
	ctx := context.Background()
	if _, err := a.Claim(ctx, Call{ID: "wacid.q"}); err != nil {
		t.Fatal(err)
	}
	if owner, err := b.ForwardEvent(ctx, "wacid.q", "answer", []byte("v=0")); owner != "a" || !errors.Is(err, ErrOwnerUnreachable) {
		t.Fatalf("ForwardEvent() to a node not subscribed = %q, %v; want a, ErrOwnerUnreachable", owner, err)
	}
	a.Start()
	if got := takeEvents(t, ra, 1, 2*testTTL); got[0] != "answer=v=0" {
		t.Fatalf("queued event = %v; want answer=v=0", got)
	}
}

// An event for a call nobody owns yet is refused, and does not stop the
// call from being claimed afterwards (unlike a terminate).
func TestForwardEventBeforeClaim(t *testing.T) {
	s := startRedis(t)
	a, _ := newNode(t, s, "a", testTTL, make(chan orphan, 1))
	b, _ := newNode(t, s, "b", testTTL, make(chan orphan, 1))
	ctx := context.Background()
	if _, err := b.ForwardEvent(ctx, "wacid.early", "status", []byte("RINGING")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ForwardEvent(unclaimed call) = %v; want ErrNotFound", err)
	}
	if _, err := a.Claim(ctx, Call{ID: "wacid.early"}); err != nil {
		t.Fatalf("Claim() after an early event = %v; want nil", err)
	}
}
