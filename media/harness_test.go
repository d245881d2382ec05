package media

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/thesyncim/gopus"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	wacaller "github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// This file holds the test harness: a pion "WhatsApp side" caller, test bots
// that speak each dialect by hand, and helpers. The tests are in
// session_test.go.

const (
	testTimeout = 15 * time.Second
	testGrace   = 300 * time.Millisecond
	callerRate  = 48000
	callerFrame = callerRate / 50
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// leakCheck makes t fail if goroutines are left once every cleanup has run.
// Call it first, so that its cleanup runs last.
func leakCheck(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// testContext returns a context that ends with the test's timeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newTestEngine returns a loopback Engine closed at cleanup.
func newTestEngine(t *testing.T, mutate func(*EngineConfig)) *Engine {
	t.Helper()
	return newTestEngineOpts(t, mutate, engineOptions{})
}

func newTestEngineOpts(t *testing.T, mutate func(*EngineConfig), opts engineOptions) *Engine {
	t.Helper()
	cfg := EngineConfig{
		Networks:        loopback,
		DisconnectGrace: testGrace,
		OpusComplexity:  -1,
		Logger:          zap.NewNop(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := newEngine(cfg, opts)
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Engine.Close: %v", err)
		}
	})
	return e
}

// ---------------------------------------------------------------------------
// The caller: a pion peer that behaves like WhatsApp's media side.

// callerConfig shapes the caller's offer.
type callerConfig struct {
	tePT     uint8  // telephone-event payload type; 0 means none offered
	teClock  uint32 // telephone-event clock, 8000 or 48000
	pcmuOnly bool   // offer PCMU only (no Opus)
	cuttable bool   // run ICE over a socket that cut() silences
}

// caller is the "WhatsApp side": an ICE-lite offerer on loopback with an Opus
// track it writes raw RTP to (so that telephone-event can share its SSRC), and
// a decoder for what it receives.
type caller struct {
	t     *testing.T
	cfg   callerConfig
	pc    *webrtc.PeerConnection
	track *rawTrack
	offer string
	enc   *gopus.Encoder

	connected chan struct{}
	connOnce  sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
	sock      *cutConn   // cuttable callers only
	mux       ice.UDPMux // cuttable callers only

	mu       sync.Mutex
	closing  bool
	closed   bool
	seq      uint16
	ts       uint32
	rx       []int16 // everything received, decoded at 48 kHz
	rxFrames int
}

// rawTrack is a TrackLocal written with raw RTP headers, so that packets of
// another payload type (telephone-event) can share the Opus SSRC.
type rawTrack struct {
	mu    sync.Mutex
	ws    webrtc.TrackLocalWriter
	ssrc  webrtc.SSRC
	pt    uint8
	bound chan struct{}
	once  sync.Once
}

func (r *rawTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus) {
			r.mu.Lock()
			r.ws, r.ssrc, r.pt = ctx.WriteStream(), ctx.SSRC(), uint8(c.PayloadType)
			r.mu.Unlock()
			r.once.Do(func() { close(r.bound) })
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

func (r *rawTrack) Unbind(webrtc.TrackLocalContext) error {
	r.mu.Lock()
	r.ws = nil
	r.mu.Unlock()
	return nil
}

func (r *rawTrack) ID() string                { return "caller-audio" }
func (r *rawTrack) RID() string               { return "" }
func (r *rawTrack) StreamID() string          { return "caller" }
func (r *rawTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }

func (r *rawTrack) write(h *rtp.Header, payload []byte, opus bool) error {
	r.mu.Lock()
	ws, ssrc, pt := r.ws, r.ssrc, r.pt
	r.mu.Unlock()
	if ws == nil {
		return errors.New("track not bound")
	}
	h.SSRC = uint32(ssrc)
	if opus {
		h.PayloadType = pt
	}
	_, err := ws.WriteRTP(h, payload)
	return err
}

// newCaller builds the caller and its complete offer.
func newCaller(t *testing.T, cfg callerConfig) *caller {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if cfg.pcmuOnly {
		must(t, me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1},
			PayloadType:        0,
		}, webrtc.RTPCodecTypeAudio))
	} else {
		must(t, me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				// No fmtp registered: the offer gets Meta's (below), and
				// pion would drop Opus from an answer whose fmtp disagrees.
				MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			},
			PayloadType: 111,
		}, webrtc.RTPCodecTypeAudio))
	}
	if cfg.tePT != 0 {
		must(t, me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: cfg.teClock, SDPFmtpLine: "0-15"},
			PayloadType:        webrtc.PayloadType(cfg.tePT),
		}, webrtc.RTPCodecTypeAudio))
	}
	var se webrtc.SettingEngine
	se.SetLite(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.LoggerFactory = pionLoggerFactory{logger: zap.NewNop()}
	var sock *cutConn
	var mux ice.UDPMux
	if cfg.cuttable {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		sock = &cutConn{PacketConn: conn}
		mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: sock})
		se.SetICEUDPMux(mux)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))

	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("caller NewPeerConnection: %v", err)
	}
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: callerRate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		t.Fatal(err)
	}
	c := &caller{
		t:         t,
		cfg:       cfg,
		pc:        pc,
		track:     &rawTrack{bound: make(chan struct{})},
		enc:       enc,
		connected: make(chan struct{}),
		stop:      make(chan struct{}),
		sock:      sock,
		mux:       mux,
		seq:       uint16(1000),
		ts:        123456,
	}
	t.Cleanup(c.close)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			c.connOnce.Do(func() { close(c.connected) })
		}
	})
	pc.OnTrack(c.onTrack)
	if _, err := pc.AddTrack(c.track); err != nil {
		t.Fatalf("caller AddTrack: %v", err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatalf("caller CreateOffer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatalf("caller SetLocalDescription: %v", err)
	}
	select {
	case <-gathered:
	case <-time.After(testTimeout):
		t.Fatal("caller gathering timed out")
	}
	c.offer = pc.LocalDescription().SDP
	if !cfg.pcmuOnly {
		// Meta's Opus parameters (PROTOCOLS.md), as WhatsApp offers them.
		metaOffer, err := setOpusFmtp(c.offer, wacaller.MetaOpusFmtp)
		if err != nil {
			t.Fatal(err)
		}
		c.offer = strings.Replace(metaOffer, "a=fmtp:111 "+wacaller.MetaOpusFmtp+"\r\n",
			"a=fmtp:111 "+wacaller.MetaOpusFmtp+"\r\na=maxptime:20\r\na=ptime:20\r\n", 1)
	}
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// accept applies our answer.
func (c *caller) accept(answer string) {
	c.t.Helper()
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		c.t.Fatalf("caller SetRemoteDescription(answer): %v", err)
	}
}

func (c *caller) waitConnected(ctx context.Context) {
	c.t.Helper()
	select {
	case <-c.connected:
	case <-ctx.Done():
		c.t.Fatal("caller never connected")
	}
}

// onTrack decodes everything we send to the caller.
func (c *caller) onTrack(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()

	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(callerRate, 1))
	if err != nil {
		c.t.Error(err)
		return
	}
	pcm := make([]int16, 5760)
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		n, err := dec.DecodeInt16(pkt.Payload, pcm)
		if err != nil {
			c.t.Errorf("caller decode: %v", err)
			return
		}
		c.mu.Lock()
		if len(c.rx) < 60*callerRate {
			c.rx = append(c.rx, pcm[:n]...)
		}
		c.rxFrames++
		c.mu.Unlock()
	}
}

