package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Defaults of the optional Config fields.
const (
	DefaultKeyPrefix    = "whatsapp_calls:"
	DefaultClaimTTL     = 15 * time.Second
	DefaultDedupeWindow = time.Hour
	// DefaultTimeout bounds each Redis round trip, so that an outage
	// costs a webhook at most this long.
	DefaultTimeout = time.Second
)

// Config describes one node of a cluster.
type Config struct {
	// Addr is the Redis server's host:port. Required.
	Addr string
	// Username and Password authenticate to Redis (ACL or requirepass).
	// Both are optional; neither is ever logged.
	Username string
	Password string
	// DB is the Redis database number. Default: 0.
	DB int
	// TLS, if set, connects to Redis over TLS with this configuration.
	TLS *tls.Config

	// KeyPrefix starts every key and channel name, so that several
	// clusters can share one Redis. Default: "whatsapp_calls:".
	KeyPrefix string
	// NodeID names this node; it must be unique in the cluster and
	// stable across restarts of one node (so that a restarted node
	// sweeps the calls its previous run left). Required.
	NodeID string
	// NodeAddr is the node's internal address (host:port), reported in
	// the call list so that operators know where a call's media lives.
	// Optional.
	NodeAddr string

	// ClaimTTL is the lifetime of a call's lease; the owner refreshes it
	// every third of it. A dead node's calls are swept between ClaimTTL
	// and 1.5 ClaimTTL after its last refresh. Default: 15s.
	ClaimTTL time.Duration
	// DedupeWindow is how long a call id stays claimed after its connect,
	// so that a retried connect on any node does nothing. Default: 1h.
	DedupeWindow time.Duration
	// Timeout bounds each Redis round trip. Default: 1s.
	Timeout time.Duration

	// Logger receives the node's logs. Default: none.
	Logger *zap.Logger

	// OnHangup is called, on the node's own goroutine, for a hang-up of a
	// call this node owns that another node forwarded (or that this node
	// found as a marker). It must not block; the same call may be handed
	// over more than once. Required.
	OnHangup func(callID, reason string, payload []byte)
	// OnOrphan is called, on the node's own goroutine, with a call whose
	// owner's lease expired (the owner died) and that this node won the
	// right to end: it must terminate the call toward Meta. It may block
	// for a Graph request. Required.
	OnOrphan func(Call)
	// OnEvent, if set, is called on the node's own goroutine with an
	// event for a call this node owns that another node forwarded (such
	// as Meta's answer or status webhooks of a call this node placed),
	// once per event. It must not block. Default: events are dropped.
	OnEvent func(callID string, ev Event)
}

// Call is one live call as the cluster knows it. It holds no phone numbers.
type Call struct {
	// ID is the WhatsApp call id.
	ID string `json:"id"`
	// PhoneNumberID is the business phone number id the call is on, which
	// a peer needs to terminate it.
	PhoneNumberID string `json:"phone_number_id"`
	// Direction is USER_INITIATED or BUSINESS_INITIATED.
	Direction string `json:"direction,omitempty"`
	// Node is the owner's node id; NodeAddr its internal address.
	Node     string `json:"node"`
	NodeAddr string `json:"node_addr,omitempty"`
	// Started is when the owner claimed the call.
	Started time.Time `json:"started"`
	// Orphaned is set in List for a call whose owner's lease has expired
	// and that the sweep has not ended yet.
	Orphaned bool `json:"orphaned,omitempty"`
}

func (c Config) withDefaults() Config {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.ClaimTTL <= 0 {
		c.ClaimTTL = DefaultClaimTTL
	}
	if c.DedupeWindow <= 0 {
		c.DedupeWindow = DefaultDedupeWindow
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("redis address is required"))
	}
	if c.NodeID == "" {
		errs = append(errs, errors.New("node id is required"))
	}
	if strings.ContainsAny(c.NodeID, " \t\r\n") {
		errs = append(errs, fmt.Errorf("node id %q has white space", c.NodeID))
	}
	if c.ClaimTTL < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("claim ttl %s is under 300ms", c.ClaimTTL))
	}
	if c.OnHangup == nil || c.OnOrphan == nil {
		errs = append(errs, errors.New("OnHangup and OnOrphan are required"))
	}
	return errors.Join(errs...)
}
