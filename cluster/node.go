package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Node is one node's view of the cluster. Its methods are safe for
// concurrent use. Start runs its background loops; Close stops and joins
// them.
type Node struct {
	cfg Config
	rdb *redis.Client
	log *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the loops and each orphan being ended

	startOnce sync.Once
	closeOnce sync.Once
	psMu      sync.Mutex
	ps        *redis.PubSub

	// opMu orders the refresh against Release, so that a refresh never
	// records again a call released meanwhile.
	opMu sync.Mutex

	mu       sync.Mutex
	calls    map[string]*ownedCall // calls this node owns
	releases map[string]struct{}   // ended calls whose release awaits Redis
	closed   bool

	healthy atomic.Bool
}

// ownedCall is a call this node claimed.
type ownedCall struct {
	call     Call
	json     string
	claiming bool                // Claim's script has not answered yet
	recorded bool                // Redis holds its lease
	hungUp   bool                // OnHangup was called
	events   map[string]struct{} // ids of the events delivered
	lost     bool                // another node holds its lease (answered twice during an outage)
}

// wireMessage is what a node publishes on the owner's channel: a hang-up
// (Reason) or an event.
type wireMessage struct {
	CallID  string `json:"call_id"`
	Reason  string `json:"reason,omitempty"`
	Payload []byte `json:"payload,omitempty"` // of a hang-up
	Event   *Event `json:"event,omitempty"`
	From    string `json:"from"`
}

// New validates cfg and builds a Node. It does no I/O: Redis is first
// dialed by Start or by the first call.
func New(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{
		Addr:            cfg.Addr,
		Username:        cfg.Username,
		Password:        cfg.Password,
		DB:              cfg.DB,
		TLSConfig:       cfg.TLS,
		DialTimeout:     cfg.Timeout,
		ReadTimeout:     cfg.Timeout,
		WriteTimeout:    cfg.Timeout,
		PoolTimeout:     cfg.Timeout,
		MaxRetries:      1,
		DialerRetries:   1,
		DisableIdentity: true,
		ClientName:      "whatsapp_calls:" + cfg.NodeID,
	})
	useRedisLogger(cfg.Logger)
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:      cfg,
		rdb:      rdb,
		log:      cfg.Logger,
		ctx:      ctx,
		cancel:   cancel,
		calls:    make(map[string]*ownedCall),
		releases: make(map[string]struct{}),
	}
	n.healthy.Store(true)
	return n, nil
}

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Start runs the node's loops: the lease refresh, the subscriber to the
// node's channel, and the sweep of dead nodes' calls. It returns at once;
// Redis need not be up.
func (n *Node) Start() {
	n.startOnce.Do(func() {
		ps := n.rdb.Subscribe(n.ctx, n.channel(n.cfg.NodeID))
		n.psMu.Lock()
		n.ps = ps
		n.psMu.Unlock()
		n.wg.Add(3)
		go n.subscribeLoop(ps)
		go n.tick(n.cfg.ClaimTTL/3, n.refresh)
		go n.tick(n.cfg.ClaimTTL/3, n.sweep)
	})
}

// Close stops the loops and waits for them and for every orphan being
// ended, then closes the Redis client. Calls still owned keep their
// leases, which expire unless another run of this node id takes them
// over; the caller ends its calls (and releases them) before Close.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		n.cancel()
		n.psMu.Lock()
		if n.ps != nil {
			_ = n.ps.Close()
		}
		n.psMu.Unlock()
		n.wg.Wait()
		err = n.rdb.Close()
	})
	return err
}

