package whatsapp

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMissingSignature is returned by VerifySignature when the
// X-Hub-Signature-256 header is absent or does not start with "sha256=".
// An HTTP handler usually answers it with 401.
var ErrMissingSignature = errors.New("missing webhook signature")

// ErrInvalidSignature is returned by VerifySignature when the signature is
// not valid hex or does not match the body (or when no app secret is
// configured). An HTTP handler usually answers it with 403.
var ErrInvalidSignature = errors.New("invalid webhook signature")

// ErrMalformedWebhook is wrapped by ParseWebhook when a (signed) body is not
// a JSON webhook envelope. An HTTP handler usually answers it with 400.
var ErrMalformedWebhook = errors.New("malformed webhook")

// ErrNotSuccess is returned by the Client when the Graph API answers with a
// 2xx status but the body does not confirm the action: no "success":true for
// call actions, or no call id for Connect.
var ErrNotSuccess = errors.New("graph api did not report success")

// ErrResponseTooLarge is returned by the Client when a 2xx Graph API
// response body exceeds MaxResponseSize.
var ErrResponseTooLarge = errors.New("graph api response too large")

// ErrMissingParameter is returned by the Client, before any request is
// sent, when a required argument or the access token is empty.
var ErrMissingParameter = errors.New("missing required parameter")

// APIError is an error answered by the Graph API: a non-2xx HTTP status, or
// a body carrying an "error" object. It is decoded from
//
//	{"error":{"message":"...","type":"OAuthException","code":138006,"error_subcode":2494010,"fbtrace_id":"..."}}
//
// When the body is not such JSON (for example an HTML 502 page from a
// proxy), StatusCode is set and Message holds a short, truncated and
// sanitized snippet of the body. Use errors.As to get it:
//
//	var apiErr *whatsapp.APIError
//	if errors.As(err, &apiErr) && apiErr.Code == 138006 { ... }
//
// The access token is redacted from Message, and Error never includes it.
type APIError struct {
	// StatusCode is the HTTP status code of the response.
	StatusCode int
	// Message is Graph's error message, or a snippet of a non-JSON body.
	Message string
	// Type is Graph's error type, for example "OAuthException".
	Type string
	// Code is Graph's error code, for example 138006.
	Code int
	// Subcode is Graph's error_subcode, if any.
	Subcode int
	// FBTraceID is Graph's fbtrace_id, useful when reporting to Meta.
	FBTraceID string
}

// Error describes the error in one line, for example
// "graph api error (http 400): Invalid parameter [type=OAuthException code=100 fbtrace_id=Abc]".
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("graph api error")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (http %d)", e.StatusCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	var details []string
	if e.Type != "" {
		details = append(details, "type="+e.Type)
	}
	if e.Code != 0 {
		details = append(details, fmt.Sprintf("code=%d", e.Code))
	}
	if e.Subcode != 0 {
		details = append(details, fmt.Sprintf("subcode=%d", e.Subcode))
	}
	if e.FBTraceID != "" {
		details = append(details, "fbtrace_id="+e.FBTraceID)
	}
	if len(details) > 0 {
		b.WriteString(" [")
		b.WriteString(strings.Join(details, " "))
		b.WriteString("]")
	}
	return b.String()
}

// Graph API error codes of the Calling API that callers act on. Meta
// documents them in its calling troubleshooting reference; codes 138019 to
// 138023 arrive only in terminate webhooks, never from the Client.
const (
	// CodeRateLimited (HTTP 429) is answered when an app fetched call
	// permissions too often.
	CodeRateLimited = 613
	// CodeConcurrentCallLimit means the business number already has the
	// most concurrent calls Meta allows (1,000).
	CodeConcurrentCallLimit = 138002
	// CodeNoPermission means the user has not granted the business
	// permission to call them, or it expired or was revoked.
	CodeNoPermission = 138006
	// CodeCallLimit means the limit of connected business-initiated calls
	// to this user in 24 hours (100) is reached.
	CodeCallLimit = 138012
)

// IsCode reports whether err is, or wraps, an *APIError with Graph error
// code code.
func IsCode(err error, code int) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Code == code
}

// ErrNoPermission is wrapped by Permission.CanCall when the user has not
// granted the business permission to call them (or Meta reports that a
// call cannot be started now): Connect would fail with CodeNoPermission or
// CodeCallLimit.
var ErrNoPermission = errors.New("no call permission from the user")
