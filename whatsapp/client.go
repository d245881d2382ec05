package whatsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Client defaults.
const (
	// DefaultBaseURL is the Graph API root used when Client.BaseURL is empty.
	DefaultBaseURL = "https://graph.facebook.com"
	// DefaultVersion is the Graph API version used when Client.Version is
	// empty.
	DefaultVersion = "v23.0"
	// DefaultTimeout bounds each request when Client.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// MaxResponseSize is the most of a response body the Client reads.
	MaxResponseSize = 64 << 10
)

// Call actions, the "action" of a POST /{phone_number_id}/calls body.
const (
	actionPreAccept = "pre_accept"
	actionAccept    = "accept"
	actionReject    = "reject"
	actionTerminate = "terminate"
	actionConnect   = "connect"
)

// SDP types sent in call action bodies. Meta wants "answer" for pre_accept
// and accept even though its parameter table once said "offer".
const (
	sdpTypeAnswer = "answer"
	sdpTypeOffer  = "offer"
)

// Client calls the Graph API's calling endpoints: the call actions
// (POST {BaseURL}/{Version}/{phone_number_id}/calls), call permissions
// (GET .../call_permissions) and the permission request message
// (POST .../messages).
//
// The zero value is usable once AccessToken is set. A Client is safe for
// concurrent use; do not change its fields after first use (to rotate the
// access token, build a new Client). Errors and logs never contain the
// access token or SDP.
//
// See https://developers.facebook.com/docs/whatsapp/cloud-api/calling/reference.
type Client struct {
	// BaseURL is the Graph API root, without the version.
	// Default: https://graph.facebook.com.
	BaseURL string
	// Version is the Graph API version. Default: v23.0.
	Version string
	// AccessToken is the bearer token (a system user token). It is a
	// secret.
	AccessToken string
	// HTTPClient sends the requests. Default: a client of this package
	// with its own transport, which does not follow redirects.
	HTTPClient *http.Client
	// Timeout bounds each request, including reading the response; a
	// negative value leaves only the caller's context. Default: 10s.
	Timeout time.Duration
	// Logger receives debug logs of each request (never the token or
	// SDP). Default: no logging.
	Logger *zap.Logger
}

// PreAccept sends pre_accept with the SDP answer for a user-initiated call,
// letting media connect before the call is accepted.
func (c *Client) PreAccept(ctx context.Context, phoneNumberID, callID, answerSDP string) error {
	if answerSDP == "" {
		return actionErr(actionPreAccept, callID, fmt.Errorf("%w: answer sdp", ErrMissingParameter))
	}
	body := actionRequest{
		MessagingProduct: "whatsapp",
		CallID:           callID,
		Action:           actionPreAccept,
		Session:          &sessionBody{SDPType: sdpTypeAnswer, SDP: answerSDP},
	}
	_, err := c.do(ctx, actionPreAccept, phoneNumberID, callID, body)
	return err
}

// Accept sends accept with the same SDP answer as PreAccept. A non-empty
// bizOpaqueCallbackData is echoed by Meta in later webhooks of the call.
func (c *Client) Accept(ctx context.Context, phoneNumberID, callID, answerSDP, bizOpaqueCallbackData string) error {
	if answerSDP == "" {
		return actionErr(actionAccept, callID, fmt.Errorf("%w: answer sdp", ErrMissingParameter))
	}
	body := actionRequest{
		MessagingProduct:      "whatsapp",
		CallID:                callID,
		Action:                actionAccept,
		Session:               &sessionBody{SDPType: sdpTypeAnswer, SDP: answerSDP},
		BizOpaqueCallbackData: bizOpaqueCallbackData,
	}
	_, err := c.do(ctx, actionAccept, phoneNumberID, callID, body)
	return err
}

// Reject declines a user-initiated call that was not accepted.
func (c *Client) Reject(ctx context.Context, phoneNumberID, callID string) error {
	body := actionRequest{MessagingProduct: "whatsapp", CallID: callID, Action: actionReject}
	_, err := c.do(ctx, actionReject, phoneNumberID, callID, body)
	return err
}

// Terminate ends an accepted call.
func (c *Client) Terminate(ctx context.Context, phoneNumberID, callID string) error {
	body := actionRequest{MessagingProduct: "whatsapp", CallID: callID, Action: actionTerminate}
	_, err := c.do(ctx, actionTerminate, phoneNumberID, callID, body)
	return err
}

// ConnectRequest is what Connect sends to place a business-initiated
// call. Exactly one of To and Recipient is set.
type ConnectRequest struct {
	// To is the user's WhatsApp id (their phone number without "+").
	To string
	// Recipient is the user's business-scoped user id (BSUID, "US.1349..."),
	// for users identified by a username instead of a shared number.
	Recipient string
	// OfferSDP is our SDP offer. It is sensitive: never logged.
	OfferSDP string
	// BizOpaqueCallbackData, if set, is echoed by Meta in the call's later
	// webhooks (statuses and terminate). Meta takes at most 512 characters.
	BizOpaqueCallbackData string
}

