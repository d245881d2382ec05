// Package caller is a pion WebRTC peer that plays WhatsApp's side of a
// call. Integration tests, the load tool and media tests use it to call the
// whatsapp_calls handler over loopback.
//
// By default (Shape Meta) it behaves as Meta's media servers do: an
// ICE-lite offerer whose offer is Meta's captured offer (CapturedOffer)
// with only this peer's address, candidates, ICE credentials, fingerprint
// and SSRC put in; it offers a=setup:actpass, so against an answer that
// says a=setup:active it is the DTLS server; it sends Opus from 16 kHz
// audio at 20 kbit/s (SendPCM, Encoder), RTCP sender reports, and DTMF as
// RFC 4733 telephone-event/8000 on payload type 126 (SendDTMF).
package caller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Payload types offered, as in WhatsApp's (and Chromium's) offers.
const (
	OpusPT       = 111
	DTMFPT       = 126 // telephone-event/8000
	OpusClock    = 48000
	SamplesPer20 = 960
	// PCMUPT is G.711 mu-law's static payload type (RFC 3551), as a
	// PCMU-offering caller (Config.PCMU) offers it.
	PCMUPT = 0
	// PCMUClock is PCMU's RTP clock and sample rate.
	PCMUClock = 8000
	// PCMUFrame is one 20 ms PCMU packet: 160 samples, one byte each.
	PCMUFrame = PCMUClock / 50
)

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("caller closed")

// Shape selects what a Caller offers and how it behaves.
type Shape int

const (
	// Meta is WhatsApp's side as Meta runs it: the default. The offer is
	// CapturedOffer with this peer's reachability put in (Opus 111 with
	// MetaOpusFmtp, telephone-event/8000 126, a=ptime:20, a=maxptime:20,
	// a=setup:actpass, a=mid:audio, ssrc and cname lines, host candidates
	// on one port); the agent is ICE-lite; RTCP sender and receiver
	// reports are sent.
	Meta Shape = iota
	// Pion is pion's own offer, as the first release's tests used: Opus
	// with minptime=10;useinbandfec=1, mid 0, a full ICE agent unless
	// Config.Lite, no RTCP reports. It does not look like WhatsApp; keep it
	// for comparisons and for tests that need a full ICE agent.
	Pion
)

// String returns the shape's name as the load tool's -caller flag spells it.
func (s Shape) String() string {
	switch s {
	case Meta:
		return "meta"
	case Pion:
		return "pion"
	}
	return fmt.Sprintf("shape(%d)", int(s))
}

// ParseShape returns the Shape named s ("meta" or "pion").
func ParseShape(s string) (Shape, error) {
	switch s {
	case "meta":
		return Meta, nil
	case "pion":
		return Pion, nil
	}
	return 0, fmt.Errorf("caller shape %q: want meta or pion", s)
}

// Config configures a Caller. The zero value is a Meta-shaped caller on
// IPv4 loopback.
type Config struct {
	// Shape selects the offer and behaviour. Default: Meta.
	Shape Shape
	// Lite makes a Pion-shaped caller ICE-lite. A Meta-shaped caller is
	// always ICE-lite, as WhatsApp's media servers are.
	Lite bool
	// IPv6 adds a host candidate on ::1, on the same port as the IPv4 one,
	// as Meta offers an IPv4 and an IPv6 address on one port. Meta shape
	// only; New fails if ::1 is not available.
	IPv6 bool
	// PCMU adds G.711 mu-law to a Meta-shaped offer as an additional codec,
	// as WhatsApp offers it with the number setting
	// calling.audio.additional_codecs: payload type 0 after Opus on the m=
	// line and "a=rtpmap:0 PCMU/8000". If the answer picks PCMU, the caller
	// sends PCMU (SendPCMU) and its RTP clock is 8 kHz. Meta shape only.
	PCMU bool
	// OnAudio receives each RTP packet of the answerer's audio track. It
	// runs on the caller's read goroutine and must not block.
	OnAudio func(pkt *rtp.Packet)
}

