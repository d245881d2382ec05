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

// Reasons a call ends, as logged and counted.
const (
	resultAnswered = "answered"
	resultRejected = "rejected"
	resultMissed   = "missed" // the caller hung up before we answered
)

// Errors that explain why a call ended.
var (
	errCallerHungUp = errors.New("caller hung up")
	errShutdown     = errors.New("server stopping")
	errOverCapacity = errors.New("max_calls reached")
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
	seen      map[string]time.Time
	lastPrune time.Time
	now       func() time.Time
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
	return nil
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
	ev       whatsapp.CallEvent
	received time.Time
	ctx      context.Context
	hangup   context.CancelCauseFunc
	session  atomic.Pointer[media.Session] // set once media is set up
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
	if _, dup := r.seen[id]; dup {
		r.mu.Unlock()
		if c := cfg.logger.Check(zapcore.DebugLevel, "repeated connect ignored"); c != nil {
			c.Write(zap.String("call_id", id))
		}
		return
	}
	r.remember(id)
	if len(r.live) >= cfg.maxCalls {
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			r.reject(cfg, ev, errOverCapacity, "over_capacity")
		}()
		return
	}
	ctx, hangup := context.WithCancelCause(r.ctx)
	c := &call{ev: ev, received: r.now(), ctx: ctx, hangup: hangup}
	r.live[id] = c
	r.wg.Add(1)
	r.mu.Unlock()

	r.metrics.callStarted()
	go r.run(c, cfg)
}

// terminate ends the call that Meta reports as terminated; cfg is the
// config of the handler that received the webhook. A terminate for an
// unknown call is remembered, so that a late connect for it does nothing.
func (r *registry) terminate(ev whatsapp.CallEvent, cfg callConfig) {
	r.mu.Lock()
	c := r.live[ev.Call.ID]
	if c == nil {
		r.remember(ev.Call.ID)
	}
	logger := cfg.logger
	r.mu.Unlock()
	if c != nil {
		c.hangup(errCallerHungUp)
	}
	logger.Info("call terminated by meta",
		zap.String("call_id", ev.Call.ID),
		zap.String("status", ev.Call.Status),
		zap.String("reason", ev.Reason()),
		zap.Bool("live", c != nil))
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
}

// run is one call's life: build the answer and dial the bot, pre_accept,
// wait for media, accept, then bridge until either side hangs up. Any
// failure before accept rejects the call; any end after it that Meta did
// not report is sent to Meta as terminate.
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
		CallID: id,
		Offer:  c.ev.Call.Session.SDP,
		Bot:    botCfg,
		Logger: log.Named("media"),
	})
	if err != nil {
		reason := "media"
		if errors.Is(err, media.ErrBotUnavailable) {
			reason = "bot_unavailable"
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

	if err := cfg.graph.Accept(setup, phoneID, id, answer, ""); err != nil {
		r.fail(c, cfg, err, "graph_accept")
		return
	}
	answered := time.Now()
	log.Info("call answered", zap.Duration("setup", answered.Sub(c.received)))

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
	log.Info("call ended",
		zap.String("result", resultAnswered),
		zap.String("ended_by", endedBy(ended)),
		zap.Duration("duration", time.Since(answered)),
		zap.Uint64("packets_in", st.PacketsIn),
		zap.Uint64("packets_out", st.PacketsOut),
		zap.Uint64("packets_lost", st.PacketsLost),
		zap.Uint64("underruns", st.Underruns),
		zap.Uint64("dtmf", st.DTMFCount))
}

// fail ends a call that was never answered: it is rejected toward Meta,
// unless the caller already hung up.
func (r *registry) fail(c *call, cfg callConfig, err error, reason string) {
	if errors.Is(context.Cause(c.ctx), errCallerHungUp) {
		r.metrics.callEnded(resultMissed, "caller_hung_up", media.Stats{})
		cfg.logger.Info("call ended", zap.String("call_id", c.ev.Call.ID),
			zap.String("result", resultMissed), zap.Duration("duration", time.Since(c.received)))
		return
	}
	r.reject(cfg, c.ev, err, reason)
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
// {env.*} variable or an unknown placeholder fails the config load.
func (t botTemplate) check(repl *caddy.Replacer) error {
	sample := whatsapp.CallEvent{PhoneNumberID: "1", Call: whatsapp.Call{ID: "wacid.x", From: "1", To: "1"}}
	_, err := t.resolve(repl, sample, true)
	return err
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
	vals := map[string]string{
		"whatsapp.call_id":         ev.Call.ID,
		"whatsapp.from":            ev.Call.From,
		"whatsapp.to":              ev.Call.To,
		"whatsapp.phone_number_id": ev.PhoneNumberID,
	}
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
		URL:        rawURL,
		Header:     header,
		Protocol:   t.protocol,
		SampleRate: t.sampleRate,
		Params:     params,
		Call: bot.CallInfo{
			CallID:        ev.Call.ID,
			From:          ev.Call.From,
			To:            ev.Call.To,
			PhoneNumberID: ev.PhoneNumberID,
			CallerName:    ev.CallerName,
		},
		DialTimeout: t.timeout,
		SigningKey:  t.signingKey,
	}, nil
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
