package whatsappcalls

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// graphAPI is the part of the Graph API client that the call registry uses.
type graphAPI interface {
	PreAccept(ctx context.Context, phoneNumberID, callID, answerSDP string) error
	Accept(ctx context.Context, phoneNumberID, callID, answerSDP, bizOpaqueCallbackData string) error
	Reject(ctx context.Context, phoneNumberID, callID string) error
	Terminate(ctx context.Context, phoneNumberID, callID string) error
	Connect(ctx context.Context, phoneNumberID string, req whatsapp.ConnectRequest) (string, error)
	CallPermission(ctx context.Context, phoneNumberID, userWaID string) (*whatsapp.Permission, error)
	SendPermissionRequest(ctx context.Context, phoneNumberID string, req whatsapp.PermissionRequest) (string, error)
}

// Durations of the registry's bookkeeping.
const (
	// dedupeWindow is how long a call id is remembered, so that a retried or
	// replayed connect webhook does nothing. Meta retries for far less.
	dedupeWindow = time.Hour
	// graphBudget bounds each teardown Graph call (reject, terminate), which
	// must not hang a call's goroutine or a shutdown.
	graphBudget = 10 * time.Second
)

// maxCallbackData is the most characters Meta takes in an accept's
// biz_opaque_callback_data.
const maxCallbackData = 512

// Reasons a call ends, as logged and counted.
const (
	resultAnswered = "answered"
	resultRejected = "rejected"
	resultMissed   = "missed" // the caller hung up before we answered
	// resultFailed is a call whose accept failed in a way that may have
	// accepted it anyway; it was terminated toward Meta.
	resultFailed = "failed"
	// resultDuplicate is a connect that another node of the cluster
	// answered (or that Meta terminated first).
	resultDuplicate = "duplicate"
)

// Errors that explain why a call ended.
var (
	errCallerHungUp = errors.New("caller hung up")
	// errHungUpByAPI ends a call hung up through the control API.
	errHungUpByAPI = errors.New("hung up through the control api")
	// errHungUpByBotREST ends a call whose bot hung up through the
	// Twilio-compatible REST route.
	errHungUpByBotREST = errors.New("bot hung up through the twilio rest api")
	errShutdown        = errors.New("server stopping")
	errOverCapacity    = errors.New("max_calls reached")
)

// registry owns every live call of one Meta app. It is shared, through a
// UsagePool, by the successive configs of the handlers of that app, so a
// config reload hands live calls to the new config. It holds no config:
// each call runs with the config of the handler that received its connect
// webhook, so a reload, failed or not, never changes a live call. The last
// holder's release destructs it, which terminates every live call toward
// Meta and tells every bot.
type registry struct {
	metrics *metrics

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // one per call goroutine and per detached reject

	mu        sync.Mutex
	live      map[string]*call
	placing   int                    // outbound calls being placed: slots held, not yet in live
	early     map[string]*earlyEvent // webhooks for ids not (yet) live while placing
	seen      map[string]time.Time
	lastPrune time.Time
	now       func() time.Time
	link      *clusterLink // this registry's cluster node; nil on one node
	// forwards are webhooks for calls other nodes placed, waiting to be
	// forwarded; forwarding is set while a goroutine works through them.
	forwards   []pendingEvent
	forwarding bool
}

// callConfig is what a call needs from the config of the handler that
// started it.
type callConfig struct {
	logger        *zap.Logger
	graph         graphAPI
	engine        *media.Engine
	bot           botTemplate
	maxCalls      int
	answerTimeout time.Duration
	acceptTimeout time.Duration
	maxConnectAge time.Duration
	callbackData  string // biz_opaque_callback_data template; "" sends none
	codec         media.Codec
	ringTimeout   time.Duration
	notify        *notifier // status_callback; nil sends none
	phoneNumbers  map[string]struct{}
}

// loadRegistry returns the registry under key, creating it on first use.
func loadRegistry(key string, m *metrics) *registry {
	v, _, _ := registries.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newRegistry(m), nil
	})
	return v.(*registry)
}

func newRegistry(m *metrics) *registry {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &registry{
		metrics: m,
		ctx:     ctx,
		cancel:  cancel,
		live:    make(map[string]*call),
		early:   make(map[string]*earlyEvent),
		seen:    make(map[string]time.Time),
		now:     time.Now,
	}
}

