package media

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

const (
	// rtpFrameTicks is one 20 ms frame on the 48 kHz RTP clock.
	rtpFrameTicks = RTPClockRate / 1000 * frameMs
	// botErrorWait is how long a failed write to the bot waits for the bot
	// reader to report a hang-up before it ends the call as a bot failure.
	botErrorWait = 200 * time.Millisecond
)

// SessionConfig configures one call's Session.
type SessionConfig struct {
	// CallID identifies the call in logs.
	CallID string
	// Offer is the caller's SDP offer.
	Offer string
	// Bot configures the bot WebSocket; see bot.Config. The Session reads
	// the sample rate back from the dialed connection.
	Bot bot.Config
	// Logger receives the session's logs. Nil means the Engine's logger.
	Logger *zap.Logger
	// Hooks are optional callbacks for metrics.
	Hooks Hooks
	// HoldPlayout keeps the bot's audio from the caller until StartPlayout:
	// the caller hears silence meanwhile, and the bot's audio and marks
	// wait in the playout buffer. Default: the bot is heard at once.
	HoldPlayout bool
}

// Hooks are optional callbacks a Session makes from its own goroutines. They
// must return quickly and must not call the Session's methods except Stats.
type Hooks struct {
	// OnUnderrun is called each time the bot's audio ran dry mid-speech
	// (see Playout for the definition).
	OnUnderrun func()
	// OnDTMF is called for each key press forwarded to the bot.
	OnDTMF func(DTMFEvent)
}

// Stats is a snapshot of one call's counters.
type Stats struct {
	// PacketsIn counts RTP packets received from the caller (Opus and
	// telephone-event).
	PacketsIn uint64
	// PacketsOut counts Opus packets sent to the caller.
	PacketsOut uint64
	// PacketsLost counts caller packets that never arrived or arrived too
	// late to be used, from gaps in the RTP sequence numbers.
	PacketsLost uint64
	// Underruns counts gaps in the bot's audio mid-speech (see Playout).
	Underruns uint64
	// BufferedMs is the bot audio queued for the caller, in milliseconds.
	BufferedMs int
	// DTMFCount counts key presses forwarded to the bot.
	DTMFCount uint64
	// Duration is the time since media connected (until the session ended),
	// or 0 if it never connected.
	Duration time.Duration
	// BotDial is how long dialing the bot took, retries included.
	BotDial time.Duration
}

// Session is one call's media: a WebRTC answerer toward the caller bridged to
// one bot WebSocket. It owns its PeerConnection, its bot connection and every
// goroutine it starts; Close releases them all.
//
// From the moment media connects, the Session sends one Opus packet every
// 20 ms without gaps: silence until the bot speaks, then the bot's audio from
// the playout buffer. Caller audio is decoded straight to the bot's rate and
// written to the bot in 20 ms frames; caller key presses (RFC 4733) are sent
// as DTMF events.
type Session struct {
	engine *Engine
	logger *zap.Logger
	hooks  Hooks

	ctx    context.Context // canceled when the session ends or closes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	pc      *webrtc.PeerConnection
	track   *webrtc.TrackLocalStaticRTP
	sender  *webrtc.RTPSender
	bot     *bot.Conn
	botDial time.Duration // how long bot.Dial took; set before NewSession returns
	answer  string

	rate    int // bot sample rate
	frame   int // samples per 20 ms at rate
	playout *Playout[bot.Mark]
	out     *outbound
	in      *inbound
	gate    playoutGate

	ready     chan struct{} // closed once NewSession has finished building s
	stateCh   chan struct{} // size 1: a PeerConnection state change is pending; coalesced
	pcState   atomic.Int32  // latest webrtc.PeerConnectionState
	connected chan struct{} // closed when media first connects
	reading   atomic.Bool   // an inbound track reader is running

	done    chan struct{} // closed when the session ends
	endOnce sync.Once
	err     error // why it ended; written before done is closed

	mu      sync.Mutex // guards closing, wg.Add from pion goroutines, the times
	closing bool
	connAt  time.Time
	endAt   time.Time

	closeOnce sync.Once
	closeErr  error

	botWriteErr atomic.Pointer[error] // the first failed write to the bot

	packetsIn   atomic.Uint64
	packetsOut  atomic.Uint64
	packetsLost atomic.Uint64
	dtmfCount   atomic.Uint64
}

