package whatsappcalls

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// DefaultRingTimeout bounds how long a business-initiated call rings before
// we end it as not answered.
const DefaultRingTimeout = 60 * time.Second

// Bounds of the webhooks kept for call ids that are not live yet.
const (
	// earlyWindow is how long a webhook for an unknown call id is kept
	// while a call is being placed: Meta's answer or first status can
	// arrive before its connect request has returned the call id.
	earlyWindow = 30 * time.Second
	// maxEarly caps the webhooks kept; calls that other apps on the same
	// account place are seen too, and left alone.
	maxEarly = 1024
)

// Why an outbound attempt ended, as reported by the API, the logs and the
// status callback.
const (
	reasonRejected       = "rejected"        // the user declined
	reasonNoAnswer       = "no_answer"       // ring_timeout passed, or Meta ended it unanswered
	reasonTerminated     = "terminated"      // Meta ended it (see status and errors)
	reasonBadAnswer      = "bad_answer"      // Meta's SDP answer was unusable
	reasonBotUnavailable = "bot_unavailable" // the bot could not be dialed when the user answered
	reasonMediaTimeout   = "media_timeout"   // no media within answer_timeout of the user answering
	reasonHungUpAPI      = "hung_up_api"
	reasonShutdown       = "shutdown"
)

// outboundEvents are the webhooks of one outbound call, handed from the
// webhook handler to the call's goroutine without ever blocking the
// handler: they are queued under a mutex and signalled on a channel of
// size 1 (a pending signal covers any number of events).
type outboundEvents struct {
	notify chan struct{}

	mu       sync.Mutex
	answers  []whatsapp.CallEvent
	statuses []whatsapp.Status
}

func newOutboundEvents() *outboundEvents {
	return &outboundEvents{notify: make(chan struct{}, 1)}
}

func (o *outboundEvents) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

func (o *outboundEvents) addAnswer(ev whatsapp.CallEvent) {
	o.mu.Lock()
	o.answers = append(o.answers, ev)
	o.mu.Unlock()
	o.signal()
}

func (o *outboundEvents) addStatus(st whatsapp.Status) {
	o.mu.Lock()
	o.statuses = append(o.statuses, st)
	o.mu.Unlock()
	o.signal()
}

// take returns and clears the queued events.
func (o *outboundEvents) take() ([]whatsapp.CallEvent, []whatsapp.Status) {
	o.mu.Lock()
	defer o.mu.Unlock()
	a, s := o.answers, o.statuses
	o.answers, o.statuses = nil, nil
	return a, s
}

// earlyEvent is what arrived for a call id before it was live.
type earlyEvent struct {
	at        time.Time
	answers   []whatsapp.CallEvent
	statuses  []whatsapp.Status
	terminate *whatsapp.CallEvent
}

// stashEarly records a webhook for an id that is not live, if a call is
// being placed (it may be that call's). r.mu must be held.
func (r *registry) stashEarly(id string, add func(*earlyEvent)) {
	if r.placing == 0 || id == "" {
		return
	}
	now := r.now()
	for k, e := range r.early {
		if now.Sub(e.at) > earlyWindow {
			delete(r.early, k)
		}
	}
	e := r.early[id]
	if e == nil {
		if len(r.early) >= maxEarly {
			return
		}
		e = &earlyEvent{at: now}
		r.early[id] = e
	}
	add(e)
}

// answer hands Meta's SDP answer (a connect webhook of a business-initiated
// call) to the call we placed. Answers to calls placed by other apps on the
// account are left alone.
//
// In a cluster, an answer for a call that is not live here goes to the
// node that placed it.
func (r *registry) answer(ev whatsapp.CallEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.takeAnswerLocked(ev) {
		r.forwardEventLocked(ev.Call.ID, eventKindAnswer, ev)
	}
}

// takeAnswer is answer without forwarding, for an answer forwarded here.
func (r *registry) takeAnswer(ev whatsapp.CallEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.takeAnswerLocked(ev)
}

// takeAnswerLocked gives the answer to the live call, or keeps it for a
// call being placed here, and reports whether the call was live here.
func (r *registry) takeAnswerLocked(ev whatsapp.CallEvent) bool {
	if c := r.live[ev.Call.ID]; c != nil && c.out != nil {
		c.out.addAnswer(ev)
		return true
	}
	r.stashEarly(ev.Call.ID, func(e *earlyEvent) { e.answers = append(e.answers, ev) })
	return false
}

