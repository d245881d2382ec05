// Package media is the audio side of a WhatsApp call: a WebRTC answerer
// (pion) toward the caller, bridged to one voice bot WebSocket (package
// media/bot).
//
// An Engine holds the pion configuration shared by all calls: Opus
// 48000/2 and telephone-event (RFC 7587, RFC 4733), RTCP report and stats
// interceptors, and the ICE settings WhatsApp needs (we answer as the DTLS
// client, a=setup:active, and are the controlling agent against WhatsApp's
// ICE-lite side; every candidate is in the answer, since the Graph API takes
// no trickled ones). Engine.NewSession answers one offer and dials the bot in
// parallel; the Session then runs the call until the bot hangs up, the media
// fails, or its owner closes it.
//
// Audio never goes through a resampler: Opus encodes from and decodes to the
// bot's rate (8, 16 or 24 kHz) while RTP timestamps stay on the 48 kHz clock.
// Caller packets are decoded straight into 20 ms bot frames, with packet loss
// concealment and in-band FEC for losses; bot audio of any chunk size goes
// through a bounded playout buffer (Playout) that applies backpressure to the
// bot, and one Opus packet leaves every 20 ms, a pre-encoded silence frame
// while the bot is quiet. Key presses arrive as RFC 4733 events (DTMFDecoder)
// and reach the bot once per press.
//
// Nothing here imports Caddy; configuration comes in plain structs and logs go
// to a *zap.Logger.
package media