// Connect places a business-initiated call with an SDP offer, and returns
// the new call's ID from Meta's answer
// {"messaging_product":"whatsapp","calls":[{"id":"wacid..."}]}. Progress
// then arrives as status webhooks (RINGING, ACCEPTED, REJECTED) and the
// user's SDP answer as a connect webhook. Without the user's call
// permission Meta refuses with an *APIError of code CodeNoPermission.
func (c *Client) Connect(ctx context.Context, phoneNumberID string, req ConnectRequest) (callID string, err error) {
	switch {
	case req.To == "" && req.Recipient == "":
		return "", actionErr(actionConnect, "", fmt.Errorf("%w: to or recipient", ErrMissingParameter))
	case req.To != "" && req.Recipient != "":
		return "", actionErr(actionConnect, "", errors.New("both to and recipient given: want one"))
	case req.OfferSDP == "":
		return "", actionErr(actionConnect, "", fmt.Errorf("%w: offer sdp", ErrMissingParameter))
	}
	body := actionRequest{
		MessagingProduct:      "whatsapp",
		To:                    req.To,
		Recipient:             req.Recipient,
		Action:                actionConnect,
		Session:               &sessionBody{SDPType: sdpTypeOffer, SDP: req.OfferSDP},
		BizOpaqueCallbackData: req.BizOpaqueCallbackData,
	}
	resp, err := c.do(ctx, actionConnect, phoneNumberID, "", body)
	if err != nil {
		return "", err
	}
	return resp.Calls[0].ID, nil
}

// actionRequest is the JSON body of a call action. Field order is the
// order of Meta's examples.
type actionRequest struct {
	MessagingProduct      string       `json:"messaging_product"`
	CallID                string       `json:"call_id,omitempty"`
	To                    string       `json:"to,omitempty"`
	Recipient             string       `json:"recipient,omitempty"`
	Action                string       `json:"action"`
	Session               *sessionBody `json:"session,omitempty"`
	BizOpaqueCallbackData string       `json:"biz_opaque_callback_data,omitempty"`
}

// sessionBody is the session of a call action body; both fields are always
// sent.
type sessionBody struct {
	SDPType string `json:"sdp_type"`
	SDP     string `json:"sdp"`
}

// actionResponse is the JSON body of a call action response: success for
// call actions, calls for connect, error on failure.
type actionResponse struct {
	Success bool `json:"success"`
	Calls   []struct {
		ID string `json:"id"`
	} `json:"calls"`
	Error *graphError `json:"error"`
}

// graphError is the "error" object of a Graph API response.
type graphError struct {
	Message   string `json:"message"`
	Type      string `json:"type"`
	Code      int    `json:"code"`
	Subcode   int    `json:"error_subcode"`
	FBTraceID string `json:"fbtrace_id"`
}

// do sends one call action and checks its response. callID is "" for
// connect.
func (c *Client) do(ctx context.Context, action, phoneNumberID, callID string, body actionRequest) (*actionResponse, error) {
	resp, status, err := c.post(ctx, action, phoneNumberID, callID, body)
	if err != nil {
		return nil, actionErr(action, callID, err)
	}
	if action == actionConnect {
		if len(resp.Calls) == 0 || resp.Calls[0].ID == "" {
			return nil, actionErr(action, callID, fmt.Errorf("%w: no call id in response (http %d)", ErrNotSuccess, status))
		}
		return resp, nil
	}
	if !resp.Success {
		return nil, actionErr(action, callID, fmt.Errorf("%w (http %d)", ErrNotSuccess, status))
	}
	return resp, nil
}

// post sends body to the calls endpoint and decodes the response. It
// returns the HTTP status for error context.
func (c *Client) post(ctx context.Context, action, phoneNumberID, callID string, body actionRequest) (*actionResponse, int, error) {
	if action != actionConnect && callID == "" {
		return nil, 0, fmt.Errorf("%w: call id", ErrMissingParameter)
	}
	var resp actionResponse
	status, err := c.send(ctx, request{
		op: action, method: http.MethodPost, phoneNumberID: phoneNumberID, edge: "calls", callID: callID, body: body,
	}, &resp)
	if err != nil {
		return nil, status, err
	}
	if resp.Error != nil {
		return nil, status, c.newAPIError(status, resp.Error)
	}
	return &resp, status, nil
}

// request is one Graph API request.
type request struct {
	op            string // for logs: the action or operation name
	method        string
	phoneNumberID string
	edge          string     // "calls", "messages", "call_permissions"
	query         url.Values // may be nil
	callID        string     // for logs; may be ""
	body          any        // JSON-encoded; nil sends no body
}