// Caller is one call's offering peer.
type Caller struct {
	pc        *webrtc.PeerConnection
	track     *rawTrack
	offer     string
	mux       ice.UDPMux // owned; nil unless Config.IPv6
	connected chan struct{}
	failed    chan struct{}
	closed    atomic.Bool
	wg        sync.WaitGroup

	mu         sync.Mutex // orders sequence numbers and writes
	seq        uint16
	ts         uint32
	frameTicks uint32   // one 20 ms frame on the audio codec's RTP clock; guarded by mu
	enc        *Encoder // SendPCM's, made on first use; guarded by mu

	received atomic.Uint64
}

// New builds a caller on loopback and creates its offer, with every
// candidate gathered.
func New(cfg Config) (*Caller, error) {
	if cfg.Shape != Meta && cfg.Shape != Pion {
		return nil, fmt.Errorf("caller shape %d unknown", int(cfg.Shape))
	}
	if cfg.IPv6 && cfg.Shape != Meta {
		return nil, errors.New("caller: IPv6 needs the Meta shape")
	}
	if cfg.PCMU && cfg.Shape != Meta {
		return nil, errors.New("caller: PCMU needs the Meta shape")
	}
	return newCaller(cfg, (*Caller).setup)
}

// newCaller builds a Caller's API and PeerConnection and runs describe (the
// offer or the answer) on it; on error everything is closed.
func newCaller(cfg Config, describe func(*Caller, Config) error) (*Caller, error) {
	api, mux, err := newAPI(cfg)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		closeMux(mux)
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	c := &Caller{pc: pc, mux: mux, connected: make(chan struct{}), failed: make(chan struct{}), frameTicks: SamplesPer20}
	if err := describe(c, cfg); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// completeLocal sets desc as the local description, waits for ICE
// gathering to finish and returns the local SDP with every candidate.
func (c *Caller) completeLocal(desc webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(desc); err != nil {
		return "", fmt.Errorf("set local description: %w", err)
	}
	<-gathered
	return c.pc.LocalDescription().SDP, nil
}

// newAPI builds the pion API of one caller: its codecs, interceptors and
// ICE settings, and the single-port mux it owns when cfg.IPv6 is set.
func newAPI(cfg Config) (*webrtc.API, ice.UDPMux, error) {
	opus := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: OpusClock, Channels: 2}
	dtmf := webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000}
	if cfg.Shape == Meta {
		// No fmtp of our own: the offer's text carries Meta's, and pion
		// would drop Opus from an answer whose fmtp disagrees with a
		// registered one (see the media package's opusCodec).
		opus.RTCPFeedback = []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}}
	} else {
		opus.SDPFmtpLine = "minptime=10;useinbandfec=1"
		dtmf.SDPFmtpLine = "0-16"
	}
	m := &webrtc.MediaEngine{}
	codecs := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: opus, PayloadType: OpusPT},
		{RTPCodecCapability: dtmf, PayloadType: DTMFPT},
	}
	if cfg.PCMU {
		codecs = append(codecs, webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: PCMUClock},
			PayloadType:        PCMUPT,
		})
	}
	for _, c := range codecs {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, nil, fmt.Errorf("register codec: %w", err)
		}
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	opts := []func(*webrtc.API){webrtc.WithMediaEngine(m)}
	var mux ice.UDPMux
	if cfg.Shape == Meta {
		se.SetLite(true)
		// Answering our offer (a business-initiated call), WhatsApp says
		// a=setup:active: it is the DTLS client.
		if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient); err != nil {
			return nil, nil, fmt.Errorf("dtls role: %w", err)
		}
		reg := &interceptor.Registry{}
		if err := webrtc.ConfigureRTCPReports(reg); err != nil {
			return nil, nil, fmt.Errorf("rtcp reports: %w", err)
		}
		opts = append(opts, webrtc.WithInterceptorRegistry(reg))
	} else {
		se.SetLite(cfg.Lite)
	}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if cfg.IPv6 {
		var err error
		if mux, err = dualStackMux(); err != nil {
			return nil, nil, err
		}
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
		se.SetICEUDPMux(mux)
	}
	opts = append(opts, webrtc.WithSettingEngine(se))
	return webrtc.NewAPI(opts...), mux, nil
}

// dualStackMux listens on 127.0.0.1 and on ::1 with one port number.
func dualStackMux() (ice.UDPMux, error) {
	c4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("listen udp4 loopback: %w", err)
	}
	port := c4.LocalAddr().(*net.UDPAddr).Port
	c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback, Port: port})
	if err != nil {
		_ = c4.Close()
		return nil, fmt.Errorf("listen udp6 [::1]:%d: %w", port, err)
	}
	return ice.NewMultiUDPMuxDefault(
		ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: c4}),
		ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: c6}),
	), nil
}

