package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// udpBufferBytes is the socket buffer size of the floor's shared UDP port.
const udpBufferBytes = 4 << 20

// echoConfig configures the baseline echo target (-serve-echo).
type echoConfig struct {
	Listen        string
	GraphURL      string
	GraphVersion  string
	AccessToken   string
	AppSecret     string
	UDPPort       int
	SetupTimeout  time.Duration
	MaxBodyBytes  int64
	PCMU          bool           // answer PCMU (and telephone-event) instead of Opus
	Verbose       bool           // log each failed call
	Logger        *log.Logger    // start and stop lines; nil: none
	readyListener func(net.Addr) // for tests: called once listening
}

// echoServer is the transport floor: it answers WhatsApp calls as
// whatsapp_calls does (signed webhook, pion answer with a=setup:active,
// pre_accept, connected media, accept, terminate) but only sends every
// received RTP packet back, with no codec, bot or jitter buffer.
type echoServer struct {
	cfg   echoConfig
	api   *webrtc.API
	graph *whatsapp.Client
	ctx   context.Context // cancelled at shutdown

	mu     sync.Mutex
	calls  map[string]*echoCall
	closed bool
	wg     sync.WaitGroup // one per call goroutine

	answered, failed, echoed atomic.Uint64
}

// echoCall is one answered call. Its goroutine (echoServer.answer) owns it.
type echoCall struct {
	hangup     chan struct{} // closed by a terminate webhook
	hangupOnce sync.Once

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // the OnTrack read loop and the RTCP drain
}

func (c *echoCall) hangUp() { c.hangupOnce.Do(func() { close(c.hangup) }) }

// track adds the calling goroutine to the call's wait group, unless the
// call is closing.
func (c *echoCall) track() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// newEchoAPI builds the pion API of the floor with the same codecs,
// interceptors (RTCP reports, no stats) and DTLS role as the media package.
func newEchoAPI(mux ice.UDPMux, pcmu bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	// No Opus fmtp, as in the media package: pion drops Opus from the
	// answer when a registered fmtp disagrees with the offer's (WhatsApp's
	// minptime=20 against minptime=10). With pcmu, PCMU alone, as the
	// media package answers a PCMU passthrough call.
	audio := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}
	if pcmu {
		audio = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}
	}
	for _, c := range []webrtc.RTPCodecParameters{
		audio,
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-16"}, PayloadType: 126},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("register codec: %w", err)
		}
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, fmt.Errorf("rtcp reports: %w", err)
	}
	var se webrtc.SettingEngine
	// WhatsApp's offer says a=setup:actpass; answer a=setup:active.
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient); err != nil {
		return nil, fmt.Errorf("dtls role: %w", err)
	}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if mux != nil {
		se.SetICEUDPMux(mux)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// serveEcho runs the floor until ctx is done, then hangs up every call and
// returns once all are closed.
func serveEcho(ctx context.Context, cfg echoConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = log.New(io.Discard, "", 0)
	}
	var mux ice.UDPMux
	if cfg.UDPPort > 0 {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: cfg.UDPPort})
		if err != nil {
			return fmt.Errorf("-udp-port: %w", err)
		}
		// One socket carries every call: at 250 calls that is 12,500
		// packets/s in, which overflows the default receive buffer
		// (net.core.rmem_default, about 208 KiB) at the first scheduling
		// hiccup. The kernel caps this at net.core.rmem_max.
		if err := conn.SetReadBuffer(udpBufferBytes); err != nil {
			conn.Close()
			return fmt.Errorf("-udp-port: read buffer: %w", err)
		}
		if err := conn.SetWriteBuffer(udpBufferBytes); err != nil {
			conn.Close()
			return fmt.Errorf("-udp-port: write buffer: %w", err)
		}
		mux = webrtc.NewICEUDPMux(nil, conn)
		defer mux.Close()
	}
	api, err := newEchoAPI(mux, cfg.PCMU)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("-serve-echo: %w", err)
	}
	s := &echoServer{
		cfg: cfg, api: api, ctx: ctx, calls: map[string]*echoCall{},
		graph: &whatsapp.Client{BaseURL: cfg.GraphURL, Version: cfg.GraphVersion, AccessToken: cfg.AccessToken},
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1) // written once by the Serve goroutine
	go func() { served <- srv.Serve(ln) }()
	if cfg.readyListener != nil {
		cfg.readyListener(ln.Addr())
	}
	cfg.Logger.Printf("echo floor listening on http://%s (graph %s, udp port %d)", ln.Addr(), cfg.GraphURL, cfg.UDPPort)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if serveErr == nil {
		serveErr = <-served
	}
	s.mu.Lock()
	s.closed = true
	for _, c := range s.calls {
		c.hangUp()
	}
	s.mu.Unlock()
	s.wg.Wait()
	cfg.Logger.Printf("echo floor stopped: %d calls answered, %d failed, %d packets echoed", s.answered.Load(), s.failed.Load(), s.echoed.Load())
	if errors.Is(serveErr, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve: %w", serveErr)
}

