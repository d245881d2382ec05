package whatsapp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Call events, the value of Call.Event.
const (
	// EventConnect announces a new call; a user-initiated one carries the
	// caller's SDP offer in Call.Session.
	EventConnect = "connect"
	// EventTerminate announces that a call ended, whoever ended it.
	EventTerminate = "terminate"
)

// Call directions, the value of Call.Direction.
const (
	// DirectionUserInitiated is a call from a WhatsApp user to the business.
	DirectionUserInitiated = "USER_INITIATED"
	// DirectionBusinessInitiated is a call the business placed with
	// Client.Connect.
	DirectionBusinessInitiated = "BUSINESS_INITIATED"
)

// Webhook is one delivery to the callback URL. Meta batches changes: a
// delivery may hold several entries, each with several changes, each with
// several calls. Unknown fields are ignored everywhere.
//
// See https://developers.facebook.com/docs/whatsapp/cloud-api/calling/reference#call-webhooks.
type Webhook struct {
	// Object is "whatsapp_business_account" for WhatsApp deliveries.
	Object string `json:"object,omitempty"`
	// Entry holds one item per WhatsApp Business Account.
	Entry []Entry `json:"entry,omitempty"`
}

// Entry groups the changes of one WhatsApp Business Account.
type Entry struct {
	// ID is the WhatsApp Business Account ID.
	ID string `json:"id,omitempty"`
	// Changes are the changes delivered for this account.
	Changes []Change `json:"changes,omitempty"`
}

// Change is one change notification; Field names its kind ("calls",
// "messages", ...).
type Change struct {
	// Field is the subscribed webhook field, "calls" for call events.
	Field string `json:"field,omitempty"`
	// Value is the payload of the change.
	Value Value `json:"value,omitzero"`
}

// Value is the payload of a change. Only the parts used for calling are
// modelled; messages and other fields are ignored.
type Value struct {
	// MessagingProduct is "whatsapp".
	MessagingProduct string `json:"messaging_product,omitempty"`
	// Metadata identifies the business phone number the change is for.
	Metadata Metadata `json:"metadata,omitzero"`
	// Contacts describes the WhatsApp users involved; often absent.
	Contacts []Contact `json:"contacts,omitempty"`
	// Calls are the call events of this change.
	Calls []Call `json:"calls,omitempty"`
	// Statuses report the progress of business-initiated calls (and, in
	// "messages" changes, of messages).
	Statuses []Status `json:"statuses,omitempty"`
	// Messages are the messages of a "messages" change; only the user's
	// reply to a call permission request is modelled (see Message).
	Messages []Message `json:"messages,omitempty"`
	// Errors are errors reported beside the calls, for example
	// {"code":138021,"title":"No media for a long time."} in a terminate.
	Errors []ErrorInfo `json:"errors,omitempty"`
}

// Metadata identifies the business phone number of a change.
type Metadata struct {
	// DisplayPhoneNumber is the business number as displayed, e.g. "15550001111".
	DisplayPhoneNumber string `json:"display_phone_number,omitempty"`
	// PhoneNumberID is the Graph ID of the business number, used in Client calls.
	PhoneNumberID string `json:"phone_number_id,omitempty"`
}

// Contact describes a WhatsApp user. Since 2026 a user who has a username
// may come without WaID, identified by UserID instead.
type Contact struct {
	// Profile holds the user's profile.
	Profile Profile `json:"profile,omitzero"`
	// WaID is the user's WhatsApp ID (their number without "+"), if shared.
	WaID string `json:"wa_id,omitempty"`
	// UserID is the user's business-scoped user id (BSUID, "US.1349..."),
	// stable for this business.
	UserID string `json:"user_id,omitempty"`
	// ParentUserID is the business-scoped user id at the level of the
	// business portfolio, when the business has one.
	ParentUserID string `json:"parent_user_id,omitempty"`
}