func closeMux(mux ice.UDPMux) {
	if mux != nil {
		_ = mux.Close()
	}
}

// setup adds the track and its RTCP reader, and makes the offer.
func (c *Caller) setup(cfg Config) error {
	if err := c.wire(cfg, true); err != nil {
		return err
	}
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	local, err := c.completeLocal(offer)
	if err != nil {
		return err
	}
	if cfg.Shape != Meta {
		c.offer = local
		return nil
	}
	p, err := paramsFromLocal(local)
	if err != nil {
		return fmt.Errorf("meta offer: %w", err)
	}
	if cfg.IPv6 && !p.ipv6.IsValid() {
		return errors.New("meta offer: no ipv6 host candidate gathered")
	}
	c.offer = metaOffer(p)
	if cfg.PCMU {
		c.offer = withPCMU(c.offer)
	}
	return nil
}

// wire sets the state callbacks, adds the audio track (with Meta's mid
// when offering in the Meta shape) and its RTCP reader, and reads the
// remote audio.
func (c *Caller) wire(cfg Config, offering bool) error {
	var connOnce, failOnce sync.Once
	c.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			connOnce.Do(func() { close(c.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateDisconnected:
			failOnce.Do(func() { close(c.failed) })
		}
	})

	c.track = &rawTrack{id: "audio", streamID: "whatsapp"}
	if cfg.Shape == Meta {
		c.track.id, c.track.streamID = metaTrackID, metaStreamID
	}
	sender, err := c.pc.AddTrack(c.track)
	if err != nil {
		return fmt.Errorf("add track: %w", err)
	}
	if cfg.Shape == Meta && offering {
		for _, tr := range c.pc.GetTransceivers() {
			if tr.Sender() == sender {
				if err := tr.SetMid(metaMid); err != nil {
					return fmt.Errorf("set mid: %w", err)
				}
			}
		}
	}
	c.wg.Add(1)
	go func() { // RTCP drain: the owner is Close, which closes pc.
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()

	c.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if mt := tr.Codec().MimeType; mt != webrtc.MimeTypeOpus && mt != webrtc.MimeTypePCMU {
				continue
			}
			c.received.Add(1)
			if cfg.OnAudio != nil {
				cfg.OnAudio(pkt)
			}
		}
	})

	return nil
}

// Offer returns the offer SDP with every candidate.
func (c *Caller) Offer() string { return c.offer }

// SetAnswer applies the answerer's SDP.
func (c *Caller) SetAnswer(sdp string) error {
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return fmt.Errorf("set answer: %w", err)
	}
	if c.Codec() == webrtc.MimeTypePCMU {
		c.mu.Lock()
		c.frameTicks = PCMUFrame
		c.mu.Unlock()
	}
	return nil
}

// WaitConnected waits until ICE and DTLS are connected.
func (c *Caller) WaitConnected(ctx context.Context) error {
	select {
	case <-c.connected:
		return nil
	case <-c.failed:
		return errors.New("caller connection failed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Failed is closed when the connection fails, disconnects or closes.
func (c *Caller) Failed() <-chan struct{} { return c.failed }

// Received returns the number of audio packets received.
func (c *Caller) Received() uint64 { return c.received.Load() }

// SendOpus sends one 20 ms Opus packet. The caller paces calls.
func (c *Caller) SendOpus(payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sendOpusLocked(payload)
}

// sendOpusLocked sends one Opus packet; c.mu must be held.
func (c *Caller) sendOpusLocked(payload []byte) error {
	c.seq++
	c.ts += c.frameTicks
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: OpusPT, SequenceNumber: c.seq, Timestamp: c.ts}, Payload: payload}
	return c.write(&pkt)
}

// SendPCM encodes one 20 ms frame of 16 kHz mono audio (MetaFrameSamples
// samples) as the Meta-shaped peer sends it (see Encoder) and sends it. The
// caller paces calls.
func (c *Caller) SendPCM(pcm []int16) error {
	c.mu.Lock()
	if c.enc == nil {
		enc, err := NewEncoder()
		if err != nil {
			c.mu.Unlock()
			return err
		}
		c.enc = enc
	}
	defer c.mu.Unlock()
	payload, err := c.enc.Encode(pcm)
	if err != nil {
		return err
	}
	return c.sendOpusLocked(payload)
}

// SendPCMU sends one 20 ms PCMU packet (160 mu-law bytes) with the
// negotiated payload type 0. The caller paces calls.
func (c *Caller) SendPCMU(payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.ts += c.frameTicks
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: PCMUPT, SequenceNumber: c.seq, Timestamp: c.ts}, Payload: payload}
	return c.write(&pkt)
}

