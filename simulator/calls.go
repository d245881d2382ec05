package simulator

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Call states, as streamed to the page and listed by GET /api/calls.
const (
	// StateRinging: the connect webhook is being or has been delivered.
	StateRinging = "ringing"
	// StateIncoming: the business is calling the page (a
	// business-initiated call); the first event carries the business's
	// SDP offer.
	StateIncoming = "incoming"
	// StatePreAccepted: the business sent pre_accept with its answer SDP.
	StatePreAccepted = "pre_accepted"
	// StateAccepted: the business sent accept.
	StateAccepted = "accepted"
	// StateRejected: the business sent reject. Final.
	StateRejected = "rejected"
	// StateEnded: either side hung up. Final.
	StateEnded = "ended"
	// StateFailed: the connect webhook was not acknowledged. Final.
	StateFailed = "failed"
)

// Reasons given with final states.
const (
	// ReasonBusinessTerminated: the business sent terminate.
	ReasonBusinessTerminated = "business_terminated"
	// ReasonBusinessRejected: the business sent reject.
	ReasonBusinessRejected = "business_rejected"
	// ReasonCallerHungUp: the page hung up.
	ReasonCallerHungUp = "caller_hung_up"
	// ReasonDeclined: the page declined a business-initiated call.
	ReasonDeclined = "declined"
)

// Who ended a call.
const (
	byBusiness = "business"
	byCaller   = "caller"
)

// maxOfferSize caps the page's offer request.
const maxOfferSize = 256 << 10

// Event is one state change of a call, as sent to the page.
type Event struct {
	// Seq numbers the call's events from 0; it is the SSE event id.
	Seq int `json:"seq"`
	// State is one of the State* constants.
	State string `json:"state"`
	// Reason says why a call reached a final state.
	Reason string `json:"reason,omitempty"`
	// By is "business" or "caller" for a call that ended.
	By string `json:"by,omitempty"`
	// SDP is the business's answer, on the first event that carries it.
	SDP string `json:"sdp,omitempty"`
	// At is when the event happened.
	At time.Time `json:"at"`
}

// GraphAction is one Graph API request the business made for a call.
type GraphAction struct {
	// Action is pre_accept, accept, reject or terminate.
	Action string `json:"action"`
	// At is when the request arrived.
	At time.Time `json:"at"`
	// Status is the HTTP status the simulator answered.
	Status int `json:"status"`
	// Error is the error message answered, if any.
	Error string `json:"error,omitempty"`
}

// WebhookDelivery is one webhook the simulator posted for a call.
type WebhookDelivery struct {
	// Event is connect or terminate.
	Event string `json:"event"`
	// Status is the call status sent in a terminate webhook.
	Status string `json:"status,omitempty"`
	// At is when the delivery started.
	At time.Time `json:"at"`
	// HTTPStatus is the webhook endpoint's answer; 0 if none.
	HTTPStatus int `json:"http_status,omitempty"`
	// Error describes a failed delivery.
	Error string `json:"error,omitempty"`
}

// CallInfo describes one simulated call.
type CallInfo struct {
	// ID is the WhatsApp call id ("wacid." and random characters).
	ID string `json:"id"`
	// Direction is USER_INITIATED (the page called) or BUSINESS_INITIATED
	// (the business called the page).
	Direction string `json:"direction"`
	// State is one of the State* constants.
	State string `json:"state"`
	// Reason says why a call reached a final state.
	Reason string `json:"reason,omitempty"`
	// By says who ended the call: business or caller.
	By string `json:"by,omitempty"`
	// Created is when the page placed the call.
	Created time.Time `json:"created"`
	// Accepted is when the business accepted it.
	Accepted time.Time `json:"accepted,omitzero"`
	// Ended is when it reached a final state.
	Ended time.Time `json:"ended,omitzero"`
	// Actions lists the Graph API requests for the call, in order.
	Actions []GraphAction `json:"actions"`
	// Webhooks lists the webhooks posted for the call, in order.
	Webhooks []WebhookDelivery `json:"webhooks"`
}

// call is the simulator's record of one call. mu guards every field below
// it; events only grows, so a slice of it stays valid after unlocking.
type call struct {
	id       string
	offer    string
	created  time.Time
	outbound bool // business-initiated: offer is the business's
	// bizOpaque is the connect's biz_opaque_callback_data, echoed in
	// statuses.
	bizOpaque string

	mu       sync.Mutex
	state    string
	reason   string
	by       string
	answer   string
	accepted time.Time
	ended    time.Time
	events   []Event
	changed  chan struct{} // closed and replaced at every event
	actions  []GraphAction
	webhooks []WebhookDelivery
}