func (n *Node) key(parts ...string) string {
	k := n.cfg.KeyPrefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

func (n *Node) channel(node string) string { return n.key("node", node) }
func (n *Node) callsKey() string           { return n.key("calls") }
func ms(d time.Duration) string            { return strconv.FormatInt(d.Milliseconds(), 10) }

// Claim takes the call for this node, atomically across the cluster.
//
// It returns nil when this node now owns the call. A call id claimed before
// (on any node, within the dedupe window) or terminated before its connect
// returns ErrDuplicate and the node that holds it ("~ended" for a call
// terminated first; this node for a claim of the same id still in flight
// here). When Redis cannot be reached, it returns an error
// wrapping ErrUnavailable: the call is then this node's, and the refresh
// loop records it once Redis is back; deduplication is the caller's
// local one meanwhile.
func (n *Node) Claim(ctx context.Context, c Call) (string, error) {
	self := n.cfg.NodeID
	c.Node, c.NodeAddr, c.Orphaned = self, n.cfg.NodeAddr, false
	if c.Started.IsZero() {
		c.Started = time.Now()
	}
	c.Started = c.Started.UTC().Truncate(time.Millisecond)
	raw, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("claim call %s: %w", c.ID, err)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return "", ErrClosed
	}
	if _, ok := n.calls[c.ID]; ok {
		n.mu.Unlock()
		return self, fmt.Errorf("claim call %s: %w", c.ID, ErrDuplicate)
	}
	// Listed before Redis answers, so that a hang-up forwarded right after
	// the claim finds the call.
	oc := &ownedCall{call: c, json: string(raw), claiming: true}
	n.calls[c.ID] = oc
	n.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	res, err := claimScript.Run(rctx, n.rdb,
		[]string{n.key("seen", c.ID), n.key("lease", c.ID), n.callsKey()},
		self, ms(n.cfg.ClaimTTL), ms(n.cfg.DedupeWindow), c.ID, string(raw)).Slice()
	if err != nil && ctx.Err() != nil {
		// The caller gave up: nothing is known of the claim, so the call
		// is not this node's.
		n.mu.Lock()
		if n.calls[c.ID] == oc {
			delete(n.calls, c.ID)
		}
		n.mu.Unlock()
		return "", fmt.Errorf("claim call %s: %w", c.ID, ctx.Err())
	}
	if err != nil {
		n.setHealthy(err)
		n.mu.Lock()
		oc.claiming = false
		n.mu.Unlock()
		return self, fmt.Errorf("claim call %s: %w: %w", c.ID, ErrUnavailable, err)
	}
	n.setHealthy(nil)
	if len(res) == 2 && toInt(res[0]) == 1 {
		n.mu.Lock()
		oc.claiming, oc.recorded = false, true
		n.mu.Unlock()
		return self, nil
	}
	n.mu.Lock()
	if n.calls[c.ID] == oc {
		delete(n.calls, c.ID)
	}
	n.mu.Unlock()
	holder := ""
	if len(res) == 2 {
		holder, _ = res[1].(string)
	}
	return holder, fmt.Errorf("claim call %s: %w", c.ID, ErrDuplicate)
}

// Release forgets a call this node owned, once it ended. Its id stays
// claimed for the dedupe window. When Redis cannot be reached the release
// is retried by the refresh loop.
func (n *Node) Release(callID string) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	if _, ok := n.calls[callID]; !ok {
		n.mu.Unlock()
		return
	}
	delete(n.calls, callID)
	n.mu.Unlock()
	if err := n.release(n.ctx, callID); err != nil {
		n.mu.Lock()
		n.releases[callID] = struct{}{}
		n.mu.Unlock()
	}
}

func (n *Node) release(ctx context.Context, callID string) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	err := releaseScript.Run(ctx, n.rdb,
		[]string{n.key("lease", callID), n.callsKey(), n.key("hangup", callID), n.key("events", callID)},
		n.cfg.NodeID, callID).Err()
	n.setHealthy(err)
	return err
}

