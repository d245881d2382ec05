package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/redistest"
)

// startRedis starts a real redis-server for tb (see redistest).
func startRedis(tb testing.TB) *redistest.Server { return redistest.Start(tb, "") }

// recorder collects what a node hands to its callbacks.
type recorder struct {
	node    string
	hangups chan [2]string
	orphans chan orphan
	events  chan Event
}

type orphan struct {
	by   string
	call Call
}

func newRecorder(node string, orphans chan orphan) *recorder {
	return &recorder{node: node, hangups: make(chan [2]string, 100), orphans: orphans, events: make(chan Event, 100)}
}

// newNode builds and starts a node on s; it is closed in t.Cleanup.
func newNode(t *testing.T, s *redistest.Server, id string, ttl time.Duration, orphans chan orphan) (*Node, *recorder) {
	t.Helper()
	rec := newRecorder(id, orphans)
	n, err := New(Config{
		Addr:     s.Addr(),
		NodeID:   id,
		NodeAddr: "127.0.0.1:" + fmt.Sprint(1000+len(id)),
		ClaimTTL: ttl,
		Timeout:  300 * time.Millisecond,
		OnHangup: func(callID, reason string, _ []byte) { rec.hangups <- [2]string{callID, reason} },
		OnOrphan: func(c Call) { rec.orphans <- orphan{by: id, call: c} },
		OnEvent:  func(_ string, ev Event) { rec.events <- ev },
	})
	if err != nil {
		t.Fatalf("New(%s) = %v", id, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n, rec
}
