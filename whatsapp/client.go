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

// Client calls the Graph API's call actions:
// POST {BaseURL}/{Version}/{phone_number_id}/calls.
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

// Connect places a business-initiated call to the WhatsApp user to (a wa_id)
// with an SDP offer, and returns the new call's ID. Progress then arrives
// as status webhooks, and the answer in a connect webhook.
func (c *Client) Connect(ctx context.Context, phoneNumberID, to, offerSDP string) (callID string, err error) {
	switch {
	case to == "":
		return "", actionErr(actionConnect, "", fmt.Errorf("%w: to", ErrMissingParameter))
	case offerSDP == "":
		return "", actionErr(actionConnect, "", fmt.Errorf("%w: offer sdp", ErrMissingParameter))
	}
	body := actionRequest{
		MessagingProduct: "whatsapp",
		To:               to,
		Action:           actionConnect,
		Session:          &sessionBody{SDPType: sdpTypeOffer, SDP: offerSDP},
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
	if c.AccessToken == "" {
		return nil, 0, fmt.Errorf("%w: access token", ErrMissingParameter)
	}
	if action != actionConnect && callID == "" {
		return nil, 0, fmt.Errorf("%w: call id", ErrMissingParameter)
	}
	endpoint, err := c.endpoint(phoneNumberID)
	if err != nil {
		return nil, 0, err
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, 0, fmt.Errorf("encode request: %w", err)
	}

	if timeout := c.timeout(); timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return nil, 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	start := time.Now()
	httpResp, err := c.httpClient().Do(req)
	if err != nil {
		c.logRequest(action, phoneNumberID, callID, 0, start, err)
		return nil, 0, err
	}
	defer httpResp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(httpResp.Body, MaxResponseSize+1))
	c.logRequest(action, phoneNumberID, callID, httpResp.StatusCode, start, err)
	if err != nil {
		return nil, httpResp.StatusCode, fmt.Errorf("read response (http %d): %w", httpResp.StatusCode, err)
	}
	tooLarge := len(raw) > MaxResponseSize
	if tooLarge {
		raw = raw[:MaxResponseSize]
	}

	status := httpResp.StatusCode
	if status < 200 || status > 299 {
		return nil, status, c.apiError(status, raw)
	}
	if tooLarge {
		return nil, status, fmt.Errorf("%w: more than %d bytes (http %d)", ErrResponseTooLarge, MaxResponseSize, status)
	}
	var resp actionResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, status, fmt.Errorf("%w: unexpected body (http %d): %q", ErrNotSuccess, status, snippet(raw, c.AccessToken))
	}
	if resp.Error != nil {
		return nil, status, c.newAPIError(status, resp.Error)
	}
	return &resp, status, nil
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

// endpoint returns the calls URL of phoneNumberID, escaping each path
// segment.
func (c *Client) endpoint(phoneNumberID string) (string, error) {
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
	return strings.TrimRight(base, "/") + "/" + url.PathEscape(version) + "/" + url.PathEscape(phoneNumberID) + "/calls", nil
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
