package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Call directions in webhooks and CallInfo.
const (
	directionUser     = "USER_INITIATED"
	directionBusiness = "BUSINESS_INITIATED"
)

// permissionLifetime is how long the simulated user's temporary call
// permission lasts, as Meta's does.
const permissionLifetime = 7 * 24 * time.Hour

// webhookStatus is one entry of value.statuses: the progress of a
// business-initiated call.
type webhookStatus struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	Status      string `json:"status"`
	Timestamp   string `json:"timestamp"`
	RecipientID string `json:"recipient_id"`
	BizOpaque   string `json:"biz_opaque_callback_data,omitempty"`
}

// webhookMessage is a message of a "messages" change: here only the user's
// reply to a call permission request.
type webhookMessage struct {
	From        string              `json:"from"`
	ID          string              `json:"id"`
	Timestamp   string              `json:"timestamp"`
	Type        string              `json:"type"`
	Interactive *webhookInteractive `json:"interactive,omitempty"`
}

type webhookInteractive struct {
	Type                string                  `json:"type"`
	CallPermissionReply *webhookPermissionReply `json:"call_permission_reply,omitempty"`
}

type webhookPermissionReply struct {
	Response            string `json:"response"`
	IsPermanent         bool   `json:"is_permanent"`
	ExpirationTimestamp int64  `json:"expiration_timestamp,omitempty"`
	ResponseSource      string `json:"response_source"`
}

// checkOffer applies what Meta needs of a business's offer: an audio
// section, a sha-256 fingerprint, a=setup:actpass (Meta answers active)
// and every candidate inline.
func checkOffer(sdp string) error { return checkSDP(sdp, "actpass") }

// connect starts a business-initiated call to the page: the page's next
// poll of GET /api/calls shows it, its first event carries the offer, and
// a RINGING status webhook follows, as Meta sends it.
func (s *Simulator) connect(req graphRequest) (string, *graphError) {
	if req.To != "" && req.To != s.Caller {
		return "", invalidParam("Invalid parameter to: the simulated user is %s", s.Caller)
	}
	st := s.state
	now := s.now()
	c := &call{id: newCallID(), offer: req.Session.SDP, created: now, outbound: true, bizOpaque: req.BizOpaque, changed: make(chan struct{})}
	c.emit(now, StateIncoming, "", "", c.offer)
	c.actions = append(c.actions, GraphAction{Action: "connect", At: now, Status: http.StatusOK})
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return "", &graphError{status: http.StatusServiceUnavailable, Message: "simulator is shutting down", Type: "OAuthException", Code: 2}
	}
	st.calls[c.id] = c
	st.mu.Unlock()
	s.logger.Info("business placed a call", zap.String("call_id", c.id))
	s.deliverAsync(c, "status", "RINGING", s.statusPayload(c, "RINGING", now))
	return c.id, nil
}