// emit appends an event; the caller holds c.mu.
func (c *call) emit(at time.Time, state, reason, by, sdp string) {
	c.state, c.reason, c.by = state, reason, by
	c.events = append(c.events, Event{Seq: len(c.events), State: state, Reason: reason, By: by, SDP: sdp, At: at})
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *call) info() CallInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	direction := directionUser
	if c.outbound {
		direction = directionBusiness
	}
	return CallInfo{
		ID:        c.id,
		Direction: direction,
		State:     c.state,
		Reason:    c.reason,
		By:        c.by,
		Created:   c.created,
		Accepted:  c.accepted,
		Ended:     c.ended,
		Actions:   slices.Clone(c.actions),
		Webhooks:  slices.Clone(c.webhooks),
	}
}

func (c *call) recordWebhook(d WebhookDelivery) {
	c.mu.Lock()
	c.webhooks = append(c.webhooks, d)
	c.mu.Unlock()
}

func isFinal(state string) bool {
	return state == StateRejected || state == StateEnded || state == StateFailed
}

// newCallID returns "wacid." and 32 random URL-safe base64 characters.
func newCallID() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "wacid." + base64.RawURLEncoding.EncodeToString(b[:])
}

// Calls returns every live call and the last finished ones (up to 100),
// oldest first.
func (s *Simulator) Calls() []CallInfo {
	st := s.state
	if st == nil {
		return nil
	}
	st.mu.Lock()
	calls := make([]*call, 0, len(st.calls))
	for _, c := range st.calls {
		calls = append(calls, c)
	}
	st.mu.Unlock()
	out := make([]CallInfo, 0, len(calls))
	for _, c := range calls {
		out = append(out, c.info())
	}
	slices.SortFunc(out, func(a, b CallInfo) int { return a.Created.Compare(b.Created) })
	return out
}

func (s *Simulator) lookup(id string) (*call, error) {
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	c, ok := s.state.calls[id]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownCall, id)
	}
	return c, nil
}

// finish records that c reached a final state, and forgets the oldest
// finished calls beyond the limit.
func (s *Simulator) finish(c *call) {
	st := s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	st.finished = append(st.finished, c.id)
	for len(st.finished) > finishedCalls {
		delete(st.calls, st.finished[0])
		st.finished = st.finished[1:]
	}
}

// PlaceCall starts a user-initiated call with the given SDP offer: it
// delivers the signed connect webhook and returns the call id. A failed
// delivery leaves the call in StateFailed and returns an error wrapping
// ErrWebhookStatus or the transport error.
func (s *Simulator) PlaceCall(ctx context.Context, offer string) (string, error) {
	if !strings.HasPrefix(offer, "v=0") || !strings.Contains(offer, "m=audio") {
		return "", fmt.Errorf("%w: want an SDP with an audio section", ErrBadOffer)
	}
	st := s.state
	now := s.now()
	c := &call{id: newCallID(), offer: offer, created: now, changed: make(chan struct{})}
	c.emit(now, StateRinging, "", "", "")
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return "", fmt.Errorf("simulator is shutting down")
	}
	st.calls[c.id] = c
	st.mu.Unlock()

	body, err := s.connectPayload(c.id, offer, now)
	if err != nil {
		return c.id, fmt.Errorf("encode connect webhook: %w", err)
	}
	code, err := s.deliver(ctx, body)
	d := WebhookDelivery{Event: "connect", At: now, HTTPStatus: code}
	if err != nil {
		d.Error = err.Error()
	}
	c.recordWebhook(d)
	s.logger.Info("call placed", zap.String("call_id", c.id), zap.Int("webhook_status", code))
	if err != nil {
		c.mu.Lock()
		final := isFinal(c.state)
		if !final {
			c.ended = s.now()
			c.emit(c.ended, StateFailed, "webhook: "+err.Error(), "", "")
		}
		c.mu.Unlock()
		if !final {
			s.finish(c)
		}
		return c.id, fmt.Errorf("deliver connect webhook for %s: %w", c.id, err)
	}
	return c.id, nil
}

