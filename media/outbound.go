package media

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// OutboundConfig configures Engine.NewOutbound.
type OutboundConfig struct {
	// SampleRate is the bot's audio rate (8000 for the twilio dialect,
	// 8000, 16000 or 24000 for vonage), at which our Opus codecs will run;
	// the offer's Opus fmtp announces it. Zero means 16000.
	SampleRate int
	// Logger receives the session's logs. Nil means the Engine's logger.
	Logger *zap.Logger
	// Hooks are optional callbacks for metrics.
	Hooks Hooks
	// PlayoutLimit is the most bot audio queued for the user, as
	// SessionConfig.PlayoutLimit. Zero means DefaultPlayoutLimit.
	PlayoutLimit int
}

// Outbound is the media of a business-initiated call while it is being
// placed: our SDP offer, then the user's answer, then, once the user has
// picked up, the bridge to the bot (Bridge), which hands everything to a
// Session.
//
// We are the offerer and a full ICE agent, so we are controlling; WhatsApp
// answers ICE-lite with a=setup:active, so we are the DTLS server. The
// offer says a=setup:actpass, carries every candidate (WhatsApp takes no
// trickled ones) and only a sha-256 fingerprint.
//
// An Outbound is owned by one goroutine. Close releases it whatever its
// state; after a successful Bridge, it closes the Session.
type Outbound struct {
	s     *Session
	rate  int
	offer string

	mu      sync.Mutex
	remote  string // the answer, once applied
	bridged bool
	closed  bool
}

// NewOutbound builds the PeerConnection of a business-initiated call and
// its complete offer (ICE gathering finished). ctx bounds the gathering.
func (e *Engine) NewOutbound(ctx context.Context, cfg OutboundConfig) (*Outbound, error) {
	if e.isClosed() {
		return nil, ErrClosed
	}
	logger := e.loggerOr(cfg.Logger)
	rate := cfg.SampleRate
	if rate == 0 {
		rate = 16000
	}
	switch rate {
	case 8000, 16000, 24000:
	default:
		return nil, fmt.Errorf("outbound sample rate %d: want 8000, 16000 or 24000", rate)
	}
	o := &Outbound{s: e.newSession(logger, cfg.Hooks, false, cfg.PlayoutLimit), rate: rate}
	offer, err := o.s.setupOfferer(ctx, rate)
	if err != nil {
		_ = o.Close()
		return nil, err
	}
	o.offer = offer
	return o, nil
}

// setupOfferer builds the PeerConnection with our audio track and returns
// the complete offer.
func (s *Session) setupOfferer(ctx context.Context, rate int) (string, error) {
	pc, err := s.newPeerConnection(s.engine.api)
	if err != nil {
		return "", err
	}
	s.track, err = webrtc.NewTrackLocalStaticRTP(opusCodec, opusTrackID, opusStreamID)
	if err != nil {
		return "", fmt.Errorf("new opus track: %w", err)
	}
	tr, err := pc.AddTransceiverFromTrack(s.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
	if err != nil {
		return "", fmt.Errorf("add opus transceiver: %w", err)
	}
	s.sender = tr.Sender()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("create offer: %w", err)
	}
	sdp, err := completeLocalDescription(ctx, pc, offer)
	if err != nil {
		return "", err
	}
	// Our own Opus fmtp, as in an answer: what we decode and capture.
	return setOpusFmtp(sdp, answerOpusFmtp(rate, rate))
}

// Offer returns our SDP offer: Opus and telephone-event, a=setup:actpass,
// one sha-256 fingerprint and every gathered candidate. It is sensitive
// (ICE credentials and addresses): do not log it.
func (o *Outbound) Offer() string { return o.offer }

// SetAnswer applies the user's SDP answer (the session.sdp of the connect
// webhook whose sdp_type is "answer"). Media then connects on its own; the
// bot is attached by Bridge. An answer without Opus, or one pion refuses,
// returns an error wrapping ErrBadAnswer. A second answer is refused.
func (o *Outbound) SetAnswer(answer string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed:
		return ErrClosed
	case o.remote != "":
		return fmt.Errorf("%w: an answer was already applied", ErrBadAnswer)
	case !sdpHasOpus(answer):
		return fmt.Errorf("%w: no opus audio", ErrBadAnswer)
	}
	if err := o.s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("%w: set remote description: %w", ErrBadAnswer, err)
	}
	o.remote = answer
	return nil
}

// Bridge dials the bot and runs the call's media as a Session, which from
// then on owns the PeerConnection, the bot connection and every goroutine;
// the caller must close it (Outbound.Close does too). The answer must have
// been applied. Our encoder keeps to the limits of the answer's Opus fmtp
// (maxaveragebitrate, maxplaybackrate). ctx bounds the bot dial. On error
// the Outbound still owns the PeerConnection: close it.
func (o *Outbound) Bridge(ctx context.Context, callID string, cfg bot.Config) (*Session, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed:
		return nil, ErrClosed
	case o.bridged:
		return nil, errors.New("outbound call already bridged")
	case o.remote == "":
		return nil, fmt.Errorf("%w: bridge before the answer", ErrBadAnswer)
	}
	s := o.s
	if callID != "" {
		s.logger = s.logger.With(zap.String("call_id", callID))
	}
	if cfg.Logger == nil {
		cfg.Logger = s.logger.Named("bot")
	}
	if cfg.SampleRate == 0 && cfg.Protocol != bot.Twilio && cfg.Protocol != "" {
		cfg.SampleRate = o.rate
	}
	start := time.Now()
	conn, err := bot.Dial(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBotUnavailable, err)
	}
	s.bot = conn
	s.botDial = time.Since(start)
	if _, err := s.setupAudio(o.remote, o.offer); err != nil {
		s.bot = nil
		_ = conn.Close()
		return nil, err
	}
	o.bridged = true
	if err := s.start(); err != nil {
		return nil, err // start closed the session
	}
	return s, nil
}

// Close releases the call's media. Before Bridge it closes the
// PeerConnection and waits for pion's callbacks; after Bridge it closes the
// Session. It is idempotent.
func (o *Outbound) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	bridged := o.bridged
	o.mu.Unlock()
	s := o.s
	if bridged {
		return s.Close()
	}
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.end(ErrClosed)
	var err error
	if s.pc != nil {
		if cerr := s.pc.Close(); cerr != nil {
			err = fmt.Errorf("close peer connection: %w", cerr)
		}
	}
	s.wg.Wait()
	return err
}