// Destruct terminates every live call and waits for all of them. The
// cancel happens under r.mu, where connect checks r.ctx before it adds to
// r.wg, so no call can start once the wait has begun.
func (r *registry) Destruct() error {
	r.mu.Lock()
	r.cancel(errShutdown)
	r.mu.Unlock()
	r.wg.Wait()
	return r.closeCluster()
}

// sessions returns the media sessions of the live calls that have one.
func (r *registry) sessions() []*media.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*media.Session, 0, len(r.live))
	for _, c := range r.live {
		if s := c.session.Load(); s != nil {
			out = append(out, s)
		}
	}
	return out
}

// call is one call's identity and its hang-up signal. Its goroutine, run by
// the registry, owns the media session.
type call struct {
	ev        whatsapp.CallEvent
	direction string // directionInbound or directionOutbound
	received  time.Time
	ctx       context.Context
	hangup    context.CancelCauseFunc
	session   atomic.Pointer[media.Session] // set once media is set up
	botURL    string                        // the bot's URL without its query, for the call list

	state      atomic.Pointer[string]
	answeredAt atomic.Int64                       // unix nanoseconds; 0 until answered
	ended      atomic.Pointer[whatsapp.CallEvent] // Meta's terminate, once it came
	out        *outboundEvents                    // outbound calls only
}

// Call directions in the control API and the status callbacks.
const (
	directionInbound  = "inbound"
	directionOutbound = "outbound"
)

// Call states in the control API.
const (
	stateConnecting = "connecting" // inbound: answering; outbound: answered by the user, bot and media connecting
	statePlacing    = "placing"    // outbound: connect sent, not ringing yet
	stateRinging    = "ringing"    // outbound: the user's phone rings
	stateAnswered   = "answered"   // media and bot connected
)

func (c *call) setState(s string) { c.state.Store(&s) }

func (c *call) stateName() string {
	if p := c.state.Load(); p != nil {
		return *p
	}
	return stateConnecting
}

// connect starts a call for a connect event with cfg, the config of the
// handler that received it, unless its call id was seen before or the
// registry is at cfg.maxCalls. It never blocks on the network.
func (r *registry) connect(ev whatsapp.CallEvent, cfg callConfig) {
	id := ev.Call.ID
	r.mu.Lock()
	if r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	if age, ok := connectAge(ev, r.now(), cfg.maxConnectAge); !ok {
		r.mu.Unlock()
		cfg.logger.Warn("stale connect ignored",
			zap.String("call_id", id),
			zap.Duration("age", age),
			zap.Duration("max_connect_age", cfg.maxConnectAge))
		return
	}
	if _, dup := r.seen[id]; dup {
		r.mu.Unlock()
		if c := cfg.logger.Check(zapcore.DebugLevel, "repeated connect ignored"); c != nil {
			c.Write(zap.String("call_id", id))
		}
		return
	}
	r.remember(id)
	link := r.link
	if len(r.live)+r.placing >= cfg.maxCalls {
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			// A node that is full rejects only a call it claimed: a
			// connect retried here may be live on a peer.
			if link != nil && !r.claim(link, ev, r.now(), cfg) {
				return
			}
			r.reject(cfg, ev, errOverCapacity, "over_capacity")
			r.releaseClaim(id)
		}()
		return
	}
	ctx, hangup := context.WithCancelCause(r.ctx)
	c := &call{ev: ev, direction: directionInbound, received: r.now(), ctx: ctx, hangup: hangup, botURL: redactQuery(cfg.bot.url)}
	r.live[id] = c
	r.wg.Add(1)
	r.mu.Unlock()

	r.metrics.callStarted()
	go func() {
		// In a cluster the call is claimed in Redis before anything is
		// sent to Meta, so that a connect retried on several nodes is
		// answered by one.
		if link != nil && !r.claim(link, ev, c.received, cfg) {
			r.mu.Lock()
			delete(r.live, id)
			r.mu.Unlock()
			c.hangup(nil)
			r.metrics.callEnded(resultDuplicate, "claimed_elsewhere", media.Stats{})
			r.wg.Done()
			return
		}
		r.run(c, cfg)
	}()
}