// status hands a call status (RINGING, ACCEPTED, REJECTED) to the call we
// placed; statuses of other calls are left alone.
// In a cluster, a status of a call that is not live here goes to the node
// that placed it.
func (r *registry) status(st whatsapp.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.takeStatusLocked(st) {
		r.forwardEventLocked(st.ID, eventKindStatus, st)
	}
}

// takeStatus is status without forwarding, for a status forwarded here.
func (r *registry) takeStatus(st whatsapp.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.takeStatusLocked(st)
}

func (r *registry) takeStatusLocked(st whatsapp.Status) bool {
	if c := r.live[st.ID]; c != nil && c.out != nil {
		c.out.addStatus(st)
		return true
	}
	r.stashEarly(st.ID, func(e *earlyEvent) { e.statuses = append(e.statuses, st) })
	return false
}

// placeRequest is the body of POST /calls: the user to call and the
// optional per-call overrides.
type placeRequest struct {
	// PhoneNumberID is the business number to call from. Default: the
	// handler's only phone_number_ids entry.
	PhoneNumberID string `json:"phone_number_id,omitempty"`
	// To is the user's wa_id; Recipient their BSUID. Exactly one is set.
	To        string `json:"to,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	// Bot replaces the handler's bot URL (ws:// or wss://, no
	// placeholders) for this call.
	Bot string `json:"bot,omitempty"`
	// BotParams are added to (or replace) the configured bot_param values.
	BotParams map[string]string `json:"bot_params,omitempty"`
	// BizOpaqueCallbackData is sent with connect; Meta echoes it in the
	// call's statuses and terminate (at most 512 characters).
	BizOpaqueCallbackData string `json:"biz_opaque_callback_data,omitempty"`
}

// placeError is a refused placement, with the HTTP status and the code the
// control API answers.
type placeError struct {
	status int
	code   string // no_permission, call_limit, over_capacity, graph_error, bad_request, media
	err    error
	meta   *whatsapp.APIError // the Graph error, if any
}

func (e *placeError) Error() string { return e.err.Error() }
func (e *placeError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) *placeError {
	return &placeError{status: http.StatusBadRequest, code: "bad_request", err: fmt.Errorf(format, args...)}
}

// check validates a place request against cfg.
func (req *placeRequest) check(cfg callConfig) *placeError {
	switch {
	case req.To == "" && req.Recipient == "":
		return badRequest("to or recipient is required")
	case req.To != "" && req.Recipient != "":
		return badRequest("give one of to and recipient, not both")
	case len([]rune(req.BizOpaqueCallbackData)) > maxCallbackData:
		return badRequest("biz_opaque_callback_data is over %d characters", maxCallbackData)
	}
	if req.PhoneNumberID == "" {
		if len(cfg.phoneNumbers) != 1 {
			return badRequest("phone_number_id is required (the handler serves %d numbers)", len(cfg.phoneNumbers))
		}
		for id := range cfg.phoneNumbers {
			req.PhoneNumberID = id
		}
	} else if cfg.phoneNumbers != nil {
		if _, ok := cfg.phoneNumbers[req.PhoneNumberID]; !ok {
			return badRequest("phone_number_id %q is not in phone_number_ids", req.PhoneNumberID)
		}
	}
	if req.Bot != "" {
		u, err := url.Parse(req.Bot)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return badRequest("bot: not a ws:// or wss:// URL")
		}
	}
	return nil
}

// reserve holds a call slot against maxCalls for a call being placed.
func (r *registry) reserve(maxCalls int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return errShutdown
	}
	if len(r.live)+r.placing >= maxCalls {
		return errOverCapacity
	}
	r.placing++
	return nil
}

// unreserve gives back a slot that reserve took, for a call that was never
// placed.
func (r *registry) unreserve() {
	r.mu.Lock()
	r.placing--
	if r.placing == 0 {
		clear(r.early)
	}
	r.mu.Unlock()
}

// place places a business-initiated call: it checks the user's call
// permission, makes our offer, and sends connect. It returns once Meta has
// given the call its id; the call then goes on in its own goroutine, owned
// by the registry: ringing, Meta's answer, the bot connected when the user
// picks up. ctx bounds the placement only.
func (r *registry) place(ctx context.Context, cfg callConfig, req placeRequest) (*call, error) {
	if perr := req.check(cfg); perr != nil {
		return nil, perr
	}
	botTmpl := cfg.bot
	if req.Bot != "" {
		botTmpl.url = req.Bot
	}
	extra := req.BotParams
	if req.Recipient != "" {
		// A user without a shared number is known by their BSUID only:
		// the bot gets it as to_user_id (a request's own bot_params win).
		extra = map[string]string{"to_user_id": req.Recipient}
		for k, v := range req.BotParams {
			extra[k] = v
		}
	}
	if len(extra) > 0 {
		botTmpl.params = mergeParams(botTmpl.params, extra)
		if err := bot.CheckParams(botTmpl.protocol, botTmpl.params); err != nil {
			return nil, badRequest("bot_params: %v", err)
		}
	}
	if err := r.reserve(cfg.maxCalls); err != nil {
		return nil, &placeError{status: http.StatusServiceUnavailable, code: "over_capacity", err: err}
	}
	placed := false
	defer func() {
		if !placed {
			r.unreserve()
		}
	}()
	if req.To != "" {
		perm, err := cfg.graph.CallPermission(ctx, req.PhoneNumberID, req.To)
		if err != nil {
			return nil, graphPlaceError(err)
		}
		if err := perm.CanCall(); err != nil {
			return nil, &placeError{status: http.StatusForbidden, code: "no_permission", err: err}
		}
	}
	o, err := cfg.engine.NewOutbound(ctx, media.OutboundConfig{SampleRate: botTmpl.sampleRate, Logger: cfg.logger.Named("media")})
	if err != nil {
		return nil, &placeError{status: http.StatusInternalServerError, code: "media", err: err}
	}
	id, err := cfg.graph.Connect(ctx, req.PhoneNumberID, whatsapp.ConnectRequest{
		To: req.To, Recipient: req.Recipient, OfferSDP: o.Offer(), BizOpaqueCallbackData: req.BizOpaqueCallbackData,
	})
	if err != nil {
		_ = o.Close()
		return nil, graphPlaceError(err)
	}

	ev := whatsapp.CallEvent{
		PhoneNumberID: req.PhoneNumberID,
		Call: whatsapp.Call{
			ID: id, To: req.To, ToUserID: req.Recipient, Direction: whatsapp.DirectionBusinessInitiated,
			Event: whatsapp.EventConnect, BizOpaqueCallbackData: req.BizOpaqueCallbackData,
		},
	}
	r.mu.Lock()
	r.placing--
	if r.ctx.Err() != nil {
		r.mu.Unlock()
		placed = true
		_ = o.Close()
		r.terminateTowardMeta(cfg.graph, ev, cfg.logger)
		return nil, &placeError{status: http.StatusServiceUnavailable, code: "over_capacity", err: errShutdown}
	}
	cctx, hangup := context.WithCancelCause(r.ctx)
	c := &call{
		ev: ev, direction: directionOutbound, received: r.now(), ctx: cctx, hangup: hangup,
		botURL: redactQuery(botTmpl.url), out: newOutboundEvents(),
	}
	c.setState(statePlacing)
	r.remember(id)
	r.live[id] = c
	early := r.early[id]
	delete(r.early, id)
	if r.placing == 0 {
		clear(r.early)
	}
	r.wg.Add(1)
	link := r.link
	r.mu.Unlock()
	placed = true
	if link != nil {
		// The call is this node's: Meta's answer and statuses landing on
		// another node are forwarded here.
		r.claim(link, ev, c.received, cfg)
	}

	if early != nil {
		for _, a := range early.answers {
			c.out.addAnswer(a)
		}
		for _, st := range early.statuses {
			c.out.addStatus(st)
		}
		if early.terminate != nil {
			c.ended.Store(early.terminate)
			c.hangup(errCallerHungUp)
		}
	}
	r.metrics.callStarted()
	cfg.logger.Info("call placed", zap.String("call_id", id), zap.String("phone_number_id", req.PhoneNumberID))
	cfg.notify.send(c.statusEvent(eventInitiated))
	go r.runOutbound(c, o, cfg, botTmpl)
	return c, nil
}

// graphPlaceError maps a Graph API error of a placement to the API's
// answer: Meta's no-permission and limit codes get their own.
func graphPlaceError(err error) *placeError {
	pe := &placeError{status: http.StatusBadGateway, code: "graph_error", err: err}
	var apiErr *whatsapp.APIError
	if errors.As(err, &apiErr) {
		pe.meta = apiErr
		switch apiErr.Code {
		case whatsapp.CodeNoPermission:
			pe.status, pe.code = http.StatusForbidden, "no_permission"
		case whatsapp.CodeCallLimit, whatsapp.CodeConcurrentCallLimit, whatsapp.CodeRateLimited:
			pe.status, pe.code = http.StatusTooManyRequests, "limit_reached"
		}
	}
	return pe
}

// mergeParams returns base with extra added; an extra with the name of a
// base parameter replaces it.
func mergeParams(base []bot.Param, extra map[string]string) []bot.Param {
	out := make([]bot.Param, 0, len(base)+len(extra))
	for _, p := range base {
		if _, ok := extra[p.Name]; !ok {
			out = append(out, p)
		}
	}
	return append(out, sortedParams(extra)...)
}

// runOutbound is one outbound call's life after connect: it follows Meta's
// answer and statuses until the user picks up (both the SDP answer and
// ACCEPTED have come), then dials the bot and bridges the media until
// either side hangs up. A rejection, no answer within ring_timeout, a
// terminate from Meta, an unusable answer, a bot that is down or media
// that never connects end the attempt; every end that Meta did not report
// is sent to Meta as terminate.
func (r *registry) runOutbound(c *call, o *media.Outbound, cfg callConfig, botTmpl botTemplate) {
	defer r.wg.Done()
	defer r.release(c)
	defer o.Close()

	id := c.ev.Call.ID
	log := cfg.logger.With(zap.String("call_id", id))
	ringTimeout := cfg.ringTimeout
	if ringTimeout <= 0 {
		ringTimeout = DefaultRingTimeout
	}
	ring := time.NewTimer(ringTimeout)
	defer ring.Stop()

	end := func(reason string, towardMeta bool, err error) {
		if towardMeta {
			r.terminateTowardMeta(cfg.graph, c.ev, log)
		}
		result := resultFailed
		switch reason {
		case reasonRejected:
			result = resultRejected
		case reasonNoAnswer:
			result = resultMissed
		}
		r.metrics.callEnded(result, reason, media.Stats{})
		ev := c.statusEvent(eventEnded)
		ev.Reason = reason
		ev.Errors = metaErrors(err)
		c.addTerminate(&ev)
		cfg.notify.send(ev)
		log.Info("call ended", zap.String("direction", directionOutbound), zap.String("result", result),
			zap.String("reason", reason), zap.Duration("duration", time.Since(c.received)), zap.Error(err))
	}

	botEv := c.ev // with the business number once Meta's answer names it
	var answered, accepted bool
	for !answered || !accepted {
		select {
		case <-c.ctx.Done():
			reason, toward := r.outboundCause(c)
			end(reason, toward, nil)
			return
		case <-ring.C:
			end(reasonNoAnswer, true, fmt.Errorf("not answered within ring_timeout %s", ringTimeout))
			return
		case <-c.out.notify:
		}
		answers, statuses := c.out.take()
		for _, a := range answers {
			if answered {
				continue // Meta retried the delivery
			}
			sdp := answerSDP(a.Call)
			if err := o.SetAnswer(sdp); err != nil {
				end(reasonBadAnswer, true, err)
				return
			}
			answered = true
			if a.DisplayPhoneNumber != "" {
				botEv.Call.From = a.DisplayPhoneNumber
			}
		}
		for _, st := range statuses {
			switch strings.ToUpper(st.Status) {
			case "RINGING":
				if c.stateName() == statePlacing {
					c.setState(stateRinging)
					cfg.notify.send(c.statusEvent(eventRinging))
				}
			case "ACCEPTED":
				accepted = true
			case "REJECTED":
				end(reasonRejected, false, nil)
				return
			default:
				if ce := log.Check(zapcore.DebugLevel, "call status ignored"); ce != nil {
					ce.Write(zap.String("status", st.Status))
				}
			}
		}
	}
	ring.Stop()
	c.setState(stateConnecting)

	setup, cancel := context.WithTimeout(c.ctx, cfg.answerTimeout)
	defer cancel()
	botCfg, err := botTmpl.config(botEv, log.Named("bot"))
	if err != nil {
		end(reasonBotUnavailable, true, fmt.Errorf("bot config: %w", err))
		return
	}
	sess, err := o.Bridge(setup, id, botCfg)
	if err != nil {
		if c.ctx.Err() != nil {
			reason, toward := r.outboundCause(c)
			end(reason, toward, err)
			return
		}
		end(reasonBotUnavailable, true, err)
		return
	}
	c.session.Store(sess)
	if err := sess.WaitConnected(setup); err != nil {
		if c.ctx.Err() != nil {
			reason, toward := r.outboundCause(c)
			end(reason, toward, err)
			return
		}
		end(reasonMediaTimeout, true, fmt.Errorf("media not connected within answer_timeout %s: %w", cfg.answerTimeout, err))
		return
	}
	cancel()
	r.talk(c, cfg, sess, log, zap.String("direction", directionOutbound))
}

// outboundCause says why an outbound call's context ended before it was
// answered, and whether Meta must be told with terminate.
func (r *registry) outboundCause(c *call) (string, bool) {
	cause := context.Cause(c.ctx)
	switch {
	case errors.Is(cause, errCallerHungUp):
		t := c.ended.Load()
		switch {
		case t != nil && strings.EqualFold(t.Call.Status, "REJECTED"):
			return reasonRejected, false
		case t != nil && t.Call.StartTime.IsZero() && t.Call.Duration == 0 && len(t.Errors) == 0:
			return reasonNoAnswer, false
		}
		return reasonTerminated, false
	case errors.Is(cause, errShutdown):
		return reasonShutdown, true
	case errors.Is(cause, errHungUpByBotREST):
		return "hung_up_bot", true
	default:
		return reasonHungUpAPI, true
	}
}

// answerSDP returns the SDP answer of a business-initiated connect: the
// session's, or the older connection.webrtc.sdp.
func answerSDP(c whatsapp.Call) string {
	if c.Session != nil && c.Session.SDP != "" {
		return c.Session.SDP
	}
	if c.Connection != nil && c.Connection.WebRTC != nil {
		return c.Connection.WebRTC.SDP
	}
	return ""
}

// statusEvent returns a status callback event of kind for c.
func (c *call) statusEvent(kind string) statusEvent {
	ev := statusEvent{
		Event:                 kind,
		CallID:                c.ev.Call.ID,
		Direction:             c.direction,
		PhoneNumberID:         c.ev.PhoneNumberID,
		TwilioCallSID:         bot.TwilioCallSID(c.ev.Call.ID),
		BizOpaqueCallbackData: c.ev.Call.BizOpaqueCallbackData,
	}
	if c.direction == directionOutbound {
		ev.To, ev.Recipient = c.ev.Call.To, c.ev.Call.ToUserID
	} else {
		ev.From = c.ev.Call.From
	}
	return ev
}

// addTerminate adds what Meta's terminate webhook said, if one came.
func (c *call) addTerminate(ev *statusEvent) {
	t := c.ended.Load()
	if t == nil {
		return
	}
	ev.Status = t.Call.Status
	if d := t.Call.Duration; d > 0 && ev.DurationSeconds == 0 {
		ev.DurationSeconds = float64(d)
	}
	for _, e := range t.Errors {
		ev.Errors = append(ev.Errors, callbackError{Code: e.Code, Message: e.Text()})
	}
}

// metaErrors returns the Graph API error in err, if any, as a status
// callback's errors.
func metaErrors(err error) []callbackError {
	var apiErr *whatsapp.APIError
	if errors.As(err, &apiErr) && apiErr.Code != 0 {
		return []callbackError{{Code: apiErr.Code, Message: apiErr.Message}}
	}
	return nil
}

// redactQuery returns a URL without its query and user info, which may
// hold secrets, for display.
func redactQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.RawQuery, u.User, u.Fragment = "", nil, ""
	return u.String()
}