// Forward hands a hang-up of a call this node does not hold to the call's
// owner, and returns the owner's node id. The owner learns of it on its
// channel at once, or from the marker at its next refresh should it not
// be listening (then the error wraps ErrOwnerUnreachable). The payload,
// which may be nil, travels with the reason (such as Meta's terminate
// webhook, for the owner's logs and status callback).
//
// A call nobody owns returns ErrNotFound and is marked seen, so that a
// connect for it arriving later does nothing. A call this node owns
// returns this node's id and nil: it is the caller's to end.
func (n *Node) Forward(ctx context.Context, callID, reason string, payload []byte) (string, error) {
	msg, err := json.Marshal(wireMessage{CallID: callID, Reason: reason, Payload: payload, From: n.cfg.NodeID})
	if err != nil {
		return "", fmt.Errorf("forward hang-up of %s: %w", callID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	res, err := forwardScript.Run(ctx, n.rdb,
		[]string{n.key("lease", callID), n.key("seen", callID), n.key("hangup", callID)},
		string(msg), ms(2*n.cfg.ClaimTTL), ms(n.cfg.DedupeWindow), n.key("node", ""), string(msg), n.cfg.NodeID).Slice()
	n.setHealthy(err)
	if err != nil {
		return "", fmt.Errorf("forward hang-up of %s: %w: %w", callID, ErrUnavailable, err)
	}
	owner, _ := res[0].(string)
	switch {
	case owner == "":
		return "", fmt.Errorf("forward hang-up of %s: %w", callID, ErrNotFound)
	case owner != n.cfg.NodeID && toInt(res[1]) == 0:
		return owner, fmt.Errorf("forward hang-up of %s to %s: %w", callID, owner, ErrOwnerUnreachable)
	}
	return owner, nil
}

// List returns every call of the cluster that Redis holds, oldest first.
// Calls whose owner died and that the sweep has not ended yet have
// Orphaned set.
func (n *Node) List(ctx context.Context) ([]Call, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	all, err := n.rdb.HGetAll(ctx, n.callsKey()).Result()
	n.setHealthy(err)
	if err != nil {
		return nil, fmt.Errorf("list calls: %w: %w", ErrUnavailable, err)
	}
	calls := make([]Call, 0, len(all))
	for id, raw := range all {
		var c Call
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			n.log.Warn("cluster call entry unreadable", zap.String("call_id", id), zap.Error(err))
			continue
		}
		calls = append(calls, c)
	}
	pipe := n.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(calls))
	for i, c := range calls {
		exists[i] = pipe.Exists(ctx, n.key("lease", c.ID))
	}
	if _, err := pipe.Exec(ctx); err != nil && len(calls) > 0 {
		return nil, fmt.Errorf("list calls: %w: %w", ErrUnavailable, err)
	}
	for i := range calls {
		calls[i].Orphaned = exists[i].Val() == 0
	}
	sort.Slice(calls, func(i, j int) bool {
		if !calls[i].Started.Equal(calls[j].Started) {
			return calls[i].Started.Before(calls[j].Started)
		}
		return calls[i].ID < calls[j].ID
	})
	return calls, nil
}

// tick runs f every period until the node closes.
func (n *Node) tick(period time.Duration, f func(context.Context)) {
	defer n.wg.Done()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			f(n.ctx)
		}
	}
}

// refresh extends the leases of this node's calls, records those Redis
// lost, hands over pending hang-ups, and retries failed releases.
func (n *Node) refresh(ctx context.Context) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	owned := make([]*ownedCall, 0, len(n.calls))
	for _, oc := range n.calls {
		if !oc.claiming {
			owned = append(owned, oc)
		}
	}
	releases := make([]string, 0, len(n.releases))
	for id := range n.releases {
		releases = append(releases, id)
	}
	n.mu.Unlock()

	for _, id := range releases {
		if n.release(ctx, id) != nil {
			return
		}
		n.mu.Lock()
		delete(n.releases, id)
		n.mu.Unlock()
	}
	if len(owned) == 0 {
		return
	}
	keys := make([]string, 0, 1+5*len(owned))
	args := make([]any, 0, 3+2*len(owned))
	keys = append(keys, n.callsKey())
	args = append(args, n.cfg.NodeID, ms(n.cfg.ClaimTTL), ms(n.cfg.DedupeWindow))
	for _, oc := range owned {
		id := oc.call.ID
		keys = append(keys, n.key("seen", id), n.key("lease", id), n.key("hangup", id), n.key("swept", id), n.key("events", id))
		args = append(args, id, oc.json)
	}
	rctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	res, err := refreshScript.Run(rctx, n.rdb, keys, args...).Slice()
	n.setHealthy(err)
	if err != nil || len(res) != len(owned) {
		return
	}
	var hangups []wireMessage
	var events []wireMessage
	n.mu.Lock()
	for i, oc := range owned {
		item, _ := res[i].([]any)
		if len(item) != 3 || n.calls[oc.call.ID] != oc {
			continue
		}
		queued, _ := item[2].([]any)
		for _, q := range queued {
			raw, _ := q.(string)
			var m wireMessage
			if json.Unmarshal([]byte(raw), &m) != nil || m.Event == nil {
				continue
			}
			if oc.firstEvent(m.Event.ID) {
				events = append(events, m)
			}
		}
		code := toInt(item[0])
		marker, _ := item[1].(string)
		var h wireMessage
		if marker != "" && json.Unmarshal([]byte(marker), &h) != nil {
			h.Reason = marker
		}
		switch code {
		case 1:
			if oc.recorded {
				n.log.Info("call recorded again in redis", zap.String("call_id", oc.call.ID))
			}
			oc.recorded = true
		case 2:
			if !oc.lost {
				n.log.Warn("call claimed by another node while redis was unreachable",
					zap.String("call_id", oc.call.ID))
			}
			oc.lost = true
		case 3:
			h = wireMessage{Reason: "swept"}
		default:
			oc.recorded = true
		}
		if h.Reason != "" && !oc.hungUp {
			oc.hungUp = true
			h.CallID = oc.call.ID
			hangups = append(hangups, h)
		}
	}
	n.mu.Unlock()
	for _, m := range events {
		n.onEvent(m)
	}
	for _, h := range hangups {
		n.cfg.OnHangup(h.CallID, h.Reason, h.Payload)
	}
}