// Profile is a WhatsApp user's profile.
type Profile struct {
	// Name is the user's profile name.
	Name string `json:"name,omitempty"`
	// Username is the user's WhatsApp username, if they have one.
	Username string `json:"username,omitempty"`
}

// Call is one call event.
type Call struct {
	// ID is the WhatsApp call ID ("wacid....").
	ID string `json:"id,omitempty"`
	// From is the calling party's number. Since 2026 it may be absent
	// when the caller has a username; FromUserID is then set.
	From string `json:"from,omitempty"`
	// FromUserID is the calling party's business-scoped user id (BSUID).
	FromUserID string `json:"from_user_id,omitempty"`
	// FromParentUserID is the calling party's portfolio-level user id.
	FromParentUserID string `json:"from_parent_user_id,omitempty"`
	// To is the called party's number.
	To string `json:"to,omitempty"`
	// ToUserID is the called party's business-scoped user id, in
	// business-initiated calls to a user without a shared number.
	ToUserID string `json:"to_user_id,omitempty"`
	// Event is EventConnect or EventTerminate (compare with IsConnect or
	// IsTerminate, which ignore case).
	Event string `json:"event,omitempty"`
	// Direction is DirectionUserInitiated or DirectionBusinessInitiated.
	Direction string `json:"direction,omitempty"`
	// Status is the outcome of a terminated call, as sent: "COMPLETED",
	// "FAILED", "REJECTED", in varying case. A list of strings is joined
	// with ",".
	Status string `json:"status,omitempty"`
	// Timestamp is when the event happened.
	Timestamp Time `json:"timestamp,omitempty"`
	// StartTime is when a terminated call was connected, if it was.
	StartTime Time `json:"start_time,omitempty"`
	// EndTime is when a terminated call ended.
	EndTime Time `json:"end_time,omitempty"`
	// Duration is how long a terminated call was connected.
	Duration Seconds `json:"duration,omitempty"`
	// Session carries the SDP of a connect event: the caller's offer in a
	// user-initiated call, the user's answer in a business-initiated one.
	Session *Session `json:"session,omitempty"`
	// Connection carries the SDP in older connect payloads
	// (connection.webrtc.sdp), which held the answer to a
	// business-initiated call.
	Connection *Connection `json:"connection,omitempty"`
	// DeeplinkPayload is the payload of the call deep link the user
	// tapped, if any.
	DeeplinkPayload string `json:"deeplink_payload,omitempty"`
	// CTAPayload is the payload of the call-to-action button the user
	// tapped, if any.
	CTAPayload string `json:"cta_payload,omitempty"`
	// Errors are errors reported inside the call object.
	Errors []ErrorInfo `json:"errors,omitempty"`
	// BizOpaqueCallbackData echoes what the business passed to Accept or
	// Connect.
	BizOpaqueCallbackData string `json:"biz_opaque_callback_data,omitempty"`
}

