package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
)

// DefaultDisconnectGrace is how long a call may stay ICE-disconnected before
// it is ended, when EngineConfig.DisconnectGrace is zero.
const DefaultDisconnectGrace = 5 * time.Second

// Payload types registered with pion. An offer's own payload types win when
// they differ: pion answers with the offerer's numbers.
const (
	opusPayloadType     = 111
	telephoneEvent8kPT  = 126
	telephoneEvent48kPT = 110
)

const (
	mimeTypeTelephoneEvent = "audio/telephone-event"
	// telephoneEventFmtp lists the events we understand: the 16 DTMF keys.
	telephoneEventFmtp = "0-15"
	opusChannels       = 2 // WebRTC always signals opus/48000/2 (RFC 7587)
	opusTrackID        = "audio"
	opusStreamID       = "whatsapp-calls"
	maxRTPPacket       = 1500
	// maxComplexity is the highest Opus encoder complexity.
	maxComplexity = 10
)

// opusCodec is the one audio codec we send and receive: Opus 48000/2 as
// WebRTC uses it (RFC 7587).
//
// It is registered without fmtp on purpose. pion matches an offer's codecs
// against ours on their fmtp parameters (internal/fmtp: a parameter both
// sides name must have the same value), and pushes only the "exact" matches
// when there are any. A registered "minptime=10" made WhatsApp's Opus
// (minptime=20) a mere partial match while telephone-event matched exactly,
// so pion answered without Opus. With no parameters of ours, every
// opus/48000/2 matches exactly whatever its fmtp (any order, case or
// payload type). Opus's fmtp parameters are declarations, not a condition
// of interoperation (RFC 7587 section 6.1): we read the offer's with
// parseOpusOffer to set our encoder, and the answer gets our own fmtp
// (answerOpusFmtp), since pion would echo the offer's.
var opusCodec = webrtc.RTPCodecCapability{
	MimeType:  webrtc.MimeTypeOpus,
	ClockRate: RTPClockRate,
	Channels:  opusChannels,
}

// EngineConfig configures NewEngine. The zero value is usable except for
// OpusComplexity, where 0 means complexity 0 and -1 the default.
type EngineConfig struct {
	// UDPMux, if set, carries every call's ICE traffic on one port (see
	// NewUDPMux). The caller owns it and closes it after the Engine. Nil
	// means each call gathers on its own ephemeral ports.
	UDPMux ice.UDPMux
	// PublicIPs replace the local addresses in our host candidates (1:1 NAT,
	// for example a cloud VM's public address). Empty means advertise the
	// local addresses.
	PublicIPs []string
	// ICEServers are STUN/TURN servers used to gather more candidates.
	ICEServers []webrtc.ICEServer
	// Networks, if not empty, restricts gathering to local addresses inside
	// these prefixes. A loopback prefix (127.0.0.0/8, ::1/128) also turns on
	// loopback candidates, which tests and a localhost demo need. With
	// UDPMux set, pass the same prefixes to NewUDPMux: the mux decides the
	// addresses.
	Networks []netip.Prefix
	// DisconnectGrace is how long a call may stay disconnected (ICE lost
	// contact, consent not refreshed) before it ends. Default: 5s.
	DisconnectGrace time.Duration
	// OpusComplexity is the Opus encoder complexity, 0-10; -1 selects the
	// benchmarked default for the bot's sample rate (see defaultComplexity).
	OpusComplexity int
	// Logger receives the engine's and pion's logs. Nil means no logging.
	Logger *zap.Logger
}

// Engine holds the pion configuration shared by every call: a webrtc.API
// per audio codec (Opus; PCMU for passthrough calls), with our interceptors
// and ICE settings. It is safe for concurrent use. Create sessions with
// NewSession.
type Engine struct {
	api        *webrtc.API // Opus calls
	pcmuAPI    *webrtc.API // PCMU passthrough calls
	iceServers []webrtc.ICEServer
	grace      time.Duration
	complexity int
	logger     *zap.Logger

	mu       sync.Mutex
	closed   bool
	sessions map[*Session]struct{}
}

// engineOptions are settings that only tests change.
type engineOptions struct {
	// iceDisconnected, if set, replaces pion's ICE disconnected timeout (5 s
	// without traffic), so that tests can lose a caller quickly.
	iceDisconnected time.Duration
	// remoteIPFilter, if set, drops remote candidates whose address it
	// rejects, so that tests can feed offers with public candidates and
	// still send nothing beyond loopback.
	remoteIPFilter func(net.IP) bool
}

// NewEngine validates cfg and builds the shared pion API. It does no network
// I/O.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	return newEngine(cfg, engineOptions{})
}