// connectAge returns how old a connect event is by its timestamp, and
// whether it is young enough to answer.
//
// Meta gives a business 30 to 60 seconds to pre-accept or accept a call
// before it ends it as not answered, so a connect older than maxAge cannot
// be a call anyone is still waiting on: it is a replay of a captured,
// validly signed webhook (after the dedupe window or a restart, which
// forgets the call ids seen). Answering it would dial the bot for nobody.
//
// A timestamp in the future means the host clock is behind Meta's. A skew
// up to maxAge is tolerated. Beyond it the call is refused too: a host
// clock that wrong would let replays through for as long as it is wrong,
// and the WARN line makes the broken clock visible at the first call. A
// connect without a timestamp (Meta always sends one) is answered: it was
// signed with the app secret, and there is nothing to measure.
func connectAge(ev whatsapp.CallEvent, now time.Time, maxAge time.Duration) (time.Duration, bool) {
	if ev.Call.Timestamp.IsZero() || maxAge <= 0 {
		return 0, true
	}
	age := now.Sub(ev.Call.Timestamp.Time())
	return age, age <= maxAge && age >= -maxAge
}

// terminate ends the call that Meta reports as terminated; cfg is the
// config of the handler that received the webhook. A terminate for an
// unknown call is remembered, so that a late connect for it does nothing.
func (r *registry) terminate(ev whatsapp.CallEvent, cfg callConfig) {
	r.mu.Lock()
	c := r.live[ev.Call.ID]
	if c == nil {
		r.remember(ev.Call.ID)
		r.stashEarly(ev.Call.ID, func(e *earlyEvent) { e.terminate = &ev })
	}
	logger := cfg.logger
	link := r.link
	if c == nil && link != nil && r.ctx.Err() == nil {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.forwardTerminate(link, ev, logger)
		}()
	}
	r.mu.Unlock()
	if c != nil {
		c.ended.Store(&ev)
		c.hangup(errCallerHungUp)
	}
	logger.Info("call terminated by meta",
		zap.String("call_id", ev.Call.ID),
		zap.String("status", ev.Call.Status),
		zap.String("reason", ev.Reason()),
		zap.Bool("live", c != nil))
	// The callback data echoes the biz_opaque_callback_data template, whose
	// placeholders may hold the caller's number or name: debug level only.
	if data := ev.Call.BizOpaqueCallbackData; data != "" {
		if ce := logger.Check(zapcore.DebugLevel, "terminate callback data"); ce != nil {
			ce.Write(zap.String("call_id", ev.Call.ID), zap.String("biz_opaque_callback_data", data))
		}
	}
}

// remember records a call id for dedupeWindow. r.mu must be held.
func (r *registry) remember(id string) {
	now := r.now()
	r.seen[id] = now
	if now.Sub(r.lastPrune) < time.Minute {
		return
	}
	r.lastPrune = now
	for k, t := range r.seen {
		if now.Sub(t) > dedupeWindow {
			delete(r.seen, k)
		}
	}
}

func (r *registry) release(c *call) {
	r.mu.Lock()
	delete(r.live, c.ev.Call.ID)
	r.mu.Unlock()
	c.hangup(nil)
	r.releaseClaim(c.ev.Call.ID)
}