// HangUp ends a call from the caller's side: the call ends with
// ReasonCallerHungUp and a signed terminate webhook is delivered. It
// returns ErrCallEnded if the call had already ended.
func (s *Simulator) HangUp(ctx context.Context, callID string) error {
	c, err := s.lookup(callID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if isFinal(c.state) {
		c.mu.Unlock()
		return fmt.Errorf("hang up %s: %w", callID, ErrCallEnded)
	}
	now := s.now()
	c.ended = now
	started := c.accepted
	c.emit(now, StateEnded, ReasonCallerHungUp, byCaller, "")
	c.mu.Unlock()
	s.finish(c)

	status := terminateCompleted
	if started.IsZero() {
		status = terminateFailed
	}
	s.logger.Info("caller hung up", zap.String("call_id", callID))
	return s.sendTerminate(ctx, c, status, started, now)
}

func (s *Simulator) sendTerminate(ctx context.Context, c *call, status string, started, ended time.Time) error {
	body, err := s.terminatePayload(c, status, started, ended)
	if err != nil {
		return fmt.Errorf("encode terminate webhook: %w", err)
	}
	code, err := s.deliver(ctx, body)
	d := WebhookDelivery{Event: "terminate", Status: status, At: s.now(), HTTPStatus: code}
	if err != nil {
		d.Error = err.Error()
	}
	c.recordWebhook(d)
	if err != nil {
		return fmt.Errorf("deliver terminate webhook for %s: %w", c.id, err)
	}
	return nil
}

// sendTerminateAsync delivers a terminate webhook after the business ended
// the call, as Meta does, from a goroutine that Cleanup waits for.
func (s *Simulator) sendTerminateAsync(c *call, status string, started, ended time.Time) {
	s.goOwned(func(ctx context.Context) {
		if err := s.sendTerminate(ctx, c, status, started, ended); err != nil {
			s.logger.Warn("terminate webhook failed", zap.String("call_id", c.id), zap.Error(err))
		}
	})
}

// goOwned runs fn in a goroutine that Cleanup waits for, with the context
// Cleanup cancels; after Cleanup it does nothing.
func (s *Simulator) goOwned(fn func(ctx context.Context)) {
	st := s.state
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.wg.Add(1)
	st.mu.Unlock()
	go func() {
		defer st.wg.Done()
		fn(st.ctx)
	}()
}

// Page API.

func (s *Simulator) serveConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"caller":               s.Caller,
		"caller_name":          s.CallerName,
		"display_phone_number": s.DisplayPhoneNumber,
		"phone_number_id":      s.PhoneNumberID,
	})
}

func (s *Simulator) serveCallList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Calls []CallInfo `json:"calls"`
	}{s.Calls()})
}

func (s *Simulator) servePlaceCall(w http.ResponseWriter, r *http.Request) {
	if !requireJSON(w, r) {
		return
	}
	var req struct {
		SDP string `json:"sdp"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxOfferSize))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decode offer: %w", err))
		return
	}
	id, err := s.PlaceCall(r.Context(), req.SDP)
	switch {
	case errors.Is(err, ErrBadOffer):
		writeError(w, http.StatusBadRequest, err)
	case err != nil && id != "":
		writeJSON(w, http.StatusBadGateway, map[string]string{"call_id": id, "state": StateFailed, "error": err.Error()})
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err)
	default:
		c, _ := s.lookup(id)
		writeJSON(w, http.StatusCreated, map[string]string{"call_id": id, "state": c.info().State})
	}
}

func (s *Simulator) serveHangup(w http.ResponseWriter, r *http.Request) {
	if !requireJSON(w, r) {
		return
	}
	id := r.PathValue("id")
	err := s.HangUp(r.Context(), id)
	switch {
	case errors.Is(err, ErrUnknownCall):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, ErrCallEnded):
		writeError(w, http.StatusConflict, err)
	case err != nil:
		// The call ended anyway; report the failed webhook.
		writeJSON(w, http.StatusBadGateway, map[string]string{"call_id": id, "state": StateEnded, "error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"call_id": id, "state": StateEnded})
	}
}

// keepAlive is how often an idle event stream gets a comment line.
const keepAlive = 15 * time.Second

// serveEvents streams a call's events as Server-Sent Events, from the
// start or after Last-Event-ID, and ends after a final state.
func (s *Simulator) serveEvents(w http.ResponseWriter, r *http.Request) {
	c, err := s.lookup(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	next := 0
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			next = n + 1
		}
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ticker := time.NewTicker(keepAlive)
	defer ticker.Stop()
	var buf []byte
	for {
		c.mu.Lock()
		var events []Event
		if next < len(c.events) {
			events = c.events[next:]
		}
		changed := c.changed
		c.mu.Unlock()
		for _, ev := range events {
			data, _ := json.Marshal(ev)
			buf = fmt.Appendf(buf[:0], "id: %d\nevent: state\ndata: %s\n\n", ev.Seq, data)
			if _, err := w.Write(buf); err != nil {
				return
			}
			next = ev.Seq + 1
			if isFinal(ev.State) {
				_ = rc.Flush()
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-changed:
		case <-ticker.C:
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.state.streamsDone:
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
