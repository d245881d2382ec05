package whatsapp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Permission statuses, the value of Permission.Status.
const (
	// PermissionNone means the user has not granted call permission.
	PermissionNone = "no_permission"
	// PermissionTemporary is a permission that lasts 7 days.
	PermissionTemporary = "temporary"
	// PermissionPermanent is a permission without expiry (until revoked).
	PermissionPermanent = "permanent"
)

// Permission action names, the value of PermissionAction.Name.
const (
	// ActionSendPermissionRequest is sending the call_permission_request
	// message (Meta allows 1 per 24 hours and 2 per 7 days).
	ActionSendPermissionRequest = "send_call_permission_request"
	// ActionStartCall is placing a business-initiated call.
	ActionStartCall = "start_call"
)

// Permission is the answer of GET /{phone_number_id}/call_permissions:
//
//	{"messaging_product":"whatsapp",
//	 "permission":{"status":"temporary","expiration_time":1745343479},
//	 "actions":[{"action_name":"start_call","can_perform_action":true,
//	             "limits":[{"time_period":"PT24H","max_allowed":100,"current_usage":1}]}]}
//
// See https://developers.facebook.com/docs/whatsapp/cloud-api/calling/user-call-permissions.
type Permission struct {
	// Status is PermissionNone, PermissionTemporary or PermissionPermanent,
	// as sent.
	Status string
	// Expires is when a temporary permission ends; zero if none was sent.
	Expires Time
	// Actions say what the business may do now, with Meta's limits.
	Actions []PermissionAction
}

// PermissionAction is one action of a Permission.
type PermissionAction struct {
	// Name is ActionSendPermissionRequest, ActionStartCall or another.
	Name string `json:"action_name"`
	// CanPerform reports whether Meta allows the action now.
	CanPerform bool `json:"can_perform_action"`
	// Limits are Meta's limits on the action, with the current usage.
	Limits []PermissionLimit `json:"limits,omitempty"`
}

// PermissionLimit is one of Meta's limits on an action.
type PermissionLimit struct {
	// TimePeriod is an ISO 8601 duration such as "PT24H" or "P7D".
	TimePeriod string `json:"time_period"`
	// MaxAllowed is how many times the action may be done in TimePeriod.
	MaxAllowed int `json:"max_allowed"`
	// CurrentUsage is how many times it was done in the current period.
	CurrentUsage int `json:"current_usage"`
	// Expires is when the current period ends, if sent.
	Expires Time `json:"limit_expiration_time,omitempty"`
}

// Action returns the named action, and whether Meta listed it.
func (p *Permission) Action(name string) (PermissionAction, bool) {
	for _, a := range p.Actions {
		if strings.EqualFold(a.Name, name) {
			return a, true
		}
	}
	return PermissionAction{}, false
}

// CanCall returns nil if a call may be placed now: the status is not
// no_permission, and the start_call action, when listed, can be performed.
// Otherwise it returns an error wrapping ErrNoPermission that says why,
// with the exhausted limit if Meta named one.
func (p *Permission) CanCall() error {
	if p.Status == "" || strings.EqualFold(p.Status, PermissionNone) {
		return fmt.Errorf("%w (status %q)", ErrNoPermission, p.Status)
	}
	a, ok := p.Action(ActionStartCall)
	if !ok || a.CanPerform {
		return nil
	}
	for _, l := range a.Limits {
		if l.MaxAllowed > 0 && l.CurrentUsage >= l.MaxAllowed {
			return fmt.Errorf("%w: start_call limit reached (%d of %d per %s)", ErrNoPermission, l.CurrentUsage, l.MaxAllowed, l.TimePeriod)
		}
	}
	return fmt.Errorf("%w: meta says start_call cannot be performed now", ErrNoPermission)
}

// permissionResponse is the JSON body of a call_permissions answer.
type permissionResponse struct {
	Permission struct {
		Status         string `json:"status"`
		ExpirationTime Time   `json:"expiration_time"`
	} `json:"permission"`
	Actions []PermissionAction `json:"actions"`
	Error   *graphError        `json:"error"`
}