// received returns a copy of the audio received from index from on.
func (c *caller) received(from int) []int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if from > len(c.rx) {
		return nil
	}
	return append([]int16(nil), c.rx[from:]...)
}

// receivedLen returns how many samples have been received.
func (c *caller) receivedLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rx)
}

// writePacket sends one RTP packet on the shared sequence; opus packets
// advance the timestamp by one frame after being sent.
// The lock covers the write too, so that the tone and DTMF goroutines never
// put sequence numbers on the wire out of order (which reads as loss).
func (c *caller) writePacket(payload []byte, pt uint8, ts uint32, opus bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: c.seq, Timestamp: ts}
	c.seq++
	return c.track.write(&h, payload, opus)
}

// sendTone sends a tone as 20 ms Opus packets, paced in real time, until the
// caller closes.
func (c *caller) sendTone(freq, amp float64) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		select {
		case <-c.track.bound:
		case <-c.stop:
			return
		}
		buf := make([]byte, 1500)
		ticker := time.NewTicker(20 * time.Millisecond)
		defer ticker.Stop()
		for i := 0; ; i++ {
			n, err := c.enc.EncodeInt16(tone(callerRate, callerFrame, i*callerFrame, freq, amp), buf)
			if err != nil {
				c.t.Errorf("caller encode: %v", err)
				return
			}
			c.mu.Lock()
			ts := c.ts
			c.ts += callerFrame
			c.mu.Unlock()
			_ = c.writePacket(buf[:n], 0, ts, true)
			select {
			case <-c.stop:
				return
			case <-ticker.C:
			}
		}
	}()
}