func newEngine(cfg EngineConfig, opts engineOptions) (*Engine, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	if cfg.OpusComplexity < -1 || cfg.OpusComplexity > maxComplexity {
		return nil, fmt.Errorf("opus complexity %d not in -1..%d", cfg.OpusComplexity, maxComplexity)
	}
	if cfg.DisconnectGrace < 0 {
		return nil, fmt.Errorf("negative disconnect grace %s", cfg.DisconnectGrace)
	}
	grace := cfg.DisconnectGrace
	if grace == 0 {
		grace = DefaultDisconnectGrace
	}
	for _, ip := range cfg.PublicIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("public ip %q: %w", ip, err)
		}
	}

	se, err := newSettingEngine(cfg, opts, logger)
	if err != nil {
		return nil, err
	}
	api, err := newAPI(opusCodec, opusPayloadType, se)
	if err != nil {
		return nil, err
	}
	pcmuAPI, err := newAPI(pcmuCodec, pcmuPayloadType, se)
	if err != nil {
		return nil, err
	}
	return &Engine{
		api:        api,
		pcmuAPI:    pcmuAPI,
		iceServers: cfg.ICEServers,
		grace:      grace,
		complexity: cfg.OpusComplexity,
		logger:     logger,
		sessions:   make(map[*Session]struct{}),
	}, nil
}

// telephoneEventCodecs are RFC 4733 key presses at both clocks.
var telephoneEventCodecs = []webrtc.RTPCodecParameters{
	{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: mimeTypeTelephoneEvent, ClockRate: 8000, SDPFmtpLine: telephoneEventFmtp,
		},
		PayloadType: telephoneEvent8kPT,
	},
	{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: mimeTypeTelephoneEvent, ClockRate: 48000, SDPFmtpLine: telephoneEventFmtp,
		},
		PayloadType: telephoneEvent48kPT,
	},
}

// newAPI builds a pion API whose one audio codec is audio (on payload type
// pt unless the offer says otherwise), with our interceptors and settings.
// An Engine has one per codec rather than one with both: pion answers with
// every codec in common, so an offer with Opus and PCMU (WhatsApp's with
// additional_codecs, a browser's) would get both in the answer and the
// caller could send either.
func newAPI(audio webrtc.RTPCodecCapability, pt webrtc.PayloadType, se webrtc.SettingEngine) (*webrtc.API, error) {
	me, err := newMediaEngine(audio, pt)
	if err != nil {
		return nil, err
	}
	// RTCP sender and receiver reports only: pion's stats interceptor
	// (webrtc.ConfigureStatsInterceptor) feeds PeerConnection.GetStats,
	// which nothing here reads (the metrics come from Session.Stats), and
	// it costs a callback and a lock on every packet both ways.
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, fmt.Errorf("rtcp report interceptors: %w", err)
	}
	return webrtc.NewAPI(
		webrtc.WithMediaEngine(me),
		webrtc.WithInterceptorRegistry(reg),
		webrtc.WithSettingEngine(se),
	), nil
}

// newMediaEngine registers one audio codec and both telephone-event
// clocks, so that a browser's offer (telephone-event/48000 and /8000) and
// WhatsApp's offer (/8000) both match. telephone-event's fmtp ("0-15")
// never conflicts with an offer's: pion reads an event list as a parameter
// name without value, so "0-15" against "0-16" or no fmtp at all is still
// an exact match. Opus and PCMU are registered without fmtp (see opusCodec
// and pcmuCodec), so that any offer's is an exact match.
func newMediaEngine(audio webrtc.RTPCodecCapability, pt webrtc.PayloadType) (*webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	codecs := append([]webrtc.RTPCodecParameters{{RTPCodecCapability: audio, PayloadType: pt}}, telephoneEventCodecs...)
	for _, c := range codecs {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("register codec %s/%d: %w", c.MimeType, c.ClockRate, err)
		}
	}
	return me, nil
}