// CallPermission fetches whether the business may call the user userWaID
// (a wa_id): GET /{phone_number_id}/call_permissions?user_wa_id=...
// Meta limits how often it may be asked (error CodeRateLimited).
func (c *Client) CallPermission(ctx context.Context, phoneNumberID, userWaID string) (*Permission, error) {
	const op = "call_permissions"
	if userWaID == "" {
		return nil, fmt.Errorf("%s: %w: user wa_id", op, ErrMissingParameter)
	}
	var resp permissionResponse
	status, err := c.send(ctx, request{
		op: op, method: http.MethodGet, phoneNumberID: phoneNumberID, edge: op,
		query: url.Values{"user_wa_id": {userWaID}},
	}, &resp)
	if err == nil && resp.Error != nil {
		err = c.newAPIError(status, resp.Error)
	}
	if err == nil && resp.Permission.Status == "" {
		err = fmt.Errorf("%w: no permission status (http %d)", ErrNotSuccess, status)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &Permission{
		Status:  resp.Permission.Status,
		Expires: resp.Permission.ExpirationTime,
		Actions: resp.Actions,
	}, nil
}

// PermissionRequest is the call permission request message sent by
// SendPermissionRequest. Exactly one of To and Recipient is set.
type PermissionRequest struct {
	// To is the user's WhatsApp id.
	To string
	// Recipient is the user's business-scoped user id (BSUID).
	Recipient string
	// Body is the text shown above the request, such as "May we call you
	// about order 1234?". Meta requires it outside a template.
	Body string
}

// messageRequest is the JSON body of an interactive call_permission_request
// message.
type messageRequest struct {
	MessagingProduct string             `json:"messaging_product"`
	RecipientType    string             `json:"recipient_type"`
	To               string             `json:"to,omitempty"`
	Recipient        string             `json:"recipient,omitempty"`
	Type             string             `json:"type"`
	Interactive      interactiveRequest `json:"interactive"`
}

type interactiveRequest struct {
	Type   string `json:"type"`
	Action struct {
		Name string `json:"name"`
	} `json:"action"`
	Body struct {
		Text string `json:"text"`
	} `json:"body"`
}

// messageResponse is the JSON answer to a message send.
type messageResponse struct {
	Messages []struct {
		ID string `json:"id"`
	} `json:"messages"`
	Error *graphError `json:"error"`
}

// interactiveCallPermission is the interactive type and action name of the
// permission request, and the type of the user's reply.
const (
	interactiveCallPermission = "call_permission_request"
	// InteractiveCallPermissionReply is the interactive.type of the user's
	// answer on the messages webhook field.
	InteractiveCallPermissionReply = "call_permission_reply"
)

// SendPermissionRequest asks the user for permission to call them with an
// interactive call_permission_request message (POST /{phone_number_id}/messages)
// and returns the message id (wamid...). The answer arrives on the messages
// webhook field (see Webhook.PermissionReplies). Meta allows 1 request per
// 24 hours and 2 per 7 days to each user.
func (c *Client) SendPermissionRequest(ctx context.Context, phoneNumberID string, req PermissionRequest) (string, error) {
	const op = "send call_permission_request"
	switch {
	case req.To == "" && req.Recipient == "":
		return "", fmt.Errorf("%s: %w: to or recipient", op, ErrMissingParameter)
	case req.To != "" && req.Recipient != "":
		return "", fmt.Errorf("%s: both to and recipient given: want one", op)
	case req.Body == "":
		return "", fmt.Errorf("%s: %w: body text", op, ErrMissingParameter)
	}
	body := messageRequest{
		MessagingProduct: "whatsapp",
		RecipientType:    "individual",
		To:               req.To,
		Recipient:        req.Recipient,
		Type:             "interactive",
	}
	body.Interactive.Type = interactiveCallPermission
	body.Interactive.Action.Name = interactiveCallPermission
	body.Interactive.Body.Text = req.Body
	var resp messageResponse
	status, err := c.send(ctx, request{
		op: "call_permission_request", method: http.MethodPost, phoneNumberID: phoneNumberID, edge: "messages", body: body,
	}, &resp)
	if err == nil && resp.Error != nil {
		err = c.newAPIError(status, resp.Error)
	}
	if err == nil && (len(resp.Messages) == 0 || resp.Messages[0].ID == "") {
		err = fmt.Errorf("%w: no message id in response (http %d)", ErrNotSuccess, status)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	return resp.Messages[0].ID, nil
}
