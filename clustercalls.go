package whatsappcalls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/whatsappcalls/caddy-whatsapp-calls/cluster"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// Reasons a hang-up is forwarded to a call's owner, as the owner logs them.
const (
	hangupMetaTerminate = "meta_terminate" // Meta's terminate webhook
	hangupAPI           = "api"            // the control API
	hangupTwilioREST    = "twilio_rest"    // the Twilio-compatible REST hang-up
	hangupSwept         = "swept"          // a peer ended it as orphaned
)

// Errors that explain why a forwarded hang-up ended a call.
var (
	// errPeerTerminated ends a call whose lease a peer found expired and
	// terminated toward Meta: Meta knows, like a caller's hang-up.
	errPeerTerminated = fmt.Errorf("%w: terminated by a peer node", errCallerHungUp)
	// errRemoteHangup ends a call that an operator or the bot hung up
	// through another node: Meta must be told.
	errRemoteHangup = errors.New("hung up through another node")
)

// clusterLink is a registry's node in a cluster: the calls it answers are
// claimed in Redis, and hang-ups for them may come from any node.
type clusterLink struct {
	node *cluster.Node
	key  string
	// cfg is the newest config attached, whose Graph client ends the
	// calls that a lost node left.
	cfg atomic.Pointer[callConfig]
}

// attachCluster gives the registry its cluster node, built from cc, and
// starts the node's loops; a registry that has one already (a reload)
// keeps it, and only takes cfg for the orphans it ends. Redis need not be
// up. A reload cannot move live calls to other cluster settings: that
// needs a restart.
func (r *registry) attachCluster(cc cluster.Config, cfg callConfig) error {
	key := clusterKey(cc)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.link != nil {
		if r.link.key != key {
			return errors.New("cluster: these phone numbers run with other cluster settings; restart Caddy to change them")
		}
		r.link.cfg.Store(&cfg)
		return nil
	}
	link := &clusterLink{key: key}
	link.cfg.Store(&cfg)
	cc.OnHangup = r.forwardedHangup
	cc.OnOrphan = func(c cluster.Call) { r.endOrphan(link, c) }
	node, err := cluster.New(cc)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	link.node = node
	node.Start()
	r.link = link
	return nil
}

// claim takes a connect's call for this node. It reports whether this
// node answers the call: not when another node claimed it first (a
// retried connect) or Meta terminated it first. When Redis is down the
// call is answered with the local dedupe only, and recorded in Redis once
// it is back.
func (r *registry) claim(link *clusterLink, ev whatsapp.CallEvent, received time.Time, cfg callConfig) bool {
	// Not r.ctx: a connect that came in before a shutdown is claimed and
	// then handled (answered, or rejected over capacity) as on one node.
	owner, err := link.node.Claim(context.Background(), cluster.Call{
		ID:            ev.Call.ID,
		PhoneNumberID: ev.PhoneNumberID,
		Direction:     ev.Call.Direction,
		Started:       received,
	})
	switch {
	case err == nil:
		return true
	case errors.Is(err, cluster.ErrDuplicate):
		if ce := cfg.logger.Check(zapcore.DebugLevel, "connect claimed by another node ignored"); ce != nil {
			ce.Write(zap.String("call_id", ev.Call.ID), zap.String("owner", owner))
		}
		return false
	case errors.Is(err, cluster.ErrUnavailable):
		r.metrics.clusterEvent("redis_unavailable")
		cfg.logger.Warn("redis unreachable: call answered with this node's dedupe only",
			zap.String("call_id", ev.Call.ID), zap.Error(err))
		return true
	default:
		cfg.logger.Warn("call not claimed", zap.String("call_id", ev.Call.ID), zap.Error(err))
		return false
	}
}

// forwardTerminate hands Meta's terminate for a call that is not live here
// to the node that owns it.
func (r *registry) forwardTerminate(link *clusterLink, ev whatsapp.CallEvent, logger *zap.Logger) {
	id := ev.Call.ID
	start := time.Now()
	owner, err := link.node.Forward(r.ctx, id, hangupMetaTerminate, terminatePayload(ev))
	switch {
	case err == nil || errors.Is(err, cluster.ErrOwnerUnreachable):
		if owner == link.node.ID() {
			return // a call that just ended here
		}
		r.metrics.clusterEvent("hangup_forwarded")
		logger.Info("terminate forwarded to the call's node",
			zap.String("call_id", id), zap.String("owner", owner),
			zap.Bool("owner_listening", err == nil), zap.Duration("took", time.Since(start)))
	case errors.Is(err, cluster.ErrNotFound):
		if ce := logger.Check(zapcore.DebugLevel, "terminate for a call no node holds"); ce != nil {
			ce.Write(zap.String("call_id", id))
		}
	case errors.Is(err, cluster.ErrUnavailable):
		logger.Warn("terminate not forwarded: redis unreachable; the call's node notices when media stops",
			zap.String("call_id", id), zap.Error(err))
	}
}

