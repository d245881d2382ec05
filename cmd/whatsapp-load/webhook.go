package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// Identities used in the webhooks, Meta-shaped.
const (
	wabaID         = "102290129340398"
	displayNumber  = "15550001111"
	callerName     = "Load Caller"
	webhookTimeout = 10 * time.Second
)

// callerNumber returns the WhatsApp id of caller i.
func callerNumber(i int) string { return fmt.Sprintf("1555%07d", i%10_000_000) }

// envelope wraps one call event in Meta's webhook envelope.
// See https://developers.facebook.com/docs/whatsapp/cloud-api/calling/reference#call-webhooks.
func envelope(phoneNumberID string, contacts []whatsapp.Contact, call whatsapp.Call) ([]byte, error) {
	w := whatsapp.Webhook{
		Object: "whatsapp_business_account",
		Entry: []whatsapp.Entry{{
			ID: wabaID,
			Changes: []whatsapp.Change{{
				Field: "calls",
				Value: whatsapp.Value{
					MessagingProduct: "whatsapp",
					Metadata:         whatsapp.Metadata{DisplayPhoneNumber: displayNumber, PhoneNumberID: phoneNumberID},
					Contacts:         contacts,
					Calls:            []whatsapp.Call{call},
				},
			}},
		}},
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("marshal webhook: %w", err)
	}
	return b, nil
}

// connectWebhook is the connect webhook of a user-initiated call carrying
// the caller's offer.
func connectWebhook(phoneNumberID, callID, from, offer string, now time.Time) ([]byte, error) {
	return envelope(phoneNumberID,
		[]whatsapp.Contact{{Profile: whatsapp.Profile{Name: callerName}, WaID: from}},
		whatsapp.Call{
			ID: callID, From: from, To: displayNumber, Event: whatsapp.EventConnect,
			Timestamp: whatsapp.Time(now.Unix()), Direction: whatsapp.DirectionUserInitiated,
			Session: &whatsapp.Session{SDPType: "offer", SDP: offer},
		})
}

// terminateWebhook is the terminate webhook Meta sends when the user hangs
// up a call that was connected from start to end.
func terminateWebhook(phoneNumberID, callID, from string, start, end time.Time) ([]byte, error) {
	return envelope(phoneNumberID, nil, whatsapp.Call{
		ID: callID, From: from, To: displayNumber, Event: whatsapp.EventTerminate,
		Timestamp: whatsapp.Time(end.Unix()), Direction: whatsapp.DirectionUserInitiated,
		Status: "COMPLETED", StartTime: whatsapp.Time(start.Unix()), EndTime: whatsapp.Time(end.Unix()),
		Duration: whatsapp.Seconds(end.Sub(start) / time.Second),
	})
}

// postWebhook delivers a signed webhook and wants 200.
func postWebhook(ctx context.Context, client *http.Client, url string, appSecret, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", whatsapp.Sign(appSecret, body))
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post webhook: status %s", resp.Status)
	}
	return nil
}
