package media

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
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
	// PlayoutLimit is the most bot audio queued for the caller, in bytes
	// of 16-bit PCM at the bot's rate. A bot that queues more ends the call
	// with ErrBotFailed wrapping ErrPlayoutOverflow. Zero means
	// DefaultPlayoutLimit.
	PlayoutLimit int
	// Codec selects the audio codec toward the caller: CodecAuto (the
	// default) answers PCMU without transcoding when the offer carries
	// PCMU and Bot.Protocol is twilio, and Opus otherwise; CodecOpus
	// always answers Opus.
	Codec Codec
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
	// PacketsIn counts RTP packets received from the caller (audio and
	// telephone-event).
	PacketsIn uint64
	// PacketsOut counts audio packets (Opus or PCMU) sent to the caller.
	PacketsOut uint64
	// PacketsLost counts caller packets that never arrived or arrived too
	// late to be used, from gaps in the RTP sequence numbers.
	PacketsLost uint64
	// Underruns counts gaps in the bot's audio mid-speech (see Playout).
	Underruns uint64
	// BufferedMs is the bot audio queued for the caller, in milliseconds.
	BufferedMs int
	// LateFrames counts 20 ms send slots skipped because the send loop ran
	// more than 100 ms late (a stalled scheduler); the caller saw a gap.
	LateFrames uint64
	// DTMFCount counts key presses forwarded to the bot.
	DTMFCount uint64
	// Duration is the time since media connected (until the session ended),
	// or 0 if it never connected.
	Duration time.Duration
	// BotDial is how long dialing the bot took, retries included.
	BotDial time.Duration
	// Codec is the audio codec toward the caller: "opus" or "pcmu".
	Codec string
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

	playoutLimit int // bytes; see SessionConfig.PlayoutLimit

	rate      int  // bot sample rate
	frame     int  // samples per 20 ms at rate
	pcmu      bool // PCMU passthrough instead of Opus
	audioKind payloadKind
	playout   *Playout[bot.Mark]
	out       *outbound
	// caller is the caller-to-bot path; callerMu guards it (the RTP
	// reader pushes packets, deliverLoop ticks).
	callerMu sync.Mutex
	caller   *callerPath
	gate     playoutGate

	ready       chan struct{} // closed once NewSession has finished building s
	deliverKick chan struct{} // size 1: the caller path has something waiting; coalesced
	stateCh     chan struct{} // size 1: a PeerConnection state change is pending; coalesced
	pcState     atomic.Int32  // latest webrtc.PeerConnectionState
	connected   chan struct{} // closed when media first connects
	reading     atomic.Bool   // an inbound track reader is running

	done    chan struct{} // closed when the session ends
	endOnce sync.Once
	err     error // why it ended; written before done is closed

	mu      sync.Mutex // guards closing, wg.Add from pion goroutines, the times
	closing bool
	connAt  time.Time
	endAt   time.Time

	closeOnce sync.Once
	closeErr  error

	packetsIn   atomic.Uint64
	packetsOut  atomic.Uint64
	packetsLost atomic.Uint64
	dtmfCount   atomic.Uint64
	lateFrames  atomic.Uint64
	botGone     atomic.Bool // the bot hung up; its queued audio is being played
}

