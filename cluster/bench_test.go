package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkForwardHangup measures a hang-up landing on one node until the
// owner's OnHangup runs: the forward script (marker and PUBLISH) and the
// owner's subscriber, through a real redis-server on loopback.
func BenchmarkForwardHangup(b *testing.B) {
	s := startRedis(b)
	got := make(chan string, 1)
	mk := func(id string, onHangup func(string, string, []byte)) *Node {
		n, err := New(Config{Addr: s.Addr(), NodeID: id, ClaimTTL: time.Minute,
			OnHangup: onHangup, OnOrphan: func(Call) {}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = n.Close() })
		n.Start()
		return n
	}
	owner := mk("owner", func(id, _ string, _ []byte) {
		if id != probeCall {
			got <- id
		}
	})
	other := mk("other", func(string, string, []byte) {})
	ctx := context.Background()
	waitSubscribed(b, other, owner)

	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		id := fmt.Sprintf("wacid.bench%d", i)
		if _, err := owner.Claim(ctx, Call{ID: id, PhoneNumberID: "p"}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := other.Forward(ctx, id, "meta_terminate", nil); err != nil {
			b.Fatal(err)
		}
		if <-got != id {
			b.Fatal("wrong call hung up")
		}
		b.StopTimer()
		owner.Release(id)
		b.StartTimer()
	}
}

const probeCall = "wacid.probe"

// waitSubscribed forwards a hang-up of a probe call until the owner's
// subscriber receives it.
func waitSubscribed(tb testing.TB, from, owner *Node) {
	tb.Helper()
	ctx := context.Background()
	if _, err := owner.Claim(ctx, Call{ID: probeCall}); err != nil {
		tb.Fatal(err)
	}
	defer owner.Release(probeCall)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := from.Forward(ctx, probeCall, "probe", nil); err == nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatal("owner never subscribed")
		}
	}
}

// BenchmarkRedisRoundTrip is the floor for BenchmarkForwardHangup: one
// PING to the same kind of redis-server, through the node's own client.
func BenchmarkRedisRoundTrip(b *testing.B) {
	s := startRedis(b)
	n, err := New(Config{Addr: s.Addr(), NodeID: "ping", OnHangup: func(string, string, []byte) {}, OnOrphan: func(Call) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if err := n.rdb.Ping(ctx).Err(); err != nil {
			b.Fatal(err)
		}
	}
}