// run is one call's life: build the answer and dial the bot, pre_accept,
// wait for media, accept, then bridge until either side hangs up. Any
// failure before accept rejects the call; a failed accept ends it as
// failAccept says; any end after it that Meta did not report is sent to
// Meta as terminate.
//
// The bot is dialed, and so gets its start message, before pre_accept: a
// bot that is down gets the call rejected before the caller hears a thing,
// and its greeting is ready by the time the call is accepted. Until accept
// returns 200 the caller hears only silence and the bot's audio waits in
// the playout buffer (media.SessionConfig.HoldPlayout); it is played from
// its first frame once accepted. A call that fails before that closes the
// session, which sends the bot stop (twilio) and a close.
func (r *registry) run(c *call, cfg callConfig) {
	defer r.wg.Done()
	defer r.release(c)

	id, phoneID := c.ev.Call.ID, c.ev.PhoneNumberID
	log := cfg.logger.With(zap.String("call_id", id))

	setup, cancel := context.WithTimeout(c.ctx, cfg.answerTimeout)
	defer cancel()

	if c.ev.Call.Session == nil || c.ev.Call.Session.SDP == "" {
		r.reject(cfg, c.ev, errors.New("connect webhook without an SDP offer"), "bad_offer")
		return
	}
	botCfg, err := cfg.bot.config(c.ev, log.Named("bot"))
	if err != nil {
		r.fail(c, cfg, fmt.Errorf("bot config: %w", err), "bot_config")
		return
	}

	sess, err := cfg.engine.NewSession(setup, media.SessionConfig{
		CallID:      id,
		Offer:       c.ev.Call.Session.SDP,
		Bot:         botCfg,
		Logger:      log.Named("media"),
		Codec:       cfg.codec,
		HoldPlayout: true,
	})
	if err != nil {
		reason := "media"
		switch {
		case errors.Is(err, media.ErrBotUnavailable):
			reason = "bot_unavailable"
		case errors.Is(err, media.ErrBadOffer):
			reason = "bad_offer" // an offer we cannot answer, such as one without Opus
		}
		r.fail(c, cfg, err, reason)
		return
	}
	defer sess.Close()
	c.session.Store(sess)
	r.metrics.observeSetup("answer_ready", time.Since(c.received))
	r.metrics.observeBotDial(sess.Stats().BotDial)

	answer := sess.Answer()
	if err := cfg.graph.PreAccept(setup, phoneID, id, answer); err != nil {
		r.fail(c, cfg, err, "graph_pre_accept")
		return
	}
	r.metrics.observeSetup("pre_accept", time.Since(c.received))

	if err := sess.WaitConnected(setup); err != nil {
		if errors.Is(setup.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("media not connected within answer_timeout %s: %w", cfg.answerTimeout, err)
		}
		r.fail(c, cfg, err, "media_timeout")
		return
	}
	r.metrics.observeSetup("media_connected", time.Since(c.received))

	cancel() // the setup budget ends here; accept has its own
	data := cfg.callbackDataFor(c.ev, log)
	budget := cfg.acceptTimeout
	if budget <= 0 {
		budget = DefaultAcceptTimeout
	}
	accept, cancelAccept := context.WithTimeout(c.ctx, budget)
	err = cfg.graph.Accept(accept, phoneID, id, answer, data)
	if err != nil && errors.Is(accept.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within accept_timeout %s: %w", budget, err)
	}
	cancelAccept()
	if err != nil {
		r.failAccept(c, cfg, err)
		return
	}
	sess.StartPlayout()
	r.talk(c, cfg, sess, log)
}

// talk runs an answered call until either side hangs up: it marks c
// answered and reports it, waits for the end, terminates the call toward
// Meta unless the user hung up, closes sess and reports the end with the
// session's stats. fields (the direction, for an outbound call) are added
// to the answered and ended logs.
func (r *registry) talk(c *call, cfg callConfig, sess *media.Session, log *zap.Logger, fields ...zap.Field) {
	answered := time.Now()
	c.answeredAt.Store(answered.UnixNano())
	c.setState(stateAnswered)
	log.Info("call answered", append(fields, zap.Duration("setup", answered.Sub(c.received)))...)
	cfg.notify.send(c.statusEvent(eventAnswered))

	var ended error
	select {
	case <-sess.Done():
		ended = sess.Err()
	case <-c.ctx.Done():
		ended = context.Cause(c.ctx)
	}
	if !errors.Is(ended, errCallerHungUp) {
		r.terminateTowardMeta(cfg.graph, c.ev, log)
	}
	_ = sess.Close()

	st := sess.Stats()
	r.metrics.callEnded(resultAnswered, "", st)
	ev := c.statusEvent(eventEnded)
	ev.Reason = "completed_" + endedBy(ended)
	ev.DurationSeconds = time.Since(answered).Seconds()
	c.addTerminate(&ev)
	cfg.notify.send(ev)
	log.Info("call ended", append(fields,
		zap.String("result", resultAnswered),
		zap.String("ended_by", endedBy(ended)),
		zap.Duration("duration", time.Since(answered)),
		zap.Uint64("packets_in", st.PacketsIn),
		zap.Uint64("packets_out", st.PacketsOut),
		zap.Uint64("packets_lost", st.PacketsLost),
		zap.Uint64("underruns", st.Underruns),
		zap.Uint64("dtmf", st.DTMFCount))...)
}