// clock returns the caller's RTP timestamp: it advances by callerFrame for
// each audio frame sent, so the difference of two readings counts the
// frames the caller really sent between them (its sender can fall behind
// its ticker on a loaded machine).
func (c *caller) clock() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ts
}

// sendDTMF sends each digit as RFC 4733 events: five updates 20 ms apart,
// then the end packet three times, each event stamped with the audio clock.
func (c *caller) sendDTMF(ctx context.Context, digits string) {
	c.t.Helper()
	codes := map[rune]uint8{'*': 10, '#': 11, 'A': 12, 'B': 13, 'C': 14, 'D': 15}
	step := uint16(c.cfg.teClock / 50) // 20 ms of duration per update
	for _, d := range digits {
		code, ok := codes[d]
		if !ok {
			code = uint8(d - '0')
		}
		c.mu.Lock()
		ts := c.ts // an event is stamped with the time it started
		c.mu.Unlock()
		for i := 1; i <= 8; i++ {
			end := i > 5
			dur := step * uint16(min(i, 5))
			p := []byte{code, 10, 0, 0}
			if end {
				p[1] |= 0x80
			}
			binary.BigEndian.PutUint16(p[2:], dur)
			if err := c.writePacket(p, c.cfg.tePT, ts, false); err != nil {
				c.t.Fatalf("send dtmf: %v", err)
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				c.t.Fatal("send dtmf timed out")
			}
		}
	}
}

// close stops sending, closes the PeerConnection and waits for the caller's
// goroutines. It is idempotent.
func (c *caller) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed, c.closing = true, true
	c.mu.Unlock()
	close(c.stop)
	if err := c.pc.Close(); err != nil {
		c.t.Errorf("caller Close: %v", err)
	}
	c.wg.Wait()
	if c.mux != nil {
		_ = c.mux.Close()
	}
}

// cut makes the caller vanish from the network without a goodbye: its socket
// silently drops everything from now on.
func (c *caller) cut() {
	c.t.Helper()
	if c.sock == nil {
		c.t.Fatal("cut on a caller without cuttable")
	}
	c.sock.cut.Store(true)
}

// cutConn is a PacketConn that can be silenced.
type cutConn struct {
	net.PacketConn
	cut atomic.Bool
}

func (c *cutConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.cut.Load() {
			return n, addr, err
		}
	}
}