// subscribeLoop delivers hang-ups published on this node's channel. The
// PubSub reconnects and resubscribes by itself after a Redis outage.
func (n *Node) subscribeLoop(ps *redis.PubSub) {
	defer n.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.Receive(n.ctx)
		if n.ctx.Err() != nil {
			return
		}
		if err != nil {
			n.setHealthy(err)
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			n.setHealthy(nil)
			n.log.Debug("subscribed", zap.String("channel", m.Channel))
		case *redis.Message:
			n.deliver(m.Payload)
		}
	}
}

func (n *Node) deliver(payload string) {
	var h wireMessage
	if err := json.Unmarshal([]byte(payload), &h); err != nil || h.CallID == "" {
		n.log.Warn("cluster message unreadable", zap.Error(err))
		return
	}
	if h.Event != nil {
		n.mu.Lock()
		oc := n.calls[h.CallID]
		first := oc != nil && oc.firstEvent(h.Event.ID)
		n.mu.Unlock()
		if first {
			n.onEvent(h)
		}
		return
	}
	n.mu.Lock()
	oc := n.calls[h.CallID]
	first := oc != nil && !oc.hungUp
	if first {
		oc.hungUp = true
	}
	n.mu.Unlock()
	if !first {
		if ce := n.log.Check(zap.DebugLevel, "forwarded hang-up for a call not live here"); ce != nil {
			ce.Write(zap.String("call_id", h.CallID), zap.String("from", h.From))
		}
		return
	}
	n.cfg.OnHangup(h.CallID, h.Reason, h.Payload)
}

// sweep takes the calls whose owners' leases expired and hands each to
// OnOrphan, on its own goroutine so that a slow Graph request delays
// neither the next sweep nor the refresh.
func (n *Node) sweep(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	ids, err := n.rdb.HKeys(rctx, n.callsKey()).Result()
	n.setHealthy(err)
	if err != nil || len(ids) == 0 {
		return
	}
	n.mu.Lock()
	candidates := ids[:0]
	for _, id := range ids {
		if _, mine := n.calls[id]; !mine {
			candidates = append(candidates, id)
		}
	}
	n.mu.Unlock()
	pipe := n.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(candidates))
	for i, id := range candidates {
		exists[i] = pipe.Exists(rctx, n.key("lease", id))
	}
	if _, err := pipe.Exec(rctx); err != nil {
		return
	}
	for i, id := range candidates {
		if exists[i].Val() != 0 {
			continue
		}
		raw, err := sweepScript.Run(rctx, n.rdb,
			[]string{n.key("lease", id), n.key("swept", id), n.callsKey()},
			id, n.cfg.NodeID, ms(n.cfg.DedupeWindow)).Text()
		if err != nil {
			if !errors.Is(err, redis.Nil) {
				n.setHealthy(err)
			}
			continue
		}
		var c Call
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			n.log.Warn("cluster call entry unreadable", zap.String("call_id", id), zap.Error(err))
			continue
		}
		c.Orphaned = true
		n.log.Info("call of a lost node swept",
			zap.String("call_id", c.ID), zap.String("owner", c.Node))
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.cfg.OnOrphan(c)
		}()
	}
}

// setHealthy logs the transitions between a reachable and an unreachable
// Redis.
func (n *Node) setHealthy(err error) {
	if err != nil && (errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled)) {
		return
	}
	ok := err == nil
	if n.healthy.Swap(ok) == ok {
		return
	}
	if ok {
		n.log.Info("redis reachable again")
	} else {
		n.log.Warn("redis unreachable; live calls go on, new calls use local dedupe", zap.Error(err))
	}
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		i, _ := strconv.ParseInt(x, 10, 64)
		return i
	}
	return 0
}