// ServeHTTP takes webhook deliveries: it checks the signature on the raw
// body, parses, answers 200 at once and handles calls in the background.
func (s *echoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	switch err := whatsapp.VerifySignature([]byte(s.cfg.AppSecret), body, r.Header.Get("X-Hub-Signature-256")); {
	case errors.Is(err, whatsapp.ErrMissingSignature):
		http.Error(w, "missing signature", http.StatusUnauthorized)
		return
	case err != nil:
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	hook, err := whatsapp.ParseWebhook(body)
	if err != nil {
		http.Error(w, "malformed webhook", http.StatusBadRequest)
		return
	}
	for _, ev := range hook.CallEvents() {
		switch {
		case ev.Call.IsConnect() && ev.Call.Session != nil:
			s.start(ev)
		case ev.Call.IsTerminate():
			s.mu.Lock()
			if c, ok := s.calls[ev.Call.ID]; ok {
				c.hangUp()
			}
			s.mu.Unlock()
		}
	}
	w.WriteHeader(http.StatusOK)
}

// start registers a new call and answers it in the background; a call id
// already seen (a retried delivery) does nothing.
func (s *echoServer) start(ev whatsapp.CallEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if _, ok := s.calls[ev.Call.ID]; ok {
		return
	}
	c := &echoCall{hangup: make(chan struct{})}
	s.calls[ev.Call.ID] = c
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.calls, ev.Call.ID)
			s.mu.Unlock()
		}()
		if err := s.answer(c, ev); err != nil {
			s.failed.Add(1)
			if s.cfg.Verbose {
				s.cfg.Logger.Printf("call %s: %v", ev.Call.ID, err)
			}
		}
	}()
}

// answer runs one call from offer to hang-up.
func (s *echoServer) answer(c *echoCall, ev whatsapp.CallEvent) (err error) {
	id, phone := ev.Call.ID, ev.PhoneNumberID
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fmt.Errorf("new peer connection: %w", err)
	}
	defer func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		pc.Close()
		c.wg.Wait()
	}()
	accepted := false
	defer func() {
		if err != nil && !accepted {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
			defer cancel()
			if rerr := s.graph.Reject(rctx, phone, id); rerr != nil {
				err = fmt.Errorf("%w (and reject: %w)", err, rerr)
			}
		}
	}()

	connected, failed := make(chan struct{}), make(chan struct{})
	var connOnce, failOnce sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			connOnce.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateClosed:
			failOnce.Do(func() { close(failed) })
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: ev.Call.Session.SDP}); err != nil {
		return fmt.Errorf("set offer: %w", err)
	}
	capability := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	if s.cfg.PCMU {
		capability = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}
	}
	track, err := webrtc.NewTrackLocalStaticRTP(capability, "audio", "echo")
	if err != nil {
		return fmt.Errorf("new track: %w", err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		return fmt.Errorf("add track: %w", err)
	}
	c.track()
	go func() { // RTCP drain; ends when pc closes
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Codec().MimeType != capability.MimeType {
			return
		}
		// pion already runs OnTrack on its own goroutine: read here, but
		// let the call wait for this loop.
		if !c.track() {
			return
		}
		defer c.wg.Done()
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if track.WriteRTP(pkt) == nil {
				s.echoed.Add(1)
			}
		}
	})

	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("set answer: %w", err)
	}
	sctx, cancel := context.WithTimeout(s.ctx, s.cfg.SetupTimeout)
	defer cancel()
	select {
	case <-gathered:
	case <-sctx.Done():
		return fmt.Errorf("gather candidates: %w", sctx.Err())
	}
	sdp := pc.LocalDescription().SDP
	if err := s.graph.PreAccept(sctx, phone, id, sdp); err != nil {
		return err
	}
	select {
	case <-connected:
	case <-failed:
		return errors.New("media failed before connecting")
	case <-c.hangup:
		return errors.New("terminated before media connected")
	case <-sctx.Done():
		return fmt.Errorf("media not connected: %w", sctx.Err())
	}
	if err := s.graph.Accept(sctx, phone, id, sdp, ""); err != nil {
		return err
	}
	accepted = true
	s.answered.Add(1)
	select {
	case <-c.hangup: // terminate webhook or shutdown
	case <-s.ctx.Done():
	case <-failed:
		tctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
		defer cancel()
		if err := s.graph.Terminate(tctx, phone, id); err != nil {
			return fmt.Errorf("media failed; terminate: %w", err)
		}
		return errors.New("media failed")
	}
	return nil
}