// NewSession answers cfg.Offer and dials the bot, in parallel. It returns once
// ICE gathering is complete (the answer carries every candidate: WhatsApp
// takes no trickled ones) and the bot has been sent its opening messages.
// If either side fails, both are torn down and the error wraps ErrBadOffer or
// ErrBotUnavailable (or ctx's error). ctx bounds this setup only.
func (e *Engine) NewSession(ctx context.Context, cfg SessionConfig) (*Session, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	logger := cfg.Logger
	if logger == nil {
		logger = e.logger
	}
	logger = logger.With(zap.String("call_id", cfg.CallID))
	if cfg.Bot.Logger == nil {
		cfg.Bot.Logger = logger.Named("bot")
	}

	s := e.newSession(logger, cfg.Hooks, cfg.HoldPlayout)

	type dialResult struct {
		conn *bot.Conn
		err  error
		took time.Duration
	}
	dialCtx, cancelDial := context.WithCancel(ctx)
	dialed := make(chan dialResult, 1)
	go func() {
		start := time.Now()
		conn, err := bot.Dial(dialCtx, cfg.Bot)
		dialed <- dialResult{conn, err, time.Since(start)}
	}()

	answer, peerErr := s.setupPeer(ctx, cfg.Offer)
	if peerErr != nil {
		cancelDial()
	}
	res := <-dialed
	cancelDial()

	err := peerErr
	if err == nil && res.err != nil {
		err = fmt.Errorf("%w: %w", ErrBotUnavailable, res.err)
	}
	if err == nil {
		s.bot = res.conn
		s.botDial = res.took
		answer, err = s.setupAudio(cfg.Offer, answer)
	}
	if err != nil {
		if res.conn != nil {
			_ = res.conn.Close()
		}
		if s.pc != nil {
			_ = s.pc.Close()
		}
		s.cancel()
		return nil, err
	}
	s.answer = answer
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// newSession returns a Session with its channels and context, not yet
// connected to a peer or a bot.
func (e *Engine) newSession(logger *zap.Logger, hooks Hooks, holdPlayout bool) *Session {
	sctx, cancel := context.WithCancel(context.Background())
	s := &Session{
		engine:    e,
		logger:    logger,
		hooks:     hooks,
		ctx:       sctx,
		cancel:    cancel,
		ready:     make(chan struct{}),
		stateCh:   make(chan struct{}, 1),
		connected: make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.gate.init(holdPlayout)
	return s
}

// start runs a Session whose peer, bot and audio are set up: it starts the
// state watcher, the bot reader and the RTCP drain, lets the RTP reader
// in, and registers s with its engine. On error s is closed.
func (s *Session) start() error {
	s.wg.Add(3)
	go s.watch()
	go s.readBot()
	go s.drainRTCP()
	close(s.ready)
	if err := s.engine.register(s); err != nil {
		_ = s.Close()
		return err
	}
	s.logger.Debug("media session ready", zap.Int("bot_sample_rate", s.rate))
	return nil
}

// setupPeer builds the PeerConnection, applies the offer and returns the
// complete answer.
func (s *Session) setupPeer(ctx context.Context, offer string) (string, error) {
	pc, err := s.engine.api.NewPeerConnection(webrtc.Configuration{
		ICEServers:    s.engine.iceServers,
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
	if err != nil {
		return "", fmt.Errorf("new peer connection: %w", err)
	}
	s.pc = pc
	pc.OnConnectionStateChange(s.onState)
	pc.OnTrack(s.onTrack)

	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: set remote description: %w", ErrBadOffer, err)
	}
	s.track, err = webrtc.NewTrackLocalStaticRTP(opusCodec, opusTrackID, opusStreamID)
	if err != nil {
		return "", fmt.Errorf("new opus track: %w", err)
	}
	s.sender, err = pc.AddTrack(s.track)
	if err != nil {
		return "", fmt.Errorf("%w: add opus track: %w", ErrBadOffer, err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: create answer: %w", ErrBadOffer, err)
	}
	if !sdpHasOpus(answer.SDP) {
		return "", fmt.Errorf("%w: no opus audio in common", ErrBadOffer)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("gather ice candidates: %w", ctx.Err())
	}
	local := pc.LocalDescription()
	if local == nil {
		return "", errors.New("no local description after gathering")
	}
	sdp, err := onlySHA256Fingerprints(local.SDP)
	if err != nil {
		return "", err
	}
	return sdp, nil
}

// setupAudio builds the codecs and buffers at the bot's sample rate, with
// the limits the offer sets on our encoder, and returns the answer with our
// own Opus fmtp in place of the offer's that pion echoed.
func (s *Session) setupAudio(offer, answer string) (string, error) {
	s.rate = s.bot.SampleRate()
	s.frame = s.bot.FrameSamples()
	// The offer's maxaveragebitrate and maxplaybackrate bound the encoder;
	// ptime/maxptime 20 are what we send anyway (20 ms packets). Its
	// useinbandfec=1 says the caller's decoder could use FEC, but gopus's
	// FEC encoder allocates 14 KB in five allocations per frame and costs
	// 25-50 % more encode time (BenchmarkOpusEncodeFEC), so it stays off
	// (see NewOpusEncoder). usedtx=1 is not followed either: during bot
	// silence we send the 3-byte silence frame every 20 ms, which costs
	// about what DTX saves and keeps media flowing, since WhatsApp ends a
	// call that goes without media.
	want, _ := parseOpusOffer(offer) // setupPeer checked that Opus is in common
	ecfg := encoderConfig{
		rate:            s.rate,
		complexity:      s.engine.complexityFor(s.rate),
		maxBitrate:      want.maxAverageBitrate,
		maxPlaybackRate: want.maxPlaybackRate,
	}
	enc, err := newOpusEncoder(ecfg)
	if err != nil {
		return "", err
	}
	dec, err := NewOpusDecoder(s.rate)
	if err != nil {
		return "", err
	}
	bw := ecfg.bandwidth()
	answer, err = setOpusFmtp(answer, answerOpusFmtp(s.rate, bandwidthRate(bw)))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	s.playout = NewPlayout[bot.Mark](s.frame, int(int64(s.rate)*int64(PlayoutCapacity)/int64(time.Second)))
	s.out = newOutbound(enc, s.playout, silenceFrame(bw))
	s.in = newInbound(dec, s.rate, s.bot)
	if ce := s.logger.Check(zapcore.DebugLevel, "opus encoder"); ce != nil {
		ce.Write(zap.Int("bitrate", ecfg.bitrate()), zap.Int("max_bandwidth_hz", bandwidthRate(bw)/2))
	}
	return answer, nil
}

// Answer returns the local SDP answer: Opus, telephone-event if offered,
// a=setup:active, one sha-256 fingerprint and every gathered candidate.
func (s *Session) Answer() string { return s.answer }

// SampleRate returns the bot's audio sample rate, at which the Opus codecs run.
func (s *Session) SampleRate() int { return s.rate }

// WaitConnected blocks until media is connected (ICE and DTLS), the session
// ends, or ctx is done. It returns nil once connected; otherwise an error
// wrapping Err() or ctx's error.
func (s *Session) WaitConnected(ctx context.Context) error {
	select {
	case <-s.connected:
		return nil
	default:
	}
	select {
	case <-s.connected:
		return nil
	case <-s.done:
		return fmt.Errorf("media not connected: %w", s.Err())
	case <-ctx.Done():
		return fmt.Errorf("media not connected: %w", ctx.Err())
	}
}

// Done returns a channel closed when the session ends: by itself (the bot hung
// up, the bot connection failed, ICE failed or stayed disconnected longer than
// the grace period) or by Close. The owner must still call Close.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, wrapping ErrBotHangup, ErrBotFailed,
// ErrMediaFailed or ErrClosed; nil while it runs.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close ends the session if it has not ended: the bot is sent stop (Twilio)
// and a close frame, the PeerConnection is closed, and Close waits for every
// goroutine of the session. It is idempotent; later calls return the first
// result.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.end(ErrClosed)
		botErr := s.bot.Close()
		pcErr := s.pc.Close()
		s.wg.Wait()
		s.engine.unregister(s)
		if botErr != nil {
			botErr = fmt.Errorf("close bot: %w", botErr)
		}
		if pcErr != nil {
			pcErr = fmt.Errorf("close peer connection: %w", pcErr)
		}
		s.closeErr = errors.Join(botErr, pcErr)
		s.logger.Debug("media session closed", zap.Error(s.err))
	})
	return s.closeErr
}

// Stats returns a snapshot of the call's counters. It is safe to call at any
// time, also after Close.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	var d time.Duration
	switch {
	case s.connAt.IsZero():
	case s.endAt.IsZero():
		d = time.Since(s.connAt)
	default:
		d = s.endAt.Sub(s.connAt)
	}
	s.mu.Unlock()
	return Stats{
		PacketsIn:   s.packetsIn.Load(),
		PacketsOut:  s.packetsOut.Load(),
		PacketsLost: s.packetsLost.Load(),
		Underruns:   s.playout.Underruns(),
		BufferedMs:  s.playout.Buffered() * 1000 / s.rate,
		DTMFCount:   s.dtmfCount.Load(),
		Duration:    d,
		BotDial:     s.botDial,
	}
}

