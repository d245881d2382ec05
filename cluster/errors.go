package cluster

import "errors"

// Errors that callers match with errors.Is.
var (
	// ErrDuplicate means the call id was claimed before, by this node or
	// another, or was terminated before its connect arrived: a retried
	// connect, to be acknowledged and ignored.
	ErrDuplicate = errors.New("call already claimed")

	// ErrUnavailable means Redis could not be reached. Claim has then
	// remembered the call locally, and records it once Redis is back.
	ErrUnavailable = errors.New("redis unavailable")

	// ErrNotFound means no node holds a lease on the call: it ended, was
	// never answered, or its owner died and the sweep will end it.
	ErrNotFound = errors.New("no node owns the call")

	// ErrOwnerUnreachable means the owner holds the call's lease but is
	// not listening on its channel right now; the hang-up marker it
	// left is picked up by the owner's next refresh.
	ErrOwnerUnreachable = errors.New("call owner not subscribed")

	// ErrClosed means the Node was closed.
	ErrClosed = errors.New("cluster node closed")
)
