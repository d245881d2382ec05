// Package caller is a pion WebRTC peer that plays WhatsApp's side of a
// call: an ICE-lite offerer with Opus and telephone-event, as Meta's media
// servers are. Integration tests and the load tool use it to call the
// whatsapp_calls handler over loopback.
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
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Payload types offered, as in Chromium's and WhatsApp's offers.
const (
	OpusPT       = 111
	DTMFPT       = 126 // telephone-event/8000
	OpusClock    = 48000
	SamplesPer20 = 960
)

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("caller closed")

// Config configures a Caller.
type Config struct {
	// Lite makes the caller ICE-lite, like WhatsApp's media servers.
	// Default: false; set it true to play WhatsApp.
	Lite bool
	// OnAudio receives each RTP packet of the answerer's audio track. It
	// runs on the caller's read goroutine and must not block.
	OnAudio func(pkt *rtp.Packet)
}

// Caller is one call's offering peer.
type Caller struct {
	pc        *webrtc.PeerConnection
	track     *rawTrack
	connected chan struct{}
	failed    chan struct{}
	closed    atomic.Bool
	wg        sync.WaitGroup

	mu  sync.Mutex // orders sequence numbers and writes
	seq uint16
	ts  uint32

	received atomic.Uint64
}

// New builds a caller on loopback and creates its offer.
func New(cfg Config) (*Caller, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: OpusClock, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: OpusPT},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-16"}, PayloadType: DTMFPT},
	} {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("register codec: %w", err)
		}
	}
	var se webrtc.SettingEngine
	se.SetLite(cfg.Lite)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))

	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	c := &Caller{pc: pc, connected: make(chan struct{}), failed: make(chan struct{})}
	var connOnce, failOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			connOnce.Do(func() { close(c.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateDisconnected:
			failOnce.Do(func() { close(c.failed) })
		}
	})

	c.track = &rawTrack{}
	sender, err := pc.AddTrack(c.track)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("add track: %w", err)
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

	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if tr.Codec().MimeType != webrtc.MimeTypeOpus {
				continue
			}
			c.received.Add(1)
			if cfg.OnAudio != nil {
				cfg.OnAudio(pkt)
			}
		}
	})

	offer, err := pc.CreateOffer(nil)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		pc.Close()
		return nil, fmt.Errorf("set local description: %w", err)
	}
	<-gathered
	return c, nil
}

// Offer returns the offer SDP with every candidate.
func (c *Caller) Offer() string { return c.pc.LocalDescription().SDP }

// SetAnswer applies the answerer's SDP.
func (c *Caller) SetAnswer(sdp string) error {
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return fmt.Errorf("set answer: %w", err)
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
	c.seq++
	c.ts += SamplesPer20
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: OpusPT, SequenceNumber: c.seq, Timestamp: c.ts}, Payload: payload}
	return c.write(&pkt)
}

// SkipOpus advances the sequence number and timestamp as if one packet
// had been sent and lost.
func (c *Caller) SkipOpus() {
	c.mu.Lock()
	c.seq++
	c.ts += SamplesPer20
	c.mu.Unlock()
}

// SendDTMF sends one RFC 4733 key press: the event every 20 ms for
// duration, then three end packets, all with the key press's timestamp.
func (c *Caller) SendDTMF(ctx context.Context, digit byte, duration time.Duration) error {
	code, ok := dtmfCode(digit)
	if !ok {
		return fmt.Errorf("not a DTMF key: %q", digit)
	}
	c.mu.Lock()
	c.ts += SamplesPer20
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
	mu     sync.RWMutex
	ssrc   webrtc.SSRC
	writer webrtc.TrackLocalWriter
}

var errNotBound = errors.New("track not bound yet")

func (t *rawTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, codec := range ctx.CodecParameters() {
		if codec.MimeType == webrtc.MimeTypeOpus {
			t.mu.Lock()
			t.ssrc, t.writer = ctx.SSRC(), ctx.WriteStream()
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

func (t *rawTrack) ID() string                { return "audio" }
func (t *rawTrack) RID() string               { return "" }
func (t *rawTrack) StreamID() string          { return "whatsapp" }
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
	return err
}