// end records why the session ended, closes Done and cancels the session's
// context. Only the first call counts.
func (s *Session) end(err error) {
	s.endOnce.Do(func() {
		s.mu.Lock()
		s.endAt = time.Now()
		s.mu.Unlock()
		s.err = err
		close(s.done)
		s.cancel()
		if !errors.Is(err, ErrClosed) {
			s.logger.Debug("media session ended", zap.Error(err))
		}
	})
}

// onState is pion's connection state callback: it only records the state and
// wakes the watcher.
func (s *Session) onState(st webrtc.PeerConnectionState) {
	s.pcState.Store(int32(st))
	select {
	case s.stateCh <- struct{}{}:
	default:
	}
}

// watch follows the PeerConnection state: it starts the send loop when media
// connects and ends the session when media fails, closes, or stays
// disconnected longer than the grace period.
func (s *Session) watch() {
	defer s.wg.Done()
	var grace *time.Timer
	var graceC <-chan time.Time
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()
	started := false
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-graceC:
			s.end(fmt.Errorf("%w: disconnected for more than %s", ErrMediaFailed, s.engine.grace))
			return
		case <-s.stateCh:
		}
		st := webrtc.PeerConnectionState(s.pcState.Load())
		if ce := s.logger.Check(zapcore.DebugLevel, "peer connection state"); ce != nil {
			ce.Write(zap.Stringer("state", st))
		}
		switch st {
		case webrtc.PeerConnectionStateConnected:
			if grace != nil {
				grace.Stop()
				grace, graceC = nil, nil
			}
			if !started {
				started = true
				s.mu.Lock()
				s.connAt = time.Now()
				s.mu.Unlock()
				close(s.connected)
				s.wg.Add(1)
				go s.sendLoop()
			}
		case webrtc.PeerConnectionStateDisconnected:
			if grace == nil {
				grace = time.NewTimer(s.engine.grace)
				graceC = grace.C
			}
		case webrtc.PeerConnectionStateFailed:
			s.end(fmt.Errorf("%w: ice or dtls failed", ErrMediaFailed))
			return
		case webrtc.PeerConnectionStateClosed:
			s.end(fmt.Errorf("%w: peer connection closed", ErrMediaFailed))
			return
		}
	}
}

