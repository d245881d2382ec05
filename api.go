package whatsappcalls

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

func init() {
	caddy.RegisterModule(API{})
}

// Bounds of the control API.
const (
	apiMaxBody = 64 << 10
	// apiPlaceBudget bounds placing a call: the permission check, the
	// offer and connect.
	apiPlaceBudget = 20 * time.Second
	// apiGraphBudget bounds the permission routes' Graph requests.
	apiGraphBudget = 10 * time.Second
)

// API is the control API of the whatsapp_calls handlers of this process:
// it lists live calls, hangs one up, places a business-initiated call,
// checks a user's call permission and sends the permission request. With
// twilio_auth_token set it also serves the Twilio REST API's call update,
// so that a bot on the twilio dialect (pipecat's TwilioFrameSerializer with
// auto_hang_up) hangs up through it.
//
// Routes, relative to where the handler is mounted (use handle_path so
// that the prefix is stripped):
//
//	GET    /calls[?numbers=true]       live calls
//	POST   /calls                      place a call: {"to":"<wa_id>"} or {"recipient":"<bsuid>"}
//	DELETE /calls/{call_id}            hang up a call
//	GET    /permissions/{wa_id}        the user's call permission
//	POST   /permission_requests        send the permission request: {"to":"<wa_id>","body":"<text>"}
//	POST   /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json   Status=completed (Twilio)
//
// Every route but the Twilio one needs Authorization: Bearer <token>; the
// Twilio route needs HTTP basic auth with the call's twilio-dialect
// AccountSid and twilio_auth_token. Anything else is refused with 401.
type API struct {
	// The bearer token of the control API. Required. Use a placeholder
	// such as {env.WHATSAPP_CALLS_API_TOKEN}.
	Token string `json:"token,omitempty"`

	// The auth token of the Twilio-compatible hang-up route (HTTP basic
	// auth, AccountSid:token). Default: the route is off (404).
	TwilioAuthToken string `json:"twilio_auth_token,omitempty"`

	token       string
	twilioToken string
	mux         *http.ServeMux
	logger      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (API) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.whatsapp_calls_api",
		New: func() caddy.Module { return new(API) },
	}
}

// Provision resolves the tokens and builds the routes.
func (a *API) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	var err error
	if a.token, err = resolveSecret("token", a.Token); err != nil {
		return err
	}
	if a.TwilioAuthToken != "" {
		if a.twilioToken, err = resolveSecret("twilio_auth_token", a.TwilioAuthToken); err != nil {
			return err
		}
	}
	a.routes()
	return nil
}

// routes builds the route table.
func (a *API) routes() {
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("GET /calls", a.listCalls)
	a.mux.HandleFunc("POST /calls", a.placeCall)
	a.mux.HandleFunc("DELETE /calls/{id}", a.hangupCall)
	a.mux.HandleFunc("GET /permissions/{user}", a.getPermission)
	a.mux.HandleFunc("POST /permission_requests", a.sendPermissionRequest)
	a.mux.HandleFunc("POST /2010-04-01/Accounts/{account}/Calls/{call}", a.twilioUpdateCall)
}

// Validate checks that the token is set.
func (a *API) Validate() error {
	if a.Token == "" {
		return errors.New("token is required")
	}
	return nil
}