// AnswerCall answers a business-initiated call with the page's SDP answer:
// the connect webhook with the answer, then the ACCEPTED status, are
// delivered as Meta sends them.
func (s *Simulator) AnswerCall(ctx context.Context, callID, answer string) error {
	if !strings.HasPrefix(answer, "v=0") || !strings.Contains(answer, "m=audio") {
		return fmt.Errorf("%w: want an SDP answer with an audio section", ErrBadOffer)
	}
	c, err := s.outboundCall(callID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.state != StateIncoming {
		state := c.state
		c.mu.Unlock()
		return fmt.Errorf("answer %s: %w (state %s)", callID, ErrCallEnded, state)
	}
	now := s.now()
	c.answer, c.accepted = answer, now
	c.emit(now, StateAccepted, "", "", "")
	c.mu.Unlock()
	s.logger.Info("user answered", zap.String("call_id", callID))
	body, err := json.Marshal(s.envelope(webhookCall{
		ID: c.id, From: s.DisplayPhoneNumber, To: s.Caller, Event: "connect", Timestamp: unixString(now),
		Direction: directionBusiness, Session: &webhookSession{SDPType: "answer", SDP: answer},
	}, false))
	if err != nil {
		return fmt.Errorf("encode connect webhook: %w", err)
	}
	if err := s.deliverRecorded(ctx, c, "connect", "", body); err != nil {
		return err
	}
	return s.deliverRecorded(ctx, c, "status", "ACCEPTED", s.statusPayload(c, "ACCEPTED", now))
}

// DeclineCall declines a business-initiated call that rings: the REJECTED
// status and a terminate webhook are delivered.
func (s *Simulator) DeclineCall(ctx context.Context, callID string) error {
	c, err := s.outboundCall(callID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.state != StateIncoming {
		state := c.state
		c.mu.Unlock()
		return fmt.Errorf("decline %s: %w (state %s)", callID, ErrCallEnded, state)
	}
	now := s.now()
	c.ended = now
	c.emit(now, StateRejected, ReasonDeclined, byCaller, "")
	c.mu.Unlock()
	s.finish(c)
	s.logger.Info("user declined", zap.String("call_id", callID))
	if err := s.deliverRecorded(ctx, c, "status", "REJECTED", s.statusPayload(c, "REJECTED", now)); err != nil {
		return err
	}
	return s.sendTerminate(ctx, c, terminateRejected, time.Time{}, now)
}

func (s *Simulator) outboundCall(id string) (*call, error) {
	c, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	if !c.outbound {
		return nil, fmt.Errorf("%w %q: not a business-initiated call", ErrUnknownCall, id)
	}
	return c, nil
}

// statusPayload builds a statuses webhook of a business-initiated call.
func (s *Simulator) statusPayload(c *call, status string, at time.Time) []byte {
	v := s.value()
	v.Statuses = []webhookStatus{{ID: c.id, Type: "call", Status: status, Timestamp: unixString(at), RecipientID: s.Caller, BizOpaque: c.bizOpaque}}
	body, _ := json.Marshal(s.wrap("calls", v)) // plain strings: cannot fail
	return body
}

// deliverRecorded posts a webhook and records it on the call.
func (s *Simulator) deliverRecorded(ctx context.Context, c *call, event, status string, body []byte) error {
	code, err := s.deliver(ctx, body)
	d := WebhookDelivery{Event: event, Status: status, At: s.now(), HTTPStatus: code}
	if err != nil {
		d.Error = err.Error()
	}
	c.recordWebhook(d)
	if err != nil {
		return fmt.Errorf("deliver %s webhook for %s: %w", event, c.id, err)
	}
	return nil
}

// deliverAsync posts a webhook from a goroutine that Cleanup waits for, as
// Meta delivers after answering the Graph request.
func (s *Simulator) deliverAsync(c *call, event, status string, body []byte) {
	s.goOwned(func(ctx context.Context) {
		if err := s.deliverRecorded(ctx, c, event, status, body); err != nil {
			s.logger.Warn("webhook failed", zap.String("call_id", c.id), zap.String("event", event), zap.Error(err))
		}
	})
}

// servePermissions fakes GET /{phone_number_id}/call_permissions: the
// simulated user has granted a temporary permission.
func (s *Simulator) servePermissions(w http.ResponseWriter, r *http.Request) {
	if gerr := s.checkGraphAuth(r); gerr != nil {
		writeGraphError(w, gerr)
		return
	}
	if user := r.URL.Query().Get("user_wa_id"); user != s.Caller {
		writeGraphError(w, invalidParam("Invalid parameter user_wa_id: the simulated user is %s", s.Caller))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"messaging_product": "whatsapp",
		"permission":        map[string]any{"status": "temporary", "expiration_time": s.now().Add(permissionLifetime).Unix()},
		"actions": []map[string]any{
			{"action_name": "send_call_permission_request", "can_perform_action": true,
				"limits": []map[string]any{{"time_period": "PT24H", "max_allowed": 1, "current_usage": 0}}},
			{"action_name": "start_call", "can_perform_action": true,
				"limits": []map[string]any{{"time_period": "PT24H", "max_allowed": 100, "current_usage": 0}}},
		},
	})
}

// serveMessages fakes POST /{phone_number_id}/messages for the interactive
// call_permission_request: it answers with a message id, and the simulated
// user accepts at once (a call_permission_reply on the messages field).
func (s *Simulator) serveMessages(w http.ResponseWriter, r *http.Request) {
	if gerr := s.checkGraphAuth(r); gerr != nil {
		writeGraphError(w, gerr)
		return
	}
	var req struct {
		MessagingProduct string `json:"messaging_product"`
		To               string `json:"to"`
		Type             string `json:"type"`
		Interactive      struct {
			Type string `json:"type"`
		} `json:"interactive"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxGraphBody)).Decode(&req); err != nil {
		writeGraphError(w, invalidParam("Invalid JSON body: %v", err))
		return
	}
	if req.MessagingProduct != "whatsapp" || req.Type != "interactive" || req.Interactive.Type != "call_permission_request" {
		writeGraphError(w, invalidParam("The simulator takes only interactive call_permission_request messages"))
		return
	}
	id := "wamid." + strings.TrimPrefix(newCallID(), "wacid.")
	writeJSON(w, http.StatusOK, map[string]any{
		"messaging_product": "whatsapp",
		"contacts":          []map[string]string{{"input": req.To, "wa_id": s.Caller}},
		"messages":          []map[string]string{{"id": id}},
	})
	now := s.now()
	v := s.value()
	v.Contacts = []webhookContact{{Profile: webhookProfile{Name: s.CallerName}, WaID: s.Caller}}
	v.Messages = []webhookMessage{{
		From: s.Caller, ID: "wamid." + strings.TrimPrefix(newCallID(), "wacid."), Timestamp: unixString(now), Type: "interactive",
		Interactive: &webhookInteractive{Type: "call_permission_reply", CallPermissionReply: &webhookPermissionReply{
			Response: "accept", ExpirationTimestamp: now.Add(permissionLifetime).Unix(), ResponseSource: "user_action",
		}},
	}}
	body, _ := json.Marshal(s.wrap("messages", v))
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
		if _, err := s.deliver(st.ctx, body); err != nil {
			s.logger.Warn("permission reply webhook failed", zap.Error(err))
		}
	}()
}

func writeGraphError(w http.ResponseWriter, gerr *graphError) {
	gerr.TraceID = newTraceID()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(gerr.status)
	_ = json.NewEncoder(w).Encode(map[string]*graphError{"error": gerr})
}

func (s *Simulator) serveAnswer(w http.ResponseWriter, r *http.Request) {
	if !requireJSON(w, r) {
		return
	}
	var req struct {
		SDP string `json:"sdp"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxOfferSize)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decode answer: %w", err))
		return
	}
	s.answerResult(w, r.PathValue("id"), s.AnswerCall(r.Context(), r.PathValue("id"), req.SDP), StateAccepted)
}

func (s *Simulator) serveDecline(w http.ResponseWriter, r *http.Request) {
	if !requireJSON(w, r) {
		return
	}
	s.answerResult(w, r.PathValue("id"), s.DeclineCall(r.Context(), r.PathValue("id")), StateRejected)
}

func (s *Simulator) answerResult(w http.ResponseWriter, id string, err error, state string) {
	switch {
	case errors.Is(err, ErrBadOffer):
		writeError(w, http.StatusBadRequest, err)
	case errors.Is(err, ErrUnknownCall):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, ErrCallEnded):
		writeError(w, http.StatusConflict, err)
	case err != nil:
		writeJSON(w, http.StatusBadGateway, map[string]string{"call_id": id, "state": state, "error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"call_id": id, "state": state})
	}
}
