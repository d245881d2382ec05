package whatsappcalls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/whatsappcalls/caddy-whatsapp-calls/cluster"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// Reasons a hang-up is forwarded to a call's owner, as the owner logs them.
const (
	hangupMetaTerminate = "meta_terminate" // Meta's terminate webhook
	hangupAPI           = "api"            // the control API
	hangupTwilioREST    = "twilio_rest"    // the Twilio-compatible REST hang-up
	hangupSwept         = "swept"          // a peer ended it as orphaned
)

// reasonNodeLost is the status callback's reason for a call that a peer
// ended because its node died.
const reasonNodeLost = "node_lost"

// Errors that explain why a forwarded hang-up ended a call.
var (
	// errPeerTerminated ends a call whose lease a peer found expired and
	// terminated toward Meta: Meta knows, like a caller's hang-up.
	errPeerTerminated = fmt.Errorf("%w: terminated by a peer node", errCallerHungUp)
	// errRemoteHangup ends a call hung up through another node for a
	// reason this node does not know: Meta must be told.
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
	cc.OnEvent = r.forwardedEvent
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
	case hangupAPI:
		cause = errHungUpByAPI
	case hangupTwilioREST:
		cause = errHungUpByBotREST
	case hangupMetaTerminate:
		cause = errCallerHungUp
		var ev whatsapp.CallEvent
		if json.Unmarshal(payload, &ev) == nil {
			c.ended.Store(&ev) // for the status callback's reason and errors
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
	direction := directionInbound
	if c.Direction == whatsapp.DirectionBusinessInitiated {
		direction = directionOutbound
	}
	cfg.notify.send(statusEvent{
		Event: eventEnded, CallID: c.ID, Direction: direction, PhoneNumberID: c.PhoneNumberID,
		TwilioCallSID: bot.TwilioCallSID(c.ID), Reason: reasonNodeLost,
	})
	cfg.logger.Warn("call of a lost node terminated toward meta", fields...)
}

// releaseClaim forgets an ended call's claim in Redis. r.mu must not be held.
func (r *registry) releaseClaim(id string) {
	if link := r.clusterLink(); link != nil {
		link.node.Release(id)
	}
}

// clusterLink returns r's cluster node, or nil on one node (or once it is
// closed). r.mu must not be held.
func (r *registry) clusterLink() *clusterLink {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.link
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

// Kinds of the events forwarded to a call's owner.
const (
	eventKindAnswer = "answer" // Meta's connect webhook with the SDP answer
	eventKindStatus = "status" // a statuses[] item (RINGING, ACCEPTED, REJECTED)
)

// earlyForwardWait bounds how long a webhook for an outbound call that no
// node holds yet is retried: the placing node claims the call once Meta
// answers its connect request, and the webhook may overtake that answer.
const earlyForwardWait = 3 * time.Second

// forwardEventLocked hands a webhook for a call that is not live here to
// the node that owns it. The forwards of a registry run one at a time on
// one goroutine, in the order the webhooks came, so that the owner sees
// Meta's answer and statuses in Meta's order. r.mu must be held.
func (r *registry) forwardEventLocked(callID, kind string, v any) {
	link := r.link
	if link == nil || r.ctx.Err() != nil || callID == "" {
		return
	}
	payload, err := json.Marshal(v)
	if err != nil {
		return
	}
	r.forwards = append(r.forwards, pendingEvent{callID: callID, kind: kind, payload: payload})
	if r.forwarding {
		return
	}
	r.forwarding = true
	r.wg.Add(1)
	go r.forwardEvents(link)
}

// pendingEvent is a webhook waiting to be forwarded to its call's owner.
type pendingEvent struct {
	callID, kind string
	payload      []byte
}

// forwardEvents forwards the queued webhooks until the queue is empty.
func (r *registry) forwardEvents(link *clusterLink) {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		if len(r.forwards) == 0 || r.ctx.Err() != nil {
			r.forwards = nil
			r.forwarding = false
			r.mu.Unlock()
			return
		}
		ev := r.forwards[0]
		r.forwards = r.forwards[1:]
		r.mu.Unlock()
		r.forwardEvent(link, ev)
	}
}

// forwardEvent forwards one webhook, retrying while no node holds the call
// yet, for up to earlyForwardWait.
func (r *registry) forwardEvent(link *clusterLink, ev pendingEvent) {
	deadline := time.Now().Add(earlyForwardWait)
	for {
		owner, err := link.node.ForwardEvent(r.ctx, ev.callID, ev.kind, ev.payload)
		if !errors.Is(err, cluster.ErrNotFound) || time.Now().After(deadline) {
			if owner != "" && owner != link.node.ID() {
				r.metrics.clusterEvent("event_forwarded")
			}
			return
		}
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// forwardedEvent takes a webhook that another node forwarded for a call
// this node placed. It runs on the cluster node's goroutine.
func (r *registry) forwardedEvent(callID string, ev cluster.Event) {
	r.metrics.clusterEvent("event_received")
	switch ev.Kind {
	case eventKindAnswer:
		var ce whatsapp.CallEvent
		if json.Unmarshal(ev.Payload, &ce) == nil && ce.Call.ID == callID {
			r.takeAnswer(ce)
		}
	case eventKindStatus:
		var st whatsapp.Status
		if json.Unmarshal(ev.Payload, &st) == nil && st.ID == callID {
			r.takeStatus(st)
		}
	}
}

// clusterHangup forwards a control API or Twilio REST hang-up of a call
// that is not live here to its owner, and returns the owner's node id, or
// "" when no registry knows the call.
func clusterHangup(ctx context.Context, id, reason string) string {
	for _, reg := range directory.registries() {
		link := reg.clusterLink()
		if link == nil {
			continue
		}
		owner, err := link.node.Forward(ctx, id, reason, nil)
		if owner != "" && owner != link.node.ID() && (err == nil || errors.Is(err, cluster.ErrOwnerUnreachable)) {
			reg.metrics.clusterEvent("hangup_forwarded")
			return owner
		}
	}
	return ""
}

// clusterFindTwilio finds, in the cluster-wide call lists, the call whose
// twilio-dialect ids are accountSID and callSID.
func clusterFindTwilio(ctx context.Context, accountSID, callSID string) (cluster.Call, bool) {
	for _, reg := range directory.registries() {
		link := reg.clusterLink()
		if link == nil {
			continue
		}
		calls, err := link.node.List(ctx)
		if err != nil {
			continue
		}
		for _, c := range calls {
			if bot.TwilioCallSID(c.ID) == callSID && bot.TwilioAccountSID(c.PhoneNumberID) == accountSID {
				return c, true
			}
		}
	}
	return cluster.Call{}, false
}

// withCluster adds to a registry's own list the calls that other nodes of
// its cluster hold. It reports false when Redis could not be asked.
func (r *registry) withCluster(ctx context.Context, local []callView) ([]callView, bool) {
	link := r.clusterLink()
	if link == nil {
		return local, true
	}
	self := link.node.ID()
	for i := range local {
		local[i].Node = self
	}
	calls, err := link.node.List(ctx)
	if err != nil {
		return local, false
	}
	have := make(map[string]bool, len(local))
	for _, v := range local {
		have[v.CallID] = true
	}
	for _, c := range calls {
		if have[c.ID] {
			continue
		}
		v := callView{
			CallID: c.ID, Direction: directionInbound, State: stateRemote, Started: c.Started.UTC(),
			PhoneNumberID: c.PhoneNumberID, TwilioCallSID: bot.TwilioCallSID(c.ID), Node: c.Node,
		}
		if c.Direction == whatsapp.DirectionBusinessInitiated {
			v.Direction = directionOutbound
		}
		if c.Orphaned {
			v.State = stateOrphaned
		}
		local = append(local, v)
	}
	slices.SortFunc(local, func(a, b callView) int { return a.Started.Compare(b.Started) })
	return local, true
}

// States of calls that other nodes hold, in the control API's list.
const (
	stateRemote   = "remote"   // live on another node of the cluster
	stateOrphaned = "orphaned" // its node died; a peer is ending it
)