// ServeHTTP authenticates the request and serves the route. It is a
// terminal handler: it never calls next.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if strings.HasPrefix(r.URL.Path, twilioPathPrefix) {
		if a.twilioToken == "" {
			writeTwilioError(w, http.StatusNotFound, twilioNotFound, "The requested resource was not found")
			return nil
		}
		// The Twilio route checks its own basic auth: the AccountSid is
		// part of the path.
	} else if !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="whatsapp_calls_api"`)
		writeAPIError(w, http.StatusUnauthorized, "unauthorized", "a valid Authorization: Bearer token is required", nil)
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, apiMaxBody)
	a.mux.ServeHTTP(w, r)
	return nil
}

// authorized checks the bearer token in constant time.
func (a *API) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(a.token)) == 1
}

func (a *API) listCalls(w http.ResponseWriter, r *http.Request) {
	numbers := r.URL.Query().Get("numbers") == "true"
	ctx, cancel := contextWithTimeout(r, apiClusterBudget)
	defer cancel()
	calls := []callView{}
	complete := true
	for _, reg := range directory.registries() {
		all, ok := reg.withCluster(ctx, reg.list(numbers))
		calls = append(calls, all...)
		complete = complete && ok
	}
	body := map[string]any{"calls": calls}
	if !complete {
		// Redis could not be asked: the list holds this node's calls only.
		body["cluster_unavailable"] = true
	}
	writeJSON(w, http.StatusOK, body)
}

func (a *API) placeCall(w http.ResponseWriter, r *http.Request) {
	var req placeRequest
	if !decodeBody(w, r, &req) {
		return
	}
	reg, cfg, err := directory.pick(req.PhoneNumberID)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	ctx, cancel := contextWithTimeout(r, apiPlaceBudget)
	defer cancel()
	c, err := reg.place(ctx, cfg, req)
	if err != nil {
		var pe *placeError
		if errors.As(err, &pe) {
			writeAPIError(w, pe.status, pe.code, pe.Error(), pe.meta)
			return
		}
		writeAPIError(w, http.StatusInternalServerError, "internal", err.Error(), nil)
		return
	}
	v := callView{
		CallID: c.ev.Call.ID, Direction: c.direction, State: c.stateName(), Started: c.received.UTC(),
		PhoneNumberID: c.ev.PhoneNumberID, Bot: c.botURL, TwilioCallSID: bot.TwilioCallSID(c.ev.Call.ID),
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *API) hangupCall(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, reg := range directory.registries() {
		if v, ok := reg.hangupCall(id, errHungUpByAPI); ok {
			a.logger.Info("call hung up through the control api", zap.String("call_id", id))
			writeJSON(w, http.StatusOK, v)
			return
		}
	}
	ctx, cancel := contextWithTimeout(r, apiClusterBudget)
	defer cancel()
	if owner := clusterHangup(ctx, id, hangupAPI); owner != "" {
		a.logger.Info("call hung up through the control api on another node",
			zap.String("call_id", id), zap.String("node", owner))
		writeJSON(w, http.StatusOK, callView{CallID: id, State: "ending", TwilioCallSID: bot.TwilioCallSID(id), Node: owner})
		return
	}
	writeAPIError(w, http.StatusNotFound, "not_found", "no live call with this id", nil)
}

// apiClusterBudget bounds the Redis work of one API request.
const apiClusterBudget = 2 * time.Second

func (a *API) getPermission(w http.ResponseWriter, r *http.Request) {
	phone := r.URL.Query().Get("phone_number_id")
	_, cfg, err := directory.pick(phone)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	if phone == "" {
		if phone, err = onlyNumber(cfg); err != nil {
			writeAPIError(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
			return
		}
	}
	ctx, cancel := contextWithTimeout(r, apiGraphBudget)
	defer cancel()
	perm, err := cfg.graph.CallPermission(ctx, phone, r.PathValue("user"))
	if err != nil {
		pe := graphPlaceError(err)
		writeAPIError(w, pe.status, pe.code, err.Error(), pe.meta)
		return
	}
	canCall := perm.CanCall()
	body := map[string]any{
		"status":   perm.Status,
		"can_call": canCall == nil,
		"actions":  perm.Actions,
	}
	if !perm.Expires.IsZero() {
		body["expires"] = perm.Expires.Time()
	}
	if canCall != nil {
		body["reason"] = canCall.Error()
	}
	writeJSON(w, http.StatusOK, body)
}

// permissionRequestBody is the body of POST /permission_requests.
type permissionRequestBody struct {
	PhoneNumberID string `json:"phone_number_id,omitempty"`
	To            string `json:"to,omitempty"`
	Recipient     string `json:"recipient,omitempty"`
	Body          string `json:"body"`
}

func (a *API) sendPermissionRequest(w http.ResponseWriter, r *http.Request) {
	var req permissionRequestBody
	if !decodeBody(w, r, &req) {
		return
	}
	_, cfg, err := directory.pick(req.PhoneNumberID)
	if err == nil && req.PhoneNumberID == "" {
		req.PhoneNumberID, err = onlyNumber(cfg)
	}
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	ctx, cancel := contextWithTimeout(r, apiGraphBudget)
	defer cancel()
	if req.To != "" {
		// Meta allows 1 request per 24 h and 2 per 7 days to each user, and
		// says in call_permissions whether one may be sent now: refuse
		// early, with the limit, rather than send a request Meta refuses.
		// If the check itself fails, the request goes out and Meta decides.
		if perm, err := cfg.graph.CallPermission(ctx, req.PhoneNumberID, req.To); err == nil {
			if act, ok := perm.Action(whatsapp.ActionSendPermissionRequest); ok && !act.CanPerform {
				writeAPIError(w, http.StatusTooManyRequests, "limit_reached",
					"meta allows no call permission request to this user now"+limitsText(act.Limits), nil)
				return
			}
		}
	}
	id, err := cfg.graph.SendPermissionRequest(ctx, req.PhoneNumberID, whatsapp.PermissionRequest{
		To: req.To, Recipient: req.Recipient, Body: req.Body,
	})
	if err != nil {
		if errors.Is(err, whatsapp.ErrMissingParameter) {
			writeAPIError(w, http.StatusBadRequest, "bad_request", err.Error(), nil)
			return
		}
		pe := graphPlaceError(err)
		writeAPIError(w, pe.status, pe.code, err.Error(), pe.meta)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message_id": id})
}

// limitsText describes Meta's limits on an action, such as
// " (1 of 1 per PT24H; 2 of 2 per P7D)".
func limitsText(limits []whatsapp.PermissionLimit) string {
	if len(limits) == 0 {
		return ""
	}
	parts := make([]string, 0, len(limits))
	for _, l := range limits {
		parts = append(parts, fmt.Sprintf("%d of %d per %s", l.CurrentUsage, l.MaxAllowed, l.TimePeriod))
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// contextWithTimeout bounds an API request's work. A client that goes
// away must not cut a placement short: connect may already have reached
// Meta, and the call must then be followed.
func contextWithTimeout(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), d)
}

// onlyNumber returns the handler's only phone number id.
func onlyNumber(cfg callConfig) (string, error) {
	if len(cfg.phoneNumbers) != 1 {
		return "", fmt.Errorf("phone_number_id is required (the handler serves %d numbers)", len(cfg.phoneNumbers))
	}
	for id := range cfg.phoneNumbers {
		return id, nil
	}
	return "", nil
}

// apiError is the JSON body of a control API error.
type apiError struct {
	Error struct {
		Code    string     `json:"code"`
		Message string     `json:"message"`
		Meta    *metaError `json:"meta,omitempty"`
	} `json:"error"`
}

// metaError is the Graph API error behind a control API error.
type metaError struct {
	Code      int    `json:"code"`
	Subcode   int    `json:"error_subcode,omitempty"`
	Message   string `json:"message,omitempty"`
	FBTraceID string `json:"fbtrace_id,omitempty"`
}

func writeAPIError(w http.ResponseWriter, status int, code, msg string, meta *whatsapp.APIError) {
	var body apiError
	body.Error.Code, body.Error.Message = code, msg
	if meta != nil {
		body.Error.Meta = &metaError{Code: meta.Code, Subcode: meta.Subcode, Message: meta.Message, FBTraceID: meta.FBTraceID}
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeBody decodes a JSON request body into v, answering 400 itself
// when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeAPIError(w, http.StatusUnsupportedMediaType, "bad_request", "the body must be application/json", nil)
		return false
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error(), nil)
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeAPIError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: trailing data", nil)
		return false
	}
	return true
}

// Interface guards
var (
	_ caddy.Provisioner           = (*API)(nil)
	_ caddy.Validator             = (*API)(nil)
	_ caddyhttp.MiddlewareHandler = (*API)(nil)
)