// NewSession answers cfg.Offer and dials the bot, in parallel. It returns once
// ICE gathering is complete (the answer carries every candidate: WhatsApp
// takes no trickled ones) and the bot has been sent its opening messages.
// If either side fails, both are torn down and the error wraps ErrBadOffer or
// ErrBotUnavailable (or ctx's error). ctx bounds this setup only.
func (e *Engine) NewSession(ctx context.Context, cfg SessionConfig) (*Session, error) {
	if e.isClosed() {
		return nil, ErrClosed
	}
	logger := e.loggerOr(cfg.Logger)
	logger = logger.With(zap.String("call_id", cfg.CallID))
	if cfg.Bot.Logger == nil {
		cfg.Bot.Logger = logger.Named("bot")
	}

	s := e.newSession(logger, cfg.Hooks, cfg.HoldPlayout, cfg.PlayoutLimit)
	codec, ok := ParseCodec(string(cfg.Codec))
	if !ok {
		s.cancel()
		return nil, fmt.Errorf("codec %q: must be auto or opus", cfg.Codec)
	}
	s.pcmu = codec == CodecAuto && cfg.Bot.Protocol == bot.Twilio && sdpHasPCMU(cfg.Offer)
	s.audioKind = payloadOpus
	if s.pcmu {
		s.audioKind = payloadPCMU
	}

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

	answer, peerErr := s.setupPeer(ctx, cfg.Offer, s.pcmu)
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
// connected to a peer or a bot. A playoutLimit of 0 means
// DefaultPlayoutLimit.
func (e *Engine) newSession(logger *zap.Logger, hooks Hooks, holdPlayout bool, playoutLimit int) *Session {
	if playoutLimit <= 0 {
		playoutLimit = DefaultPlayoutLimit
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Session{
		engine:       e,
		logger:       logger,
		hooks:        hooks,
		playoutLimit: playoutLimit,
		ctx:          sctx,
		cancel:       cancel,
		ready:        make(chan struct{}),
		deliverKick:  make(chan struct{}, 1),
		audioKind:    payloadOpus,
		stateCh:      make(chan struct{}, 1),
		connected:    make(chan struct{}),
		done:         make(chan struct{}),
	}
	s.gate.init(holdPlayout)
	return s
}

// start runs a Session whose peer, bot and audio are set up: it starts the
// state watcher, the bot reader, the RTCP drain and the delivery to the
// bot, lets the RTP reader in, and registers s with its engine. On error s
// is closed.
func (s *Session) start() error {
	s.wg.Add(4)
	go s.watch()
	go s.readBot()
	go s.drainRTCP()
	go s.deliverLoop()
	close(s.ready)
	if err := s.engine.register(s); err != nil {
		_ = s.Close()
		return err
	}
	s.logger.Debug("media session ready", zap.Int("bot_sample_rate", s.rate))
	return nil
}

// setupAudio builds the codecs and buffers at the bot's sample rate, with
// the limits the offer sets on our encoder, and returns the answer with our
// own Opus fmtp in place of the offer's that pion echoed.
func (s *Session) setupAudio(offer, answer string) (string, error) {
	s.rate = s.bot.SampleRate()
	s.frame = s.bot.FrameSamples()
	if s.pcmu {
		if s.rate != pcmuClockRate {
			return "", fmt.Errorf("pcmu passthrough: bot rate %d Hz, want %d", s.rate, pcmuClockRate)
		}
		s.playout = NewPlayout[bot.Mark](s.frame, s.playoutLimit/2)
		s.playout.SetStartLead(StartLead)
		s.out = newOutbound(pcmuEncoder{}, s.playout, pcmuSilenceFrame)
		s.caller = newCallerPath(pcmuDecoder{}, s.rate, pcmuClockRate, s.bot, s.forwardDTMF)
		s.logger.Debug("pcmu passthrough")
		return answer, nil
	}
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
	s.playout = NewPlayout[bot.Mark](s.frame, s.playoutLimit/2)
	s.playout.SetStartLead(StartLead)
	s.out = newOutbound(enc, s.playout, silenceFrame(bw))
	s.caller = newCallerPath(dec, s.rate, RTPClockRate, s.bot, s.forwardDTMF)
	if ce := s.logger.Check(zapcore.DebugLevel, "opus encoder"); ce != nil {
		ce.Write(zap.Int("bitrate", ecfg.bitrate()), zap.Int("max_bandwidth_hz", bandwidthRate(bw)/2))
	}
	return answer, nil
}

// Answer returns the local SDP answer: Opus or PCMU (see
// SessionConfig.Codec), telephone-event if offered,
// a=setup:active, one sha-256 fingerprint and every gathered candidate.
func (s *Session) Answer() string { return s.answer }

// SampleRate returns the bot's audio sample rate, at which the codecs run.
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
		LateFrames:  s.lateFrames.Load(),
		Duration:    d,
		BotDial:     s.botDial,
		Codec:       s.codecName(),
	}
}

// codecName returns the audio codec toward the caller.
func (s *Session) codecName() string {
	if s.pcmu {
		return "pcmu"
	}
	return "opus"
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