// UnmarshalJSON decodes a call, accepting a status given as a string, a
// list of strings or a number.
func (c *Call) UnmarshalJSON(b []byte) error {
	type plain Call // plain has no methods, so this does not recurse.
	aux := struct {
		*plain
		Status lenientString `json:"status"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	c.Status = string(aux.Status)
	return nil
}

// IsConnect reports whether the event is EventConnect, ignoring case.
func (c *Call) IsConnect() bool { return strings.EqualFold(c.Event, EventConnect) }

// IsTerminate reports whether the event is EventTerminate, ignoring case.
func (c *Call) IsTerminate() bool { return strings.EqualFold(c.Event, EventTerminate) }

// IsAnswer reports whether a connect event carries the answer to a call the
// business placed, rather than a caller's offer: its direction is
// BUSINESS_INITIATED, its session's sdp_type is "answer", or it has only
// the older connection.webrtc.sdp (ignoring case). Such a connect must
// never be pre-accepted or rejected.
func (c *Call) IsAnswer() bool {
	switch {
	case strings.EqualFold(c.Direction, DirectionBusinessInitiated):
		return true
	case c.Session != nil && strings.EqualFold(c.Session.SDPType, sdpTypeAnswer):
		return true
	case c.Session == nil && c.Connection != nil && c.Connection.WebRTC != nil:
		return true
	}
	return false
}

// Connection is the connection object of older connect payloads.
type Connection struct {
	// WebRTC holds the SDP.
	WebRTC *WebRTC `json:"webrtc,omitempty"`
}

// WebRTC is the webrtc object of a Connection.
type WebRTC struct {
	// SDP is the session description. It is sensitive: do not log it.
	SDP string `json:"sdp,omitempty"`
}

// Session is an SDP carried by a call event or sent with a call action.
type Session struct {
	// SDPType is "offer" in connect webhooks.
	SDPType string `json:"sdp_type,omitempty"`
	// SDP is the session description. It is sensitive (it holds ICE
	// credentials and addresses): do not log it.
	SDP string `json:"sdp,omitempty"`
}

// ErrorInfo is an error reported in a webhook. Every field is optional.
type ErrorInfo struct {
	// Code is Meta's error code, for example 138021.
	Code int `json:"code,omitempty"`
	// Title is a short description.
	Title string `json:"title,omitempty"`
	// Message is a longer description.
	Message string `json:"message,omitempty"`
	// Href links to Meta's documentation of the error.
	Href string `json:"href,omitempty"`
	// ErrorData holds extra details, usually {"details":"..."}.
	ErrorData json.RawMessage `json:"error_data,omitempty"`
}

// UnmarshalJSON decodes an error, accepting a code given as a number or a
// numeric string.
func (e *ErrorInfo) UnmarshalJSON(b []byte) error {
	type plain ErrorInfo // plain has no methods, so this does not recurse.
	aux := struct {
		*plain
		Code lenientInt `json:"code"`
	}{plain: (*plain)(e)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	e.Code = int(aux.Code)
	return nil
}

// Text returns the most descriptive text of the error: Message, else Title,
// else error_data.details, else "".
func (e ErrorInfo) Text() string {
	if e.Message != "" {
		return e.Message
	}
	if e.Title != "" {
		return e.Title
	}
	if len(e.ErrorData) > 0 {
		var data struct {
			Details string `json:"details"`
		}
		if json.Unmarshal(e.ErrorData, &data) == nil {
			return data.Details
		}
	}
	return ""
}

// Status reports the progress of a business-initiated call
// ({"id":"wacid...","type":"call","status":"RINGING",...}) or, in
// "messages" changes, of a message.
type Status struct {
	// ID is the call (or message) ID.
	ID string `json:"id,omitempty"`
	// Type is "call" for call statuses.
	Type string `json:"type,omitempty"`
	// Status is "RINGING", "ACCEPTED", "REJECTED", ..., as sent.
	Status string `json:"status,omitempty"`
	// RecipientID is the WhatsApp ID of the called user.
	RecipientID string `json:"recipient_id,omitempty"`
	// RecipientUserID is the called user's business-scoped user id, for
	// users without a shared number.
	RecipientUserID string `json:"recipient_user_id,omitempty"`
	// Timestamp is when the status changed.
	Timestamp Time `json:"timestamp,omitempty"`
	// Errors are errors reported with the status.
	Errors []ErrorInfo `json:"errors,omitempty"`
	// BizOpaqueCallbackData echoes what the business passed to Connect.
	BizOpaqueCallbackData string `json:"biz_opaque_callback_data,omitempty"`
}

// UnmarshalJSON decodes a status, accepting a status value given as a
// string, a list of strings or a number.
func (s *Status) UnmarshalJSON(b []byte) error {
	type plain Status // plain has no methods, so this does not recurse.
	aux := struct {
		*plain
		Status lenientString `json:"status"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	s.Status = string(aux.Status)
	return nil
}

// Time is a Unix time in seconds, as Meta sends timestamps. It decodes from
// a JSON string ("1749196895") or number (1749196895), and also from an
// RFC 3339 string. Absent, null, empty or unparsable values decode to the
// zero Time rather than failing the whole webhook. It encodes as a string,
// like Meta.
type Time int64

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	*t = Time(parseUnix(b))
	return nil
}

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatInt(int64(t), 10) + `"`), nil
}