// fail ends a call that was never answered: it is rejected toward Meta,
// unless the caller already hung up.
func (r *registry) fail(c *call, cfg callConfig, err error, reason string) {
	if errors.Is(context.Cause(c.ctx), errCallerHungUp) {
		r.metrics.callEnded(resultMissed, "caller_hung_up", media.Stats{})
		ev := c.statusEvent(eventEnded)
		ev.Reason = "caller_hung_up"
		c.addTerminate(&ev)
		cfg.notify.send(ev)
		cfg.logger.Info("call ended", zap.String("call_id", c.ev.Call.ID),
			zap.String("result", resultMissed), zap.Duration("duration", time.Since(c.received)))
		return
	}
	r.reject(cfg, c.ev, err, reason)
}

// failAccept ends a call whose accept did not succeed.
//
// Meta's rule is reject for a call that was not accepted and terminate for
// one that was. A failed accept may still have accepted the call: the
// request went out and its answer timed out or was lost, or Graph answered
// 5xx, which says nothing about what happened behind it. Only a clear 4xx
// Graph error reply (and an error before anything was sent) means the call
// was not accepted, so only then is it rejected. Every other failure is
// terminated; should Meta answer that terminate with a 4xx (the call was
// not accepted after all), it is rejected so the caller stops waiting.
func (r *registry) failAccept(c *call, cfg callConfig, err error) {
	if !acceptMayHaveSucceeded(err) {
		r.fail(c, cfg, err, "graph_accept")
		return
	}
	if errors.Is(context.Cause(c.ctx), errCallerHungUp) {
		r.fail(c, cfg, err, "graph_accept") // counted as missed; Meta knows
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), graphBudget)
	defer cancel()
	fields := []zap.Field{
		zap.String("call_id", c.ev.Call.ID),
		zap.String("result", resultFailed),
		zap.String("reason", "graph_accept"),
		zap.Error(err),
	}
	if terr := cfg.graph.Terminate(ctx, c.ev.PhoneNumberID, c.ev.Call.ID); terr != nil {
		fields = append(fields, zap.NamedError("terminate_error", terr))
		if !acceptMayHaveSucceeded(terr) {
			if rerr := cfg.graph.Reject(ctx, c.ev.PhoneNumberID, c.ev.Call.ID); rerr != nil {
				fields = append(fields, zap.NamedError("reject_error", rerr))
			}
		}
	}
	r.metrics.callEnded(resultFailed, "graph_accept", media.Stats{})
	ev := c.statusEvent(eventEnded)
	ev.Reason = "graph_accept"
	ev.Errors = metaErrors(err)
	cfg.notify.send(ev)
	cfg.logger.Warn("call ended", fields...)
}

// acceptMayHaveSucceeded reports whether a failed Graph call action may
// have taken effect at Meta all the same: false only for a Graph error
// reply with a 4xx status and for errors raised before sending.
func acceptMayHaveSucceeded(err error) bool {
	if errors.Is(err, whatsapp.ErrMissingParameter) {
		return false
	}
	var apiErr *whatsapp.APIError
	if errors.As(err, &apiErr) && apiErr.StatusCode >= 400 && apiErr.StatusCode < 500 {
		return false
	}
	return true
}

// callbackDataFor resolves the biz_opaque_callback_data template for one
// call. A value over Meta's 512 characters is not sent, rather than cut
// (cut opaque data would be wrong data) or sent (Meta would refuse the
// accept and the caller would hear nothing): the call is answered without
// it and a warning says so.
func (cfg callConfig) callbackDataFor(ev whatsapp.CallEvent, log *zap.Logger) string {
	if cfg.callbackData == "" {
		return ""
	}
	data := resolveCallbackData(caddy.NewReplacer(), cfg.callbackData, ev)
	if n := utf8.RuneCountInString(data); n > maxCallbackData {
		log.Warn("biz_opaque_callback_data not sent: over 512 characters after placeholders",
			zap.Int("characters", n))
		return ""
	}
	return data
}

// resolveCallbackData replaces the per-call placeholders of a
// biz_opaque_callback_data template. Unknown placeholders are left as
// they are; Provision has checked the template.
func resolveCallbackData(repl *caddy.Replacer, tmpl string, ev whatsapp.CallEvent) string {
	for k, v := range callVars(ev) {
		repl.Set(k, v)
	}
	return repl.ReplaceKnown(tmpl, "")
}

