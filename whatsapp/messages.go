package whatsapp

import (
	"encoding/json"
	"strings"
)

// Permission reply responses, the value of CallPermissionReply.Response.
const (
	// ReplyAccept is a user granting call permission.
	ReplyAccept = "accept"
	// ReplyReject is a user declining it.
	ReplyReject = "reject"
)

// Message is one message of a "messages" change. Only what a calling
// integration needs is modelled: the user's reply to a call permission
// request,
//
//	{"from":"15551234567","id":"wamid...","timestamp":"1750000000","type":"interactive",
//	 "interactive":{"type":"call_permission_reply","call_permission_reply":{
//	   "response":"accept","is_permanent":false,"expiration_timestamp":1750604800,
//	   "response_source":"user_action"}}}
//
// A message whose shape does not decode is kept as the zero Message rather
// than failing the whole delivery.
//
// See https://developers.facebook.com/docs/whatsapp/cloud-api/calling/user-call-permissions.
type Message struct {
	// ID is the message id (wamid...).
	ID string `json:"id,omitempty"`
	// From is the user's WhatsApp id, if shared.
	From string `json:"from,omitempty"`
	// FromUserID is the user's business-scoped user id (BSUID), if sent.
	FromUserID string `json:"from_user_id,omitempty"`
	// Timestamp is when the message was sent.
	Timestamp Time `json:"timestamp,omitempty"`
	// Type is the message type, "interactive" for a permission reply.
	Type string `json:"type,omitempty"`
	// Interactive is the interactive part of the message, if any.
	Interactive *Interactive `json:"interactive,omitempty"`
}

// UnmarshalJSON decodes a message; a message of an unexpected shape
// decodes to the zero Message instead of failing.
func (m *Message) UnmarshalJSON(b []byte) error {
	type plain Message // plain has no methods, so this does not recurse.
	var v plain
	if json.Unmarshal(b, &v) != nil {
		*m = Message{}
		return nil
	}
	*m = Message(v)
	return nil
}

// Interactive is the interactive object of a message.
type Interactive struct {
	// Type is InteractiveCallPermissionReply for a permission reply.
	Type string `json:"type,omitempty"`
	// CallPermissionReply is the user's answer to a permission request.
	CallPermissionReply *CallPermissionReply `json:"call_permission_reply,omitempty"`
}

// CallPermissionReply is a user's answer to a call permission request.
type CallPermissionReply struct {
	// Response is ReplyAccept or ReplyReject.
	Response string `json:"response,omitempty"`
	// IsPermanent reports whether the permission has no expiry.
	IsPermanent bool `json:"is_permanent,omitempty"`
	// Expires is when a temporary permission ends (7 days after).
	Expires Time `json:"expiration_timestamp,omitempty"`
	// ResponseSource is "user_action" or "automatic".
	ResponseSource string `json:"response_source,omitempty"`
}

// PermissionReply is a call permission reply with the context of its
// change.
type PermissionReply struct {
	// PhoneNumberID is the Graph ID of the business number (metadata).
	PhoneNumberID string
	// MessageID is the reply message's id.
	MessageID string
	// From is the user's WhatsApp id, if shared.
	From string
	// FromUserID is the user's business-scoped user id, from the message
	// or its contact.
	FromUserID string
	// Timestamp is when the user answered.
	Timestamp Time
	// Reply is the answer itself.
	Reply CallPermissionReply
}

// Accepted reports whether the user granted permission.
func (r *PermissionReply) Accepted() bool { return strings.EqualFold(r.Reply.Response, ReplyAccept) }

// PermissionReplies returns every call permission reply of every change of
// every entry, in order. A nil Webhook has none.
func (w *Webhook) PermissionReplies() []PermissionReply {
	if w == nil {
		return nil
	}
	var out []PermissionReply
	for _, entry := range w.Entry {
		for _, change := range entry.Changes {
			v := &change.Value
			for _, m := range v.Messages {
				if m.Interactive == nil || m.Interactive.CallPermissionReply == nil ||
					!strings.EqualFold(m.Interactive.Type, InteractiveCallPermissionReply) {
					continue
				}
				r := PermissionReply{
					PhoneNumberID: v.Metadata.PhoneNumberID,
					MessageID:     m.ID,
					From:          m.From,
					FromUserID:    m.FromUserID,
					Timestamp:     m.Timestamp,
					Reply:         *m.Interactive.CallPermissionReply,
				}
				if r.FromUserID == "" {
					for _, ct := range v.Contacts {
						if ct.WaID != "" && ct.WaID == m.From {
							r.FromUserID = ct.UserID
						}
					}
				}
				out = append(out, r)
			}
		}
	}
	return out
}