func (c *cutConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.cut.Load() {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

// ---------------------------------------------------------------------------
// Test bots: WebSocket servers that speak each dialect, written by hand from
// PROTOCOLS.md, so that they check the wire format independently of package
// bot.

// testBot is an httptest WebSocket server that hands out one botSide per
// accepted connection.
type testBot struct {
	t        *testing.T
	protocol bot.Protocol
	rate     int
	srv      *httptest.Server
	conns    chan *botSide

	mu  sync.Mutex
	all []*botSide
}

func newTestBot(t *testing.T, protocol bot.Protocol, rate int) *testBot {
	t.Helper()
	tb := &testBot{t: t, protocol: protocol, rate: rate, conns: make(chan *botSide, 8)}
	tb.srv = httptest.NewServer(http.HandlerFunc(tb.serve))
	t.Cleanup(func() {
		tb.mu.Lock()
		for _, b := range tb.all {
			_ = b.ws.CloseNow()
		}
		tb.mu.Unlock()
		tb.srv.Close()
	})
	return tb
}

func (tb *testBot) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(1 << 20)
	b := &botSide{
		ws:       ws,
		protocol: tb.protocol,
		rate:     tb.rate,
		notify:   make(chan struct{}, 1),
		closed:   make(chan struct{}),
		query:    r.URL.RawQuery,
	}
	tb.mu.Lock()
	tb.all = append(tb.all, b)
	tb.mu.Unlock()
	select {
	case tb.conns <- b:
	default:
	}
	b.readLoop()
}

// config returns a bot.Config that dials this bot.
func (tb *testBot) config() bot.Config {
	return bot.Config{
		URL:        "ws" + strings.TrimPrefix(tb.srv.URL, "http") + "/bot",
		Protocol:   tb.protocol,
		SampleRate: tb.rate,
		Call: bot.CallInfo{
			CallID: "wacid.TEST", From: "15551234567", To: "15550001111", PhoneNumberID: "106540352242922", CallerName: "Jane",
		},
		DialTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	}
}

// accepted returns the next connection the bot accepted.
func (tb *testBot) accepted(ctx context.Context) *botSide {
	tb.t.Helper()
	select {
	case b := <-tb.conns:
		return b
	case <-ctx.Done():
		tb.t.Fatal("the bot was never dialed")
		return nil
	}
}

// botMsg is one text message received by a test bot; the fields cover both
// dialects.
type botMsg struct {
	at             time.Time
	Event          string          `json:"event"`
	Protocol       string          `json:"protocol"`
	SequenceNumber string          `json:"sequenceNumber"`
	StreamSid      string          `json:"streamSid"`
	Start          *twilioStart    `json:"start"`
	Media          *twilioMedia    `json:"media"`
	Dtmf           *twilioDTMF     `json:"dtmf"`
	Mark           *twilioMark     `json:"mark"`
	Stop           json.RawMessage `json:"stop"`
	ContentType    string          `json:"content-type"`
	Digit          string          `json:"digit"`
	Duration       *int            `json:"duration"`
	Payload        json.RawMessage `json:"payload"`
	WhatsAppCallID string          `json:"whatsapp_call_id"`
}

type twilioStart struct {
	StreamSid        string            `json:"streamSid"`
	CallSid          string            `json:"callSid"`
	AccountSid       string            `json:"accountSid"`
	Tracks           []string          `json:"tracks"`
	CustomParameters map[string]string `json:"customParameters"`
	MediaFormat      struct {
		Encoding   string `json:"encoding"`
		SampleRate int    `json:"sampleRate"`
		Channels   int    `json:"channels"`
	} `json:"mediaFormat"`
}

type twilioMedia struct {
	Track     string `json:"track"`
	Chunk     string `json:"chunk"`
	Timestamp string `json:"timestamp"`
	Payload   string `json:"payload"`
}

type twilioDTMF struct {
	Track string `json:"track"`
	Digit string `json:"digit"`
}

type twilioMark struct {
	Name string `json:"name"`
}

// botSide is the bot's end of one call.
type botSide struct {
	ws       *websocket.Conn
	protocol bot.Protocol
	rate     int
	query    string
	notify   chan struct{} // size 1: something arrived
	closed   chan struct{} // the connection ended

	mu          sync.Mutex
	msgs        []botMsg // text messages other than media, in order
	audio       []int16  // all audio received
	audioMsgs   int
	nextSeq     int // twilio: expected sequenceNumber
	nextChunk   int // twilio: expected media chunk
	tsOffset    int // twilio: timestamp of chunk 1
	streamSid   string
	wireErrs    []string
	closeStatus websocket.StatusCode
}

func (b *botSide) readLoop() {
	defer close(b.closed)
	for {
		typ, data, err := b.ws.Read(context.Background())
		if err != nil {
			b.mu.Lock()
			b.closeStatus = websocket.CloseStatus(err)
			b.mu.Unlock()
			b.ping()
			return
		}
		b.mu.Lock()
		b.handle(typ, data)
		b.mu.Unlock()
		b.ping()
	}
}

func (b *botSide) ping() {
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// handle checks and records one message. b.mu is held.
func (b *botSide) handle(typ websocket.MessageType, data []byte) {
	wrong := func(format string, args ...any) { b.wireErrs = append(b.wireErrs, fmt.Sprintf(format, args...)) }
	if typ == websocket.MessageBinary {
		if b.protocol != bot.Vonage {
			wrong("binary frame in the %s dialect", b.protocol)
			return
		}
		if len(b.msgs) == 0 {
			wrong("audio before websocket:connected")
		}
		if want := b.rate / 50 * 2; len(data) != want {
			wrong("binary frame of %d bytes; want %d", len(data), want)
		}
		for i := 0; i+1 < len(data); i += 2 {
			b.audio = append(b.audio, int16(binary.LittleEndian.Uint16(data[i:])))
		}
		b.audioMsgs++
		return
	}
	var m botMsg
	if err := json.Unmarshal(data, &m); err != nil {
		wrong("invalid JSON %q: %v", data, err)
		return
	}
	m.at = time.Now()
	switch b.protocol {
	case bot.Twilio:
		b.checkTwilio(&m, wrong)
		if m.Event == "media" {
			return
		}
	case bot.Vonage:
		if len(b.msgs) == 0 {
			if m.Event != "websocket:connected" {
				wrong("first message %q; want websocket:connected", m.Event)
			}
			if want := "audio/l16;rate=" + strconv.Itoa(b.rate); m.ContentType != want {
				wrong("content-type %q; want %q", m.ContentType, want)
			}
		}
	}
	b.msgs = append(b.msgs, m)
}

// checkTwilio checks one Twilio Media Streams message. b.mu is held.
func (b *botSide) checkTwilio(m *botMsg, wrong func(string, ...any)) {
	if len(b.msgs) == 0 && b.audioMsgs == 0 {
		if m.Event != "connected" || m.Protocol != "Call" {
			wrong("first message %q protocol %q; want connected, Call", m.Event, m.Protocol)
		}
		b.nextSeq, b.nextChunk = 1, 1
		return
	}
	if m.SequenceNumber != strconv.Itoa(b.nextSeq) {
		wrong("%s sequenceNumber %q; want %d", m.Event, m.SequenceNumber, b.nextSeq)
	}
	b.nextSeq++
	if m.Event == "start" {
		if m.Start == nil || !strings.HasPrefix(m.StreamSid, "MZ") || len(m.StreamSid) != 34 || m.Start.StreamSid != m.StreamSid {
			wrong("start streamSid %q", m.StreamSid)
			return
		}
		f := m.Start.MediaFormat
		if f.Encoding != "audio/x-mulaw" || f.SampleRate != 8000 || f.Channels != 1 {
			wrong("mediaFormat %+v", f)
		}
		if !strings.HasPrefix(m.Start.CallSid, "CA") || !strings.HasPrefix(m.Start.AccountSid, "AC") {
			wrong("start callSid %q accountSid %q", m.Start.CallSid, m.Start.AccountSid)
		}
		b.streamSid = m.StreamSid
		return
	}
	if m.StreamSid != b.streamSid {
		wrong("%s streamSid %q; want %q", m.Event, m.StreamSid, b.streamSid)
	}
	if m.Event != "media" {
		return
	}
	if m.Media == nil {
		wrong("media without media")
		return
	}
	// timestamp is ms since the stream started, as a string: it must advance
	// 20 ms per chunk (PROTOCOLS.md's example starts chunk 1 at 20).
	ts, err := strconv.Atoi(m.Media.Timestamp)
	if b.nextChunk == 1 {
		b.tsOffset = ts
	}
	if m.Media.Track != "inbound" || m.Media.Chunk != strconv.Itoa(b.nextChunk) ||
		err != nil || ts != b.tsOffset+(b.nextChunk-1)*20 {
		wrong("media track %q chunk %q timestamp %q; want inbound, %d, %d",
			m.Media.Track, m.Media.Chunk, m.Media.Timestamp, b.nextChunk, b.tsOffset+(b.nextChunk-1)*20)
	}
	b.nextChunk++
	raw, err := base64.StdEncoding.DecodeString(m.Media.Payload)
	if err != nil || len(raw) != 160 {
		wrong("media payload of %d bytes (%v); want 160", len(raw), err)
	}
	for _, u := range raw {
		b.audio = append(b.audio, ulawDecode(u))
	}
	b.audioMsgs++
}

// wait blocks until cond (called with b.mu held) is true, or fails the test
// when ctx ends.
func (b *botSide) wait(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for {
		b.mu.Lock()
		ok := cond()
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-b.notify:
		case <-ctx.Done():
			t.Fatalf("bot: timed out waiting for %s", what)
		}
	}
}

// events returns the text messages received so far.
func (b *botSide) events() []botMsg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]botMsg(nil), b.msgs...)
}