// terminatePayload is what travels with a forwarded terminate: Meta's
// event without the users' numbers, ids and names, which have no business
// in Redis.
func terminatePayload(ev whatsapp.CallEvent) []byte {
	c := ev.Call
	b, _ := json.Marshal(whatsapp.CallEvent{
		PhoneNumberID: ev.PhoneNumberID,
		Errors:        ev.Errors,
		Call: whatsapp.Call{
			ID: c.ID, Event: c.Event, Direction: c.Direction, Status: c.Status,
			Timestamp: c.Timestamp, StartTime: c.StartTime, EndTime: c.EndTime, Duration: c.Duration,
			BizOpaqueCallbackData: c.BizOpaqueCallbackData,
		},
	})
	return b
}

// forwardedHangup ends a live call that another node was asked to hang up.
// It runs on the cluster node's goroutine and does not block.
func (r *registry) forwardedHangup(id, reason string, payload []byte) {
	r.mu.Lock()
	c := r.live[id]
	link := r.link
	r.mu.Unlock()
	if c == nil || link == nil {
		return
	}
	logger := link.cfg.Load().logger
	cause := errRemoteHangup
	switch reason {
	case hangupMetaTerminate:
		cause = errCallerHungUp
		var ev whatsapp.CallEvent
		if json.Unmarshal(payload, &ev) == nil {
			logger.Info("call terminated by meta",
				zap.String("call_id", id),
				zap.String("status", ev.Call.Status),
				zap.String("reason", ev.Reason()),
				zap.Bool("live", true),
				zap.Bool("forwarded", true))
		}
	case hangupSwept:
		cause = errPeerTerminated
	}
	r.metrics.clusterEvent("hangup_received")
	logger.Info("hang-up forwarded by another node", zap.String("call_id", id), zap.String("reason", reason))
	c.hangup(cause)
}

// endOrphan terminates toward Meta a call whose node died, as failAccept
// does: terminate, or reject when Meta answers that the call was never
// accepted. It runs on a goroutine that the cluster node owns.
func (r *registry) endOrphan(link *clusterLink, c cluster.Call) {
	cfg := link.cfg.Load()
	ctx, cancel := context.WithTimeout(context.Background(), graphBudget)
	defer cancel()
	fields := []zap.Field{zap.String("call_id", c.ID), zap.String("owner", c.Node)}
	if err := cfg.graph.Terminate(ctx, c.PhoneNumberID, c.ID); err != nil {
		fields = append(fields, zap.NamedError("terminate_error", err))
		if !acceptMayHaveSucceeded(err) {
			if rerr := cfg.graph.Reject(ctx, c.PhoneNumberID, c.ID); rerr != nil {
				fields = append(fields, zap.NamedError("reject_error", rerr))
			}
		}
	}
	r.metrics.clusterEvent("orphan_ended")
	cfg.logger.Warn("call of a lost node terminated toward meta", fields...)
}

// releaseClaim forgets an ended call's claim in Redis. r.mu must not be held.
func (r *registry) releaseClaim(id string) {
	r.mu.Lock()
	link := r.link
	r.mu.Unlock()
	if link != nil {
		link.node.Release(id)
	}
}

// closeCluster stops the registry's cluster node, once every call ended.
func (r *registry) closeCluster() error {
	r.mu.Lock()
	link := r.link
	r.link = nil
	r.mu.Unlock()
	if link == nil {
		return nil
	}
	return link.node.Close()
}

// listCalls returns the calls of the whole cluster, or this node's calls
// when no cluster is configured, oldest first. It holds no phone numbers.
func (r *registry) listCalls(ctx context.Context) ([]cluster.Call, error) {
	r.mu.Lock()
	link := r.link
	local := make([]cluster.Call, 0, len(r.live))
	for _, c := range r.live {
		local = append(local, cluster.Call{
			ID:            c.ev.Call.ID,
			PhoneNumberID: c.ev.PhoneNumberID,
			Direction:     c.ev.Call.Direction,
			Started:       c.received,
		})
	}
	r.mu.Unlock()
	if link != nil {
		return link.node.List(ctx)
	}
	sort.Slice(local, func(i, j int) bool { return local[i].Started.Before(local[j].Started) })
	return local, nil
}
