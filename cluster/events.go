package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"go.uber.org/zap"
)

// Event is something for a call that must reach its owner, such as Meta's
// answer or status webhook for a call the owner placed.
type Event struct {
	// ID tells the event's copies apart; ForwardEvent sets it.
	ID string `json:"id"`
	// Kind names the event for the owner's handler.
	Kind string `json:"kind"`
	// Payload is the event's data, opaque to the cluster.
	Payload []byte `json:"payload,omitempty"`
}

// ForwardEvent hands an event for a call that this node does not hold to
// the call's owner, and returns the owner's node id. The owner gets it
// once, at once on its channel or else from the queue at its next refresh
// (then the error wraps ErrOwnerUnreachable).
//
// A call nobody owns returns ErrNotFound: unlike a hang-up, an event may
// come before the owner's claim (a status webhook that overtakes the
// answer to the connect request), so the caller may retry it. A call this
// node owns returns this node's id and nil: it is the caller's to handle.
func (n *Node) ForwardEvent(ctx context.Context, callID, kind string, payload []byte) (string, error) {
	var id [8]byte
	_, _ = rand.Read(id[:])
	msg, err := json.Marshal(wireMessage{CallID: callID, From: n.cfg.NodeID,
		Event: &Event{ID: hex.EncodeToString(id[:]), Kind: kind, Payload: payload}})
	if err != nil {
		return "", fmt.Errorf("forward %s of %s: %w", kind, callID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	res, err := eventScript.Run(ctx, n.rdb,
		[]string{n.key("lease", callID), n.key("events", callID)},
		string(msg), ms(2*n.cfg.ClaimTTL), n.key("node", ""), n.cfg.NodeID).Slice()
	n.setHealthy(err)
	if err != nil {
		return "", fmt.Errorf("forward %s of %s: %w: %w", kind, callID, ErrUnavailable, err)
	}
	owner, _ := res[0].(string)
	switch {
	case owner == "":
		return "", fmt.Errorf("forward %s of %s: %w", kind, callID, ErrNotFound)
	case owner != n.cfg.NodeID && toInt(res[1]) == 0:
		return owner, fmt.Errorf("forward %s of %s to %s: %w", kind, callID, owner, ErrOwnerUnreachable)
	}
	return owner, nil
}

// firstEvent records an event id and reports whether it is new. n.mu must
// be held.
func (oc *ownedCall) firstEvent(id string) bool {
	if _, dup := oc.events[id]; dup {
		return false
	}
	if oc.events == nil {
		oc.events = make(map[string]struct{})
	}
	oc.events[id] = struct{}{}
	return true
}

func (n *Node) onEvent(m wireMessage) {
	if n.cfg.OnEvent == nil {
		if ce := n.log.Check(zap.DebugLevel, "forwarded event dropped: no handler"); ce != nil {
			ce.Write(zap.String("call_id", m.CallID), zap.String("kind", m.Event.Kind))
		}
		return
	}
	n.cfg.OnEvent(m.CallID, *m.Event)
}