// find returns the received messages with this event name.
func (b *botSide) find(event string) []botMsg {
	var out []botMsg
	for _, m := range b.events() {
		if m.Event == event {
			out = append(out, m)
		}
	}
	return out
}

// checkWire fails t if any message broke the dialect.
func (b *botSide) checkWire(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.wireErrs {
		t.Errorf("bot wire format: %s", e)
	}
}

func (b *botSide) send(ctx context.Context, t *testing.T, typ websocket.MessageType, data []byte) {
	t.Helper()
	if err := b.ws.Write(ctx, typ, data); err != nil {
		t.Fatalf("bot write: %v", err)
	}
}

func (b *botSide) sendJSON(ctx context.Context, t *testing.T, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	b.send(ctx, t, websocket.MessageText, data)
}

// sendAudio sends pcm in pieces of chunk samples, as the dialect wants.
func (b *botSide) sendAudio(ctx context.Context, t *testing.T, pcm []int16, chunk int) {
	t.Helper()
	for off := 0; off < len(pcm); off += chunk {
		piece := pcm[off:min(off+chunk, len(pcm))]
		switch b.protocol {
		case bot.Twilio:
			raw := make([]byte, len(piece))
			for i, s := range piece {
				raw[i] = ulawEncode(s)
			}
			b.sendJSON(ctx, t, map[string]any{
				"event": "media", "streamSid": b.sid(),
				"media": map[string]any{"payload": base64.StdEncoding.EncodeToString(raw)},
			})
		case bot.Vonage:
			raw := make([]byte, 2*len(piece))
			for i, s := range piece {
				binary.LittleEndian.PutUint16(raw[2*i:], uint16(s))
			}
			b.send(ctx, t, websocket.MessageBinary, raw)
		}
	}
}