// newSettingEngine applies the ICE, DTLS and logging settings.
func newSettingEngine(cfg EngineConfig, opts engineOptions, logger *zap.Logger) (webrtc.SettingEngine, error) {
	var se webrtc.SettingEngine
	se.LoggerFactory = pionLoggerFactory{logger: logger.Named("pion")}

	// WhatsApp's offer says a=setup:actpass; the answer must say
	// a=setup:active (we are the DTLS client), which pion only does when told.
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient); err != nil {
		return se, fmt.Errorf("dtls role: %w", err)
	}
	// WhatsApp's side is ICE-lite. pion then takes the controlling role by
	// itself (PeerConnection.SetRemoteDescription: a lite remote and a full
	// local agent mean controlling), so nothing needs setting for that.

	// Resolve a browser's <uuid>.local candidates, but never publish our own
	// addresses as mDNS names: Meta needs real IPs.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeQueryOnly)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})

	if len(cfg.PublicIPs) > 0 {
		err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		})
		if err != nil {
			return se, fmt.Errorf("public ips: %w", err)
		}
	}
	if cfg.UDPMux != nil {
		se.SetICEUDPMux(cfg.UDPMux)
	}
	if d := opts.iceDisconnected; d > 0 {
		se.SetICETimeouts(d, 10*d, d/4)
	}
	if opts.remoteIPFilter != nil {
		se.SetRemoteIPFilter(opts.remoteIPFilter)
	}
	if len(cfg.Networks) > 0 {
		se.SetIPFilter(ipFilter(cfg.Networks))
		se.SetIncludeLoopbackCandidate(hasLoopback(cfg.Networks))
	}
	return se, nil
}

// ipFilter returns a pion IP filter that keeps addresses inside networks.
func ipFilter(networks []netip.Prefix) func(net.IP) bool {
	nets := append([]netip.Prefix(nil), networks...)
	return func(ip net.IP) bool {
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			return false
		}
		addr = addr.Unmap()
		for _, p := range nets {
			if p.Contains(addr) {
				return true
			}
		}
		return false
	}
}

// hasLoopback reports whether any prefix is a loopback network.
func hasLoopback(networks []netip.Prefix) bool {
	for _, p := range networks {
		if p.Addr().Unmap().IsLoopback() {
			return true
		}
	}
	return false
}

// muxBufferSize is the socket buffer size of the shared ICE UDP port. The
// kernel caps it at net.core.rmem_max / wmem_max.
const muxBufferSize = 4 << 20

// NewUDPMux listens on port on every local address (inside networks, if not
// empty; a loopback prefix includes loopback addresses) and returns one mux
// that carries the ICE traffic of all calls. Port 0 picks an ephemeral port
// per address. The caller owns the mux: pass it in EngineConfig.UDPMux and
// Close it after the Engine.
func NewUDPMux(port int, networks []netip.Prefix, logger *zap.Logger) (ice.UDPMux, error) {
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("udp mux port %d out of range", port)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	opts := []ice.UDPMuxFromPortOption{
		ice.UDPMuxFromPortWithLogger(pionLoggerFactory{logger: logger.Named("pion")}.NewLogger("udpmux")),
		ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6),
		// One socket carries every call: at 250 calls that is 12,500
		// packets a second, which the default buffer (about 208 KiB, some
		// 16 ms of traffic) drops under any scheduling hiccup.
		ice.UDPMuxFromPortWithReadBufferSize(muxBufferSize),
		ice.UDPMuxFromPortWithWriteBufferSize(muxBufferSize),
	}
	if len(networks) > 0 {
		opts = append(opts, ice.UDPMuxFromPortWithIPFilter(ipFilter(networks)))
		if hasLoopback(networks) {
			opts = append(opts, ice.UDPMuxFromPortWithLoopback())
		}
	}
	mux, err := ice.NewMultiUDPMuxFromPort(port, opts...)
	if err != nil {
		return nil, fmt.Errorf("udp mux on port %d: %w", port, err)
	}
	if len(mux.GetListenAddresses()) == 0 {
		_ = mux.Close()
		return nil, fmt.Errorf("udp mux on port %d: no local address in %v", port, networks)
	}
	return mux, nil
}

// Close closes every session still open on e and makes NewSession fail with
// ErrClosed. It does not close EngineConfig.UDPMux, which the caller owns.
// Close is idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	sessions := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		sessions = append(sessions, s)
	}
	e.mu.Unlock()
	var errs []error
	for _, s := range sessions {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// isClosed reports whether Close has been called.
func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// loggerOr returns logger, or e's logger if logger is nil.
func (e *Engine) loggerOr(logger *zap.Logger) *zap.Logger {
	if logger == nil {
		return e.logger
	}
	return logger
}

// register adds s to the live sessions, or fails if e is closed.
func (e *Engine) register(s *Session) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.sessions[s] = struct{}{}
	return nil
}

// unregister removes s from the live sessions.
func (e *Engine) unregister(s *Session) {
	e.mu.Lock()
	delete(e.sessions, s)
	e.mu.Unlock()
}

// complexityFor returns the encoder complexity for a bot sample rate.
func (e *Engine) complexityFor(rate int) int {
	if e.complexity >= 0 {
		return e.complexity
	}
	return defaultComplexity(rate)
}