// send sends req and decodes a 2xx JSON response into out. A non-2xx
// status is an *APIError; a 2xx body that is not JSON wraps ErrNotSuccess.
// It returns the HTTP status for error context.
func (c *Client) send(ctx context.Context, req request, out any) (int, error) {
	if c.AccessToken == "" {
		return 0, fmt.Errorf("%w: access token", ErrMissingParameter)
	}
	endpoint, err := c.url(req.phoneNumberID, req.edge)
	if err != nil {
		return 0, err
	}
	if len(req.query) > 0 {
		endpoint += "?" + req.query.Encode()
	}
	var payload io.Reader
	if req.body != nil {
		b, err := json.Marshal(req.body)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		payload = bytes.NewReader(b)
	}

	if timeout := c.timeout(); timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	httpReq, err := http.NewRequestWithContext(ctx, req.method, endpoint, payload)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	httpReq.Header.Set("Authorization", "Bearer "+c.AccessToken)
	if payload != nil {
		httpReq.Header.Set("Content-Type", "application/json")
	}
	httpReq.Header.Set("Accept", "application/json")

	start := time.Now()
	httpResp, err := c.httpClient().Do(httpReq)
	if err != nil {
		// The URL can hold a user's number (call_permissions?user_wa_id=):
		// keep it out of the error.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = fmt.Errorf("%s %s: %w", uerr.Op, req.edge, uerr.Err)
		}
		c.logRequest(req.op, req.phoneNumberID, req.callID, 0, start, err)
		return 0, err
	}
	defer httpResp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(httpResp.Body, MaxResponseSize+1))
	c.logRequest(req.op, req.phoneNumberID, req.callID, httpResp.StatusCode, start, err)
	if err != nil {
		return httpResp.StatusCode, fmt.Errorf("read response (http %d): %w", httpResp.StatusCode, err)
	}
	tooLarge := len(raw) > MaxResponseSize
	if tooLarge {
		raw = raw[:MaxResponseSize]
	}

	status := httpResp.StatusCode
	if status < 200 || status > 299 {
		return status, c.apiError(status, raw)
	}
	if tooLarge {
		return status, fmt.Errorf("%w: more than %d bytes (http %d)", ErrResponseTooLarge, MaxResponseSize, status)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return status, fmt.Errorf("%w: unexpected body (http %d): %q", ErrNotSuccess, status, snippet(raw, c.AccessToken))
	}
	return status, nil
}

// apiError builds the error for a non-2xx response body.
func (c *Client) apiError(status int, raw []byte) *APIError {
	var resp struct {
		Error *graphError `json:"error"`
	}
	if json.Unmarshal(raw, &resp) == nil && resp.Error != nil {
		return c.newAPIError(status, resp.Error)
	}
	return &APIError{StatusCode: status, Message: snippet(raw, c.AccessToken)}
}

// newAPIError builds an APIError from Graph's error object, sanitizing its
// strings.
func (c *Client) newAPIError(status int, g *graphError) *APIError {
	return &APIError{
		StatusCode: status,
		Message:    clean(g.Message, c.AccessToken, maxMessageLen),
		Type:       clean(g.Type, c.AccessToken, maxFieldLen),
		Code:       g.Code,
		Subcode:    g.Subcode,
		FBTraceID:  clean(g.FBTraceID, c.AccessToken, maxFieldLen),
	}
}

// url returns the URL of phoneNumberID's edge ("calls", "messages",
// "call_permissions"), escaping each path segment.
func (c *Client) url(phoneNumberID, edge string) (string, error) {
	if phoneNumberID == "" {
		return "", fmt.Errorf("%w: phone number id", ErrMissingParameter)
	}
	version := c.Version
	if version == "" {
		version = DefaultVersion
	}
	for _, seg := range [...]string{phoneNumberID, version} {
		if seg == "." || seg == ".." {
			return "", fmt.Errorf("invalid path segment %q", seg)
		}
	}
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("invalid graph base url: want http(s)://host[/path]")
	}
	return strings.TrimRight(base, "/") + "/" + url.PathEscape(version) + "/" + url.PathEscape(phoneNumberID) + "/" + edge, nil
}

// timeout returns the per-request timeout, or 0 for none.
func (c *Client) timeout() time.Duration {
	switch {
	case c.Timeout < 0:
		return 0
	case c.Timeout == 0:
		return DefaultTimeout
	default:
		return c.Timeout
	}
}

// httpClient returns HTTPClient or the package's default client.
func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return defaultHTTPClient()
}

// defaultHTTPClient is shared by Clients without an HTTPClient. It has its
// own transport, so changes to http.DefaultClient do not affect it, and it
// does not follow redirects: a redirected call action is an error.
var defaultHTTPClient = sync.OnceValue(func() *http.Client {
	var transport *http.Transport
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		transport = t.Clone()
	} else {
		transport = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
})

// logRequest logs one request at debug level.
func (c *Client) logRequest(action, phoneNumberID, callID string, status int, start time.Time, err error) {
	logger := c.Logger
	if logger == nil {
		return
	}
	if ce := logger.Check(zapcore.DebugLevel, "graph api request"); ce != nil {
		ce.Write(
			zap.String("action", action),
			zap.String("phone_number_id", phoneNumberID),
			zap.String("call_id", callID),
			zap.Int("status", status),
			zap.Duration("duration", time.Since(start)),
			zap.Error(err),
		)
	}
}

// actionErr wraps err with the action and, when known, the call id.
func actionErr(action, callID string, err error) error {
	if callID == "" {
		return fmt.Errorf("%s call: %w", action, err)
	}
	return fmt.Errorf("%s call %s: %w", action, callID, err)
}