// sendMark sends a Twilio mark or a Vonage notify named name.
func (b *botSide) sendMark(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	switch b.protocol {
	case bot.Twilio:
		b.sendJSON(ctx, t, map[string]any{"event": "mark", "streamSid": b.sid(), "mark": map[string]any{"name": name}})
	case bot.Vonage:
		b.sendJSON(ctx, t, map[string]any{"action": "notify", "payload": map[string]any{"name": name}})
	}
}

// sendClear sends the dialect's clear.
func (b *botSide) sendClear(ctx context.Context, t *testing.T) {
	t.Helper()
	switch b.protocol {
	case bot.Twilio:
		b.sendJSON(ctx, t, map[string]any{"event": "clear", "streamSid": b.sid()})
	case bot.Vonage:
		b.sendJSON(ctx, t, map[string]any{"action": "clear"})
	}
}

// markEchoes returns the names of the marks echoed so far, in order.
func (b *botSide) markEchoes() []string {
	var out []string
	for _, m := range b.events() {
		switch {
		case m.Event == "mark" && m.Mark != nil:
			out = append(out, m.Mark.Name)
		case m.Event == "websocket:notify":
			var p struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(m.Payload, &p)
			out = append(out, p.Name)
		}
	}
	return out
}

func (b *botSide) sid() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.streamSid
}

// audioTail returns the last n samples the bot received.
func (b *botSide) audioTail(n int) []int16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int16(nil), b.audio[max(0, len(b.audio)-n):]...)
}

// ulawDecode and ulawEncode are G.711 mu-law (ITU-T G.711, the classic
// Sun reference), written out here so that the test does not share code with
// the implementation under test.
func ulawDecode(u byte) int16 {
	u = ^u
	mag := ((int(u&0x0F) << 3) + 0x84) << ((u >> 4) & 7)
	if u&0x80 != 0 {
		return int16(0x84 - mag)
	}
	return int16(mag - 0x84)
}

func ulawEncode(s int16) byte {
	x := int(s)
	sign := 0
	if x < 0 {
		x, sign = -x, 0x80
	}
	x = min(x, 32635) + 0x84
	exp := 7
	for mask := 0x4000; x&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	return ^byte(sign | exp<<4 | (x>>(exp+3))&0x0F)
}

// ---------------------------------------------------------------------------
// A whole call.

// testCall is one connected call: our Session, the caller and the bot.
type testCall struct {
	s   *Session
	c   *caller
	b   *botSide
	ctx context.Context
}

// startCall connects a caller to a bot through e. Everything is closed at
// cleanup.
func startCall(t *testing.T, e *Engine, tb *testBot, cc callerConfig, mutate ...func(*SessionConfig)) *testCall {
	t.Helper()
	ctx := testContext(t)
	c := newCaller(t, cc)
	cfg := SessionConfig{CallID: "wacid.TEST", Offer: c.offer, Bot: tb.config()}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := e.NewSession(ctx, cfg)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	b := tb.accepted(ctx)
	c.accept(s.Answer())
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
	c.waitConnected(ctx)
	return &testCall{s: s, c: c, b: b, ctx: ctx}
}

// toneFrames counts the 20 ms frames of x (at rate) whose freq component is
// above threshold.
func toneFrames(x []int16, rate int, freq, threshold float64) int {
	n := 0
	frame := rate / 50
	for off := 0; off+frame <= len(x); off += frame {
		if goertzel(x[off:off+frame], rate, freq) > threshold {
			n++
		}
	}
	return n
}

// within reports whether got is within frac of want.
func within(got, want, frac float64) bool {
	return math.Abs(got-want) <= frac*want
}