// drainRTCP reads the sender's RTCP so that pion's interceptors see the
// caller's receiver reports; it ends when the PeerConnection closes.
func (s *Session) drainRTCP() {
	defer s.wg.Done()
	buf := make([]byte, maxRTPPacket)
	for {
		if _, _, err := s.sender.Read(buf); err != nil {
			return
		}
	}
}

// readBot moves the bot's audio, marks and clears into the playout buffer.
// A full buffer blocks it, which stops reading the WebSocket (backpressure).
func (s *Session) readBot() {
	defer s.wg.Done()
	for {
		ev, err := s.bot.ReadEvent(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, bot.ErrClosed) {
				return
			}
			if w := s.botWriteErr.Load(); w != nil && isTimeout(*w) {
				s.end(fmt.Errorf("%w: %w", ErrBotFailed, *w))
				return
			}
			if errors.Is(err, bot.ErrBotHangup) {
				s.end(fmt.Errorf("%w: %w", ErrBotHangup, err))
				return
			}
			s.end(fmt.Errorf("%w: %w", ErrBotFailed, err))
			return
		}
		switch ev.Kind {
		case bot.EventAudio:
			if err := s.playout.Push(s.ctx, ev.Audio); err != nil {
				return
			}
		case bot.EventMark:
			s.playout.PushMark(ev.Mark)
		case bot.EventClear:
			pending := s.playout.Clear()
			if err := s.bot.WriteCleared(s.ctx, pending); err != nil {
				s.recordBotWriteError(err)
				// The next ReadEvent reports the broken connection.
			}
		}
	}
}

