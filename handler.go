package whatsappcalls

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// signatureHeader carries the HMAC-SHA256 of the raw webhook body.
const signatureHeader = "X-Hub-Signature-256"

// ServeHTTP answers Meta's webhook verification (GET) and call webhooks
// (POST). It is a terminal handler: it never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	var err error
	switch r.Method {
	case http.MethodGet:
		err = h.serveVerification(w, r)
	case http.MethodPost:
		err = h.serveWebhook(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		err = h.reject(r, rejectMethod, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed", sanitizeMethod(r.Method)))
	}
	status := http.StatusOK
	var herr caddyhttp.HandlerError
	if errors.As(err, &herr) {
		status = herr.StatusCode
	}
	h.metrics.webhook(r.Method, status)
	return err
}

// serveVerification echoes hub.challenge when hub.mode is subscribe and
// hub.verify_token matches.
func (h *Handler) serveVerification(w http.ResponseWriter, r *http.Request) error {
	challenge, ok := whatsapp.VerifyChallenge(r.URL.Query(), h.verifyToken)
	if !ok {
		return h.reject(r, rejectVerifyToken, http.StatusForbidden, errors.New("webhook verification failed: wrong mode or verify token"))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(challenge)))
	w.WriteHeader(http.StatusOK)
	_, err := io.WriteString(w, challenge)
	return err
}

// serveWebhook checks the signature over the raw body before anything else,
// then dispatches every call event of the delivery and answers 200 at once.
// No Graph call or WebRTC work happens on the request path.
func (h *Handler) serveWebhook(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.MaxBodySize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return h.reject(r, rejectTooLarge, http.StatusRequestEntityTooLarge,
				fmt.Errorf("webhook body over max_body_size (%d bytes)", h.MaxBodySize))
		}
		return h.reject(r, rejectReadError, http.StatusBadRequest, fmt.Errorf("read webhook body: %w", err))
	}

	if err := whatsapp.VerifySignature(h.appSecret, body, r.Header.Get(signatureHeader)); err != nil {
		if errors.Is(err, whatsapp.ErrMissingSignature) {
			return h.reject(r, rejectMissingSignature, http.StatusUnauthorized, err)
		}
		return h.reject(r, rejectBadSignature, http.StatusForbidden, err)
	}

	hook, err := whatsapp.ParseWebhook(body)
	if err != nil {
		return h.reject(r, rejectMalformed, http.StatusBadRequest, err)
	}

	rt := h.holds.running.Load()
	if rt == nil && h.app.waitStarted(r.Context().Done()) {
		rt = h.holds.running.Load()
	}
	if rt == nil {
		// Between the HTTP server's start and the app's: Meta retries.
		return h.reject(r, rejectNotStarted, http.StatusServiceUnavailable, errors.New("whatsapp_calls is not started"))
	}
	for _, ev := range hook.CallEvents() {
		h.dispatch(rt, ev)
	}
	// Statuses report the progress of business-initiated calls: those this
	// handler placed follow them; others are left alone.
	for _, st := range hook.CallStatuses() {
		if c := h.webhooks.Check(zapcore.DebugLevel, "call status"); c != nil {
			c.Write(zap.String("call_id", st.ID), zap.String("status", st.Status))
		}
		rt.calls.status(st)
	}
	for _, pr := range hook.PermissionReplies() {
		h.permissionReply(rt, pr)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// reject logs a rejected request (rate-limited, never its body) and returns
// the error that answers it with status.
func (h *Handler) reject(r *http.Request, reason string, status int, err error) error {
	h.rejects.log(r, reason, status)
	return caddyhttp.Error(status, err)
}

// dispatch hands one call event to the registry. Calls to phone numbers
// this handler does not serve are acknowledged and left alone.
func (h *Handler) dispatch(rt *running, ev whatsapp.CallEvent) {
	if h.phoneNumbers != nil {
		if _, ok := h.phoneNumbers[ev.PhoneNumberID]; !ok {
			if c := h.webhooks.Check(zapcore.DebugLevel, "call for another phone number ignored"); c != nil {
				c.Write(zap.String("call_id", ev.Call.ID), zap.String("phone_number_id", ev.PhoneNumberID))
			}
			return
		}
	}
	switch {
	case ev.Call.IsConnect() && ev.Call.IsAnswer():
		// The answer to a call the business placed: the call we placed
		// takes it; one that another app on the account placed is never
		// ours to pre-accept or reject, and is left alone.
		if c := h.webhooks.Check(zapcore.DebugLevel, "connect with an sdp answer"); c != nil {
			c.Write(zap.String("call_id", ev.Call.ID), zap.String("direction", ev.Call.Direction))
		}
		rt.calls.answer(ev)
	case ev.Call.IsConnect():
		rt.calls.connect(ev, rt.cfg)
	case ev.Call.IsTerminate():
		rt.calls.terminate(ev, rt.cfg)
	default:
		if c := h.webhooks.Check(zapcore.DebugLevel, "call event ignored"); c != nil {
			c.Write(zap.String("call_id", ev.Call.ID), zap.String("event", ev.Call.Event))
		}
	}
}

// permissionReply logs a user's answer to a call permission request and
// passes it to the status callback, so that a business can call back once
// the user accepts. The user's number is logged at debug level only.
func (h *Handler) permissionReply(rt *running, pr whatsapp.PermissionReply) {
	if h.phoneNumbers != nil {
		if _, ok := h.phoneNumbers[pr.PhoneNumberID]; !ok {
			return
		}
	}
	h.webhooks.Info("call permission reply",
		zap.String("phone_number_id", pr.PhoneNumberID),
		zap.String("response", pr.Reply.Response),
		zap.Bool("is_permanent", pr.Reply.IsPermanent),
		zap.String("response_source", pr.Reply.ResponseSource))
	if c := h.webhooks.Check(zapcore.DebugLevel, "call permission reply from"); c != nil {
		c.Write(zap.String("from", pr.From), zap.String("from_user_id", pr.FromUserID))
	}
	reply := &permissionReply{
		Response:       pr.Reply.Response,
		IsPermanent:    pr.Reply.IsPermanent,
		ResponseSource: pr.Reply.ResponseSource,
		MessageID:      pr.MessageID,
		FromUserID:     pr.FromUserID,
	}
	if !pr.Reply.Expires.IsZero() {
		t := pr.Reply.Expires.Time()
		reply.Expires = &t
	}
	ev := statusEvent{Event: eventPermissionReply, PhoneNumberID: pr.PhoneNumberID, From: pr.From, Permission: reply}
	if !pr.Timestamp.IsZero() {
		ev.Timestamp = pr.Timestamp.Time()
	}
	rt.cfg.notify.send(ev)
}

// Interface guards
var _ caddyhttp.MiddlewareHandler = (*Handler)(nil)
