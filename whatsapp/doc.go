// Package whatsapp implements the Meta side of WhatsApp Business calling:
// the webhook signature check (X-Hub-Signature-256), the subscription
// verification handshake, tolerant models of the call webhooks, and a Graph
// API client for the call actions (pre_accept, accept, reject, terminate and
// business-initiated connect).
//
// The package knows nothing about Caddy or media. It takes plain Go values:
// an app secret, a verify token, an access token, an *http.Client and a
// *zap.Logger (nil means no logging).
//
// Payload shapes follow Meta's Cloud API documentation:
//   - Calling: https://developers.facebook.com/docs/whatsapp/cloud-api/calling
//   - Call webhooks: https://developers.facebook.com/docs/whatsapp/cloud-api/calling/reference#call-webhooks
//   - Webhook verification and signatures: https://developers.facebook.com/docs/graph-api/webhooks/getting-started
//
// Secrets (the app secret, the verify token and the access token) never
// appear in errors or logs produced by this package, and neither do SDP
// bodies.
package whatsapp
