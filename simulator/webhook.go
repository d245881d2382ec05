package simulator

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Webhook payloads in Meta's shape for field "calls". See
// https://developers.facebook.com/docs/whatsapp/cloud-api/calling/user-initiated-calls
// and PROTOCOLS.md.
type webhookPayload struct {
	Object string         `json:"object"`
	Entry  []webhookEntry `json:"entry"`
}

type webhookEntry struct {
	ID      string          `json:"id"`
	Changes []webhookChange `json:"changes"`
}

type webhookChange struct {
	Field string       `json:"field"`
	Value webhookValue `json:"value"`
}

type webhookValue struct {
	MessagingProduct string           `json:"messaging_product"`
	Metadata         webhookMetadata  `json:"metadata"`
	Contacts         []webhookContact `json:"contacts,omitempty"`
	Calls            []webhookCall    `json:"calls,omitempty"`
	Statuses         []webhookStatus  `json:"statuses,omitempty"`
	Messages         []webhookMessage `json:"messages,omitempty"`
}

type webhookMetadata struct {
	DisplayPhoneNumber string `json:"display_phone_number"`
	PhoneNumberID      string `json:"phone_number_id"`
}

type webhookContact struct {
	Profile webhookProfile `json:"profile"`
	WaID    string         `json:"wa_id"`
}

type webhookProfile struct {
	Name string `json:"name"`
}

type webhookCall struct {
	ID        string          `json:"id"`
	From      string          `json:"from"`
	To        string          `json:"to"`
	Event     string          `json:"event"`
	Timestamp string          `json:"timestamp"`
	Direction string          `json:"direction"`
	Session   *webhookSession `json:"session,omitempty"`
	Status    string          `json:"status,omitempty"`
	StartTime string          `json:"start_time,omitempty"`
	EndTime   string          `json:"end_time,omitempty"`
	Duration  *int64          `json:"duration,omitempty"`
}

type webhookSession struct {
	SDPType string `json:"sdp_type"`
	SDP     string `json:"sdp"`
}

// Terminate statuses used by the simulator.
const (
	terminateCompleted = "COMPLETED"
	terminateFailed    = "FAILED"
	terminateRejected  = "REJECTED"
)

// connectPayload builds the connect webhook of a user-initiated call.
func (s *Simulator) connectPayload(callID, offer string, at time.Time) ([]byte, error) {
	return json.Marshal(s.envelope(webhookCall{
		ID:        callID,
		From:      s.Caller,
		To:        s.DisplayPhoneNumber,
		Event:     "connect",
		Timestamp: unixString(at),
		Direction: directionUser,
		Session:   &webhookSession{SDPType: "offer", SDP: offer},
	}, true))
}

// terminatePayload builds the terminate webhook. started is when the call
// was accepted (zero if it never was).
func (s *Simulator) terminatePayload(c *call, status string, started, ended time.Time) ([]byte, error) {
	wc := webhookCall{
		ID:        c.id,
		From:      s.Caller,
		To:        s.DisplayPhoneNumber,
		Event:     "terminate",
		Timestamp: unixString(ended),
		Direction: directionUser,
		Status:    status,
		EndTime:   unixString(ended),
	}
	if c.outbound {
		wc.From, wc.To, wc.Direction = s.DisplayPhoneNumber, s.Caller, directionBusiness
	}
	var d int64
	if !started.IsZero() {
		wc.StartTime = unixString(started)
		d = max(0, ended.Unix()-started.Unix())
	}
	wc.Duration = &d
	return json.Marshal(s.envelope(wc, false))
}

func (s *Simulator) envelope(wc webhookCall, withContact bool) webhookPayload {
	v := s.value()
	v.Calls = []webhookCall{wc}
	if withContact {
		v.Contacts = []webhookContact{{Profile: webhookProfile{Name: s.CallerName}, WaID: s.Caller}}
	}
	return s.wrap("calls", v)
}

// value is the start of every webhook value: the business number.
func (s *Simulator) value() webhookValue {
	return webhookValue{
		MessagingProduct: "whatsapp",
		Metadata: webhookMetadata{
			DisplayPhoneNumber: s.DisplayPhoneNumber,
			PhoneNumberID:      s.PhoneNumberID,
		},
	}
}

// wrap puts one change of field into a webhook envelope.
func (s *Simulator) wrap(field string, v webhookValue) webhookPayload {
	return webhookPayload{
		Object: "whatsapp_business_account",
		Entry: []webhookEntry{{
			ID:      businessAccountID,
			Changes: []webhookChange{{Field: field, Value: v}},
		}},
	}
}

func unixString(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// signature returns the X-Hub-Signature-256 value of body:
// "sha256=" and the lowercase hex HMAC-SHA256 of body keyed by the app secret.
func signature(appSecret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// deliver posts a signed webhook to WebhookURL. It returns the response
// status, and an error wrapping ErrWebhookStatus unless it was 200.
func (s *Simulator) deliver(ctx context.Context, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "facebookexternalua")
	req.Header.Set("X-Hub-Signature-256", signature(s.AppSecret, body))
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%w: HTTP %d", ErrWebhookStatus, resp.StatusCode)
	}
	return resp.StatusCode, nil
}