// Time returns t as a UTC time.Time, or the zero time.Time when t is zero.
func (t Time) Time() time.Time {
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(int64(t), 0).UTC()
}

// IsZero reports whether t is absent.
func (t Time) IsZero() bool { return t == 0 }

// Seconds is a duration in whole seconds. It decodes from a JSON number
// (24) or numeric string ("24"); fractions are truncated, and negative or
// unparsable values decode to zero. It encodes as a number.
type Seconds int64

// maxSeconds is the largest Seconds whose Duration does not overflow.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// UnmarshalJSON implements json.Unmarshaler.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	n, ok := parseInt(b)
	if !ok || n < 0 || n > maxSeconds {
		n = 0
	}
	*s = Seconds(n)
	return nil
}

// Duration returns s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) * time.Second }

// CallEvent is one call from a webhook with the context of its change.
type CallEvent struct {
	// PhoneNumberID is the Graph ID of the business number (metadata).
	PhoneNumberID string
	// DisplayPhoneNumber is the business number as displayed (metadata).
	DisplayPhoneNumber string
	// CallerName is the profile name of the caller's contact (see
	// Contact), or "".
	CallerName string
	// Contact is the caller's contact: the one whose wa_id is Call.From or
	// whose user_id is Call.FromUserID, else the one matching Call.To or
	// Call.ToUserID, else the first; zero if there is none.
	Contact Contact
	// Call is the call event itself.
	Call Call
	// Errors are the change's value-level errors followed by the call's
	// own errors.
	Errors []ErrorInfo
}

// maxReasonLen caps the length of CallEvent.Reason.
const maxReasonLen = 512

// Reason summarises Errors in one line for logs, such as
// "138021 No media for a long time.; 131000 Something went wrong", or ""
// when there are none. Duplicates are dropped and the result is capped at
// 512 bytes.
func (e *CallEvent) Reason() string {
	var parts []string
	for _, ei := range e.Errors {
		var p string
		switch text := oneLine(ei.Text()); {
		case ei.Code != 0 && text != "":
			p = strconv.Itoa(ei.Code) + " " + text
		case ei.Code != 0:
			p = "code " + strconv.Itoa(ei.Code)
		default:
			p = text
		}
		if p == "" || slices.Contains(parts, p) {
			continue
		}
		parts = append(parts, p)
	}
	return truncate(strings.Join(parts, "; "), maxReasonLen)
}

// ParseWebhook decodes a webhook delivery. The signature must have been
// checked first with VerifySignature. Unknown fields are ignored and
// optional fields may be absent; a body that is not a JSON object of the
// expected shape yields an error wrapping ErrMalformedWebhook.
func ParseWebhook(body []byte) (*Webhook, error) {
	var w Webhook
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedWebhook, err)
	}
	return &w, nil
}

// CallStatuses returns every status of type "call" (ignoring case) of every
// change of every entry, in order: the progress of business-initiated calls.
// A nil Webhook has none.
func (w *Webhook) CallStatuses() []Status {
	if w == nil {
		return nil
	}
	var out []Status
	for _, entry := range w.Entry {
		for _, change := range entry.Changes {
			for _, st := range change.Value.Statuses {
				if strings.EqualFold(st.Type, "call") {
					out = append(out, st)
				}
			}
		}
	}
	return out
}