// checkCallbackData resolves a biz_opaque_callback_data template with
// sample call values, so that an unset {env.*} variable or an unknown
// placeholder fails the config load, and so does a template over 512
// characters before its per-call values are even in.
func checkCallbackData(repl *caddy.Replacer, tmpl string) error {
	if tmpl == "" {
		return nil
	}
	for k, v := range callVars(sampleCall) {
		repl.Set(k, v)
	}
	out, err := repl.ReplaceOrErr(tmpl, false, true)
	if err != nil {
		// Caddy's message names the placeholder, never a value.
		return fmt.Errorf("biz_opaque_callback_data: %w", err)
	}
	if n := utf8.RuneCountInString(out); n > maxCallbackData {
		return fmt.Errorf("biz_opaque_callback_data: %d characters with sample call values; Meta takes at most %d", n, maxCallbackData)
	}
	return nil
}

// reject sends reject toward Meta and logs the call's summary line.
func (r *registry) reject(cfg callConfig, ev whatsapp.CallEvent, cause error, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), graphBudget)
	defer cancel()
	fields := []zap.Field{
		zap.String("call_id", ev.Call.ID),
		zap.String("result", resultRejected),
		zap.String("reason", reason),
		zap.Error(cause),
	}
	if err := cfg.graph.Reject(ctx, ev.PhoneNumberID, ev.Call.ID); err != nil {
		fields = append(fields, zap.NamedError("reject_error", err))
	}
	r.metrics.callEnded(resultRejected, reason, media.Stats{})
	cfg.notify.send(statusEvent{
		Event: eventEnded, CallID: ev.Call.ID, Direction: directionInbound, PhoneNumberID: ev.PhoneNumberID,
		From: ev.Call.From, TwilioCallSID: bot.TwilioCallSID(ev.Call.ID), Reason: reason, Errors: metaErrors(cause),
	})
	cfg.logger.Warn("call ended", fields...)
}

func (r *registry) terminateTowardMeta(graph graphAPI, ev whatsapp.CallEvent, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), graphBudget)
	defer cancel()
	if err := graph.Terminate(ctx, ev.PhoneNumberID, ev.Call.ID); err != nil {
		log.Error("terminate toward meta failed", zap.Error(err))
	}
}

func endedBy(err error) string {
	switch {
	case errors.Is(err, errCallerHungUp):
		return "caller"
	case errors.Is(err, errShutdown):
		return "shutdown"
	case errors.Is(err, errRemoteHangup):
		return "remote"
	case errors.Is(err, errHungUpByAPI):
		return "api"
	case errors.Is(err, errHungUpByBotREST):
		return "bot"
	case errors.Is(err, media.ErrBotHangup):
		return "bot"
	case errors.Is(err, media.ErrBotFailed):
		return "bot_failed"
	case errors.Is(err, media.ErrMediaFailed):
		return "media"
	default:
		return "unknown"
	}
}

// botTemplate is the bot configuration of the Caddyfile, with per-call
// placeholders still in place.
type botTemplate struct {
	url        string
	header     http.Header
	params     []bot.Param
	protocol   bot.Protocol
	sampleRate int
	signingKey string
	timeout    time.Duration
}

// check resolves the template with sample call values, so that an unset
// {env.*} variable, an unknown placeholder or a bot_param whose name
// clashes with a built-in field fails the config load.
func (t botTemplate) check(repl *caddy.Replacer) error {
	if err := bot.CheckParams(t.protocol, t.params); err != nil {
		return fmt.Errorf("bot_param: %w", err)
	}
	_, err := t.resolve(repl, sampleCall, true)
	return err
}

// sampleCall has a value for every per-call placeholder, for the checks
// that resolve templates at config load.
var sampleCall = whatsapp.CallEvent{
	PhoneNumberID: "1",
	CallerName:    "n",
	Contact: whatsapp.Contact{
		Profile: whatsapp.Profile{Name: "n", Username: "u"},
		UserID:  "US.1", ParentUserID: "US.ENT.1",
	},
	Call: whatsapp.Call{
		ID: "wacid.x", From: "1", To: "1", FromUserID: "US.1", FromParentUserID: "US.ENT.1",
		DeeplinkPayload: "d", CTAPayload: "c",
	},
}