// Codec returns the MIME type of the audio codec the answer chose
// (webrtc.MimeTypeOpus or webrtc.MimeTypePCMU), or "" before SetAnswer.
func (c *Caller) Codec() string {
	c.track.mu.RLock()
	defer c.track.mu.RUnlock()
	return c.track.codec
}

// SendDTMF sends one RFC 4733 key press: the event every 20 ms for
// duration, then three end packets, all with the key press's timestamp.
func (c *Caller) SendDTMF(ctx context.Context, digit byte, duration time.Duration) error {
	code, ok := dtmfCode(digit)
	if !ok {
		return fmt.Errorf("not a DTMF key: %q", digit)
	}
	c.mu.Lock()
	c.ts += c.frameTicks
	start := c.ts
	c.mu.Unlock()
	const clock = 8000
	total := uint16(duration.Seconds() * clock)
	step := uint16(clock / 50)
	var d uint16
	for first := true; ; first = false {
		d += step
		end := d >= total
		if end {
			d = total
		}
		n := 1
		if end {
			n = 3
		}
		for range n {
			c.mu.Lock()
			c.seq++
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: DTMFPT, SequenceNumber: c.seq, Timestamp: start, Marker: first},
				Payload: []byte{code, endBit(end) | 10, byte(d >> 8), byte(d)}}
			err := c.write(&pkt) // under the lock: sequence numbers leave in order
			c.mu.Unlock()
			if err != nil {
				return err
			}
		}
		if end {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func endBit(end bool) byte {
	if end {
		return 0x80
	}
	return 0
}

func dtmfCode(d byte) (byte, bool) {
	switch {
	case d >= '0' && d <= '9':
		return d - '0', true
	case d == '*':
		return 10, true
	case d == '#':
		return 11, true
	case d >= 'A' && d <= 'D':
		return 12 + d - 'A', true
	}
	return 0, false
}

func (c *Caller) write(pkt *rtp.Packet) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := c.track.writeRTP(pkt); err != nil {
		return fmt.Errorf("write rtp: %w", err)
	}
	return nil
}

// rawTrack is a local audio track that keeps each packet's payload type,
// so that Opus and telephone-event share one SSRC as in a real call.
// (pion's TrackLocalStaticRTP rewrites every packet to the Opus type.)
type rawTrack struct {
	id, streamID string

	mu     sync.RWMutex
	ssrc   webrtc.SSRC
	writer webrtc.TrackLocalWriter
	codec  string // the bound audio codec's MIME type
}

var errNotBound = errors.New("track not bound yet")

func (t *rawTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, codec := range ctx.CodecParameters() {
		if codec.MimeType == webrtc.MimeTypeOpus || codec.MimeType == webrtc.MimeTypePCMU {
			t.mu.Lock()
			t.ssrc, t.writer, t.codec = ctx.SSRC(), ctx.WriteStream(), codec.MimeType
			t.mu.Unlock()
			return codec, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

func (t *rawTrack) Unbind(webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.writer = nil
	t.mu.Unlock()
	return nil
}

func (t *rawTrack) ID() string                { return t.id }
func (t *rawTrack) RID() string               { return "" }
func (t *rawTrack) StreamID() string          { return t.streamID }
func (t *rawTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }

func (t *rawTrack) writeRTP(pkt *rtp.Packet) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.writer == nil {
		return errNotBound
	}
	pkt.SSRC = uint32(t.ssrc)
	_, err := t.writer.WriteRTP(&pkt.Header, pkt.Payload)
	return err
}

// Close hangs up the peer connection and waits for the caller's goroutines.
func (c *Caller) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := c.pc.Close()
	c.wg.Wait()
	closeMux(c.mux)
	return err
}