// CallEvents returns every call of every change of every entry, in order.
// Calls are taken from changes whose field is "calls" and, to be tolerant,
// from any other change that carries them. A nil Webhook has none.
func (w *Webhook) CallEvents() []CallEvent {
	if w == nil {
		return nil
	}
	var events []CallEvent
	for _, entry := range w.Entry {
		for _, change := range entry.Changes {
			v := &change.Value
			for _, c := range v.Calls {
				contact := findContact(v.Contacts, &c)
				ev := CallEvent{
					PhoneNumberID:      v.Metadata.PhoneNumberID,
					DisplayPhoneNumber: v.Metadata.DisplayPhoneNumber,
					CallerName:         contact.Profile.Name,
					Contact:            contact,
					Call:               c,
				}
				if n := len(v.Errors) + len(c.Errors); n > 0 {
					ev.Errors = make([]ErrorInfo, 0, n)
					ev.Errors = append(ev.Errors, v.Errors...)
					ev.Errors = append(ev.Errors, c.Errors...)
				}
				events = append(events, ev)
			}
		}
	}
	return events
}

// findContact returns the contact of the call's calling party, matched by
// wa_id or user_id, else of the called party, else the first contact.
func findContact(contacts []Contact, c *Call) Contact {
	if len(contacts) == 0 {
		return Contact{}
	}
	for _, party := range [...][2]string{{c.From, c.FromUserID}, {c.To, c.ToUserID}} {
		for _, ct := range contacts {
			if (party[0] != "" && ct.WaID == party[0]) || (party[1] != "" && ct.UserID == party[1]) {
				return ct
			}
		}
	}
	return contacts[0]
}

// lenientString decodes a JSON string, a list of strings (joined with ","),
// or a number; anything else decodes to "".
type lenientString string

// UnmarshalJSON implements json.Unmarshaler.
func (s *lenientString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*s = ""
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '"':
		var v string
		if json.Unmarshal(b, &v) == nil {
			*s = lenientString(v)
		}
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(b, &items) != nil {
			return nil
		}
		var parts []string
		for _, item := range items {
			var v string
			if json.Unmarshal(item, &v) == nil && v != "" {
				parts = append(parts, v)
			}
		}
		*s = lenientString(strings.Join(parts, ","))
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		*s = lenientString(b)
	}
	return nil
}

// lenientInt decodes a JSON number or numeric string; anything else decodes
// to 0.
type lenientInt int

// UnmarshalJSON implements json.Unmarshaler.
func (n *lenientInt) UnmarshalJSON(b []byte) error {
	v, ok := parseInt(b)
	if !ok || v < math.MinInt32 || v > math.MaxInt32 {
		v = 0
	}
	*n = lenientInt(v)
	return nil
}

// parseUnix decodes a Unix time in seconds from a raw JSON value: a number,
// a numeric string or an RFC 3339 string. It returns 0 for anything else
// and for times before the epoch.
func parseUnix(b []byte) int64 {
	if n, ok := parseInt(b); ok {
		return max(n, 0)
	}
	s, ok := jsonString(b)
	if !ok {
		return 0
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
	if err != nil {
		return 0
	}
	return max(t.Unix(), 0)
}

// parseInt decodes an integer from a raw JSON number or numeric string.
// Fractions are truncated; NaN, infinities and out-of-range values fail.
func parseInt(b []byte) (int64, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0, false
	}
	var s string
	switch c := b[0]; {
	case c == '"':
		v, ok := jsonString(b)
		if !ok {
			return 0, false
		}
		s = strings.TrimSpace(v)
	case c == '-' || (c >= '0' && c <= '9'):
		s = string(b)
	default:
		return 0, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	// 2^63 is exactly representable; anything at or beyond it overflows.
	if err != nil || math.IsNaN(f) || f >= math.MaxInt64 || f <= math.MinInt64 {
		return 0, false
	}
	return int64(f), true
}

// jsonString decodes a raw JSON string value.
func jsonString(b []byte) (string, bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(b, &s) != nil {
		return "", false
	}
	return s, true
}