// callVars returns the per-call placeholders and their values. Values a
// webhook did not carry are "".
func callVars(ev whatsapp.CallEvent) map[string]string {
	id := callerIdentity(ev)
	return map[string]string{
		"whatsapp.call_id":             ev.Call.ID,
		"whatsapp.from":                ev.Call.From,
		"whatsapp.from_user_id":        id.userID,
		"whatsapp.from_parent_user_id": id.parentUserID,
		"whatsapp.username":            id.username,
		"whatsapp.caller_name":         ev.CallerName,
		"whatsapp.to":                  ev.Call.To,
		"whatsapp.phone_number_id":     ev.PhoneNumberID,
		"whatsapp.deeplink_payload":    ev.Call.DeeplinkPayload,
		"whatsapp.cta_payload":         ev.Call.CTAPayload,
	}
}

// identity is who called, beyond the phone number.
type identity struct {
	userID, parentUserID, username string
}

// callerIdentity takes the caller's user ids from the call, else from the
// caller's contact, and the username from the contact.
func callerIdentity(ev whatsapp.CallEvent) identity {
	id := identity{userID: ev.Call.FromUserID, parentUserID: ev.Call.FromParentUserID, username: ev.Contact.Profile.Username}
	if id.userID == "" {
		id.userID = ev.Contact.UserID
	}
	if id.parentUserID == "" {
		id.parentUserID = ev.Contact.ParentUserID
	}
	return id
}

// config builds the bot configuration of one call.
func (t botTemplate) config(ev whatsapp.CallEvent, logger *zap.Logger) (bot.Config, error) {
	cfg, err := t.resolve(caddy.NewReplacer(), ev, false)
	if err != nil {
		return bot.Config{}, err
	}
	cfg.Logger = logger
	return cfg, nil
}

func (t botTemplate) resolve(repl *caddy.Replacer, ev whatsapp.CallEvent, strict bool) (bot.Config, error) {
	vals := callVars(ev)
	replace := func(option, s string, escape bool) (string, error) {
		for k, v := range vals {
			if escape {
				v = url.QueryEscape(v)
			}
			repl.Set(k, v)
		}
		out, err := repl.ReplaceOrErr(s, false, true)
		if err == nil && strict && s != "" && out == "" {
			err = errors.New("the value is empty")
		}
		if err != nil {
			// Caddy's message names the placeholder, never a value.
			return "", fmt.Errorf("%s: %w", option, err)
		}
		return out, nil
	}

	rawURL, err := replace("bot", t.url, true)
	if err != nil {
		return bot.Config{}, err
	}
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return bot.Config{}, fmt.Errorf("bot: not a ws:// or wss:// URL after placeholders")
	}
	header := make(http.Header, len(t.header))
	for name, values := range t.header {
		for _, v := range values {
			rv, err := replace("bot_header "+name, v, false)
			if err != nil {
				return bot.Config{}, err
			}
			header.Add(name, rv)
		}
	}
	params := make([]bot.Param, 0, len(t.params))
	for _, p := range t.params {
		rv, err := replace("bot_param "+p.Name, p.Value, false)
		if err != nil {
			return bot.Config{}, err
		}
		params = append(params, bot.Param{Name: p.Name, Value: rv})
	}
	return bot.Config{
		URL:         rawURL,
		Header:      header,
		Protocol:    t.protocol,
		SampleRate:  t.sampleRate,
		Params:      params,
		Call:        callInfo(ev),
		DialTimeout: t.timeout,
		SigningKey:  t.signingKey,
	}, nil
}

// callInfo is what the bot is told about the call.
func callInfo(ev whatsapp.CallEvent) bot.CallInfo {
	id := callerIdentity(ev)
	return bot.CallInfo{
		CallID:           ev.Call.ID,
		From:             ev.Call.From,
		FromUserID:       id.userID,
		FromParentUserID: id.parentUserID,
		Username:         id.username,
		To:               ev.Call.To,
		PhoneNumberID:    ev.PhoneNumberID,
		CallerName:       ev.CallerName,
		DeeplinkPayload:  ev.Call.DeeplinkPayload,
		CTAPayload:       ev.Call.CTAPayload,
	}
}

func sortedParams(m map[string]string) []bot.Param {
	params := make([]bot.Param, 0, len(m))
	for k, v := range m {
		params = append(params, bot.Param{Name: k, Value: v})
	}
	sort.Slice(params, func(i, j int) bool { return params[i].Name < params[j].Name })
	return params
}

// Interface guards
var (
	_ caddy.Destructor = (*registry)(nil)
	_ graphAPI         = (*whatsapp.Client)(nil)
)
