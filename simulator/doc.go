// Package simulator lets anyone try whatsapp_calls on one machine, with no
// WhatsApp number and no bot of their own. It provides two Caddy HTTP handler
// modules that are not part of whatsapp_calls itself:
//
//   - http.handlers.whatsapp_simulator plays Meta's side of a WhatsApp call.
//     It serves a web page with a Call button, wraps the browser's WebRTC offer
//     in a signed connect webhook posted to whatsapp_calls, and fakes the
//     Graph API calls endpoint (pre_accept, accept, reject, terminate) so that
//     the answer SDP reaches the browser and either side can hang up. It
//     plays Meta's side of business-initiated calls too: connect rings the
//     page, which answers or declines, and call permissions are granted.
//   - http.handlers.whatsapp_bot is a demo voice bot: a WebSocket server that
//     speaks the twilio and vonage dialects server-side, echoes the caller's
//     audio back after a short delay (or plays a beep pattern), reports DTMF,
//     and records what it received for tests.
//
// Together with whatsapp_calls they make a self-contained demo:
//
//	go run ./cmd/whatsapp-demo run --config examples/demo.Caddyfile
//
// The simulator is a development tool: its page and API are unauthenticated,
// so it answers loopback clients only unless allow_remote is set, and its
// POST endpoints take only application/json. Only cmd/whatsapp-demo
// compiles this package in; production builds do not.
//
// Wire formats follow Meta's Cloud API calling and webhook documentation
// (https://developers.facebook.com/docs/whatsapp/cloud-api/calling), Twilio
// Media Streams (https://www.twilio.com/docs/voice/media-streams/websocket-messages)
// and the Vonage WebSocket audio protocol
// (https://developer.vonage.com/en/voice/voice-api/concepts/websockets).
package simulator