// sendLoop sends one Opus packet to the caller every 20 ms and echoes marks
// whose audio has been sent.
func (s *Session) sendLoop() {
	defer s.wg.Done()
	ticker := time.NewTicker(FrameDuration)
	defer ticker.Stop()
	pkt := rtp.Packet{Header: rtp.Header{
		Version:        2,
		Marker:         true,
		PayloadType:    opusPayloadType, // pion sets the negotiated one
		SequenceNumber: uint16(rand.Uint32()),
		Timestamp:      rand.Uint32(),
	}}
	var due []bot.Mark
	var underruns uint64
	for {
		payload, marks := s.nextPayload(due[:0])
		due = marks
		pkt.Payload = payload
		if err := s.track.WriteRTP(&pkt); err != nil {
			if ce := s.logger.Check(zapcore.DebugLevel, "write rtp"); ce != nil {
				ce.Write(zap.Error(err))
			}
		} else {
			s.packetsOut.Add(1)
		}
		pkt.Marker = false
		pkt.SequenceNumber++
		pkt.Timestamp += rtpFrameTicks

		if s.hooks.OnUnderrun != nil {
			if u := s.playout.Underruns(); u != underruns {
				underruns = u
				s.hooks.OnUnderrun()
			}
		}
		for i, m := range due {
			if err := s.bot.WriteMarkPlayed(s.ctx, m); err != nil {
				s.botWriteFailed(err)
				return
			}
			due[i] = bot.Mark{}
		}

		select {
		case <-s.ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// onTrack is pion's OnTrack callback; pion runs it on its own goroutine, in
// which the caller's RTP is read until the PeerConnection closes.
func (s *Session) onTrack(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	if track.Kind() != webrtc.RTPCodecTypeAudio {
		return
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	select {
	case <-s.ready:
	case <-s.ctx.Done():
		return
	}
	if !s.reading.CompareAndSwap(false, true) {
		s.logger.Debug("ignoring a second audio track", zap.Uint32("ssrc", uint32(track.SSRC())))
		return
	}
	s.readRTP(track)
}

// readRTP reads the caller's RTP until the track ends: Opus goes to the bot
// as audio, telephone-event as DTMF.
func (s *Session) readRTP(track *webrtc.TrackRemote) {
	buf := make([]byte, maxRTPPacket)
	var pkt rtp.Packet
	var events []DTMFEvent
	var lastPT uint8
	var kind payloadKind
	var clock uint32
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			if errors.Is(err, webrtc.ErrCodecNotFound) {
				continue // a payload type we did not negotiate
			}
			return
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		s.packetsIn.Add(1)
		lost, ok := s.in.sequence(pkt.SequenceNumber)
		if !ok {
			continue
		}
		if lost > 0 {
			s.packetsLost.Add(uint64(lost))
		}
		if kind == payloadUnknown || pkt.PayloadType != lastPT {
			lastPT = pkt.PayloadType
			kind, clock = classify(track.Codec())
		}
		switch kind {
		case payloadOpus:
			if err := s.in.opus(s.ctx, &pkt, lost > 0); err != nil {
				s.botWriteFailed(err)
				return
			}
		case payloadTelephoneEvent:
			events = s.in.dtmf.Push(events[:0], pkt.Timestamp, pkt.Payload, clock)
			for _, ev := range events {
				s.dtmfCount.Add(1)
				if ce := s.logger.Check(zapcore.DebugLevel, "dtmf"); ce != nil {
					ce.Write(zap.Duration("duration", ev.Duration))
				}
				if s.hooks.OnDTMF != nil {
					s.hooks.OnDTMF(ev)
				}
				if err := s.bot.WriteDTMF(s.ctx, ev.Digit, ev.Duration); err != nil {
					s.botWriteFailed(err)
					return
				}
			}
		}
	}
}

// recordBotWriteError remembers the first failed write to the bot, so that
// the bot reader can tell a stalled bot (write timeout) from a hang-up.
func (s *Session) recordBotWriteError(err error) {
	s.botWriteErr.CompareAndSwap(nil, &err)
}

// botWriteFailed handles a failed write to the bot from the RTP reader or the
// send loop. A write fails both when the bot stalls and when it has just hung
// up, so the bot reader gets a moment to report a hang-up first.
func (s *Session) botWriteFailed(err error) {
	if s.ctx.Err() != nil || errors.Is(err, bot.ErrClosed) {
		return
	}
	s.recordBotWriteError(err)
	t := time.NewTimer(botErrorWait)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		s.end(fmt.Errorf("%w: %w", ErrBotFailed, err))
	}
}

// isTimeout reports whether err is a deadline or network timeout.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// payloadKind classifies a received RTP payload type.
type payloadKind uint8

const (
	payloadUnknown payloadKind = iota
	payloadOpus
	payloadTelephoneEvent
	payloadOther
)

// classify returns the kind of a negotiated codec and, for telephone-event,
// its clock rate.
func classify(c webrtc.RTPCodecParameters) (payloadKind, uint32) {
	switch {
	case strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus):
		return payloadOpus, c.ClockRate
	case strings.EqualFold(c.MimeType, mimeTypeTelephoneEvent):
		return payloadTelephoneEvent, c.ClockRate
	}
	return payloadOther, c.ClockRate
}
