package media

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/rtp"
	"github.com/thesyncim/gopus"

	wacaller "github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// frameSink is an audioWriter that keeps the frames it is given.
type frameSink struct {
	frames int
	last   []int16
	all    []int16
	keep   bool
	err    error
	ms     []int64 // media time of each frame
}

// seqGate is the in-order case of the reorder buffer, for feeding inbound
// directly: it reports the packets missing before seq, and false for a
// duplicate or older packet.
type seqGate struct {
	started bool
	last    uint16
}

func (g *seqGate) check(seq uint16) (int, bool) {
	if !g.started {
		g.started, g.last = true, seq
		return 0, true
	}
	d := int16(seq - g.last - 1)
	if d < 0 {
		return 0, false
	}
	g.last = seq
	return int(d), true
}

func (f *frameSink) WriteAudioAt(_ context.Context, pcm []int16, ms int64) error {
	if f.err != nil {
		return f.err
	}
	f.frames++
	f.last = append(f.last[:0], pcm...)
	if f.keep {
		f.all = append(f.all, pcm...)
		f.ms = append(f.ms, ms)
	}
	return nil
}

// callerPackets encodes src (48 kHz) as Opus RTP packets of frameMs each.
func callerPackets(t testing.TB, src []int16, frameMs int) []rtp.Packet {
	t.Helper()
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: callerRate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		t.Fatal(err)
	}
	frame := callerRate * frameMs / 1000
	if err := enc.SetFrameSize(frame); err != nil {
		t.Fatal(err)
	}
	enc.SetFEC(true)
	if err := enc.SetPacketLoss(10); err != nil {
		t.Fatal(err)
	}
	var out []rtp.Packet
	buf := make([]byte, 1500)
	for off, i := 0, 0; off+frame <= len(src); off, i = off+frame, i+1 {
		n, err := enc.EncodeInt16(src[off:off+frame], buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(100 + i), Timestamp: uint32(5000 + off)},
			Payload: append([]byte(nil), buf[:n]...),
		})
	}
	return out
}

func TestInbound(t *testing.T) {
	const rate = 16000
	src := tone(callerRate, callerRate, 0, 1000, 8000) // 1 s
	tests := []struct {
		name      string
		frameMs   int
		drop      map[int]bool // packet indexes lost
		dup       int          // packet index sent twice (-1: none)
		wantLost  int
		wantTotal int // samples written to the bot
	}{
		{name: "20 ms packets", frameMs: 20, dup: -1, wantTotal: rate},
		{name: "10 ms packets", frameMs: 10, dup: -1, wantTotal: rate},
		{name: "40 ms packets", frameMs: 40, dup: -1, wantTotal: rate},
		{name: "60 ms packets", frameMs: 60, dup: -1, wantTotal: rate * 960 / 1000},
		{name: "loss concealed", frameMs: 20, dup: -1, drop: map[int]bool{10: true, 20: true, 21: true}, wantLost: 3, wantTotal: rate},
		{name: "duplicate ignored", frameMs: 20, dup: 15, wantTotal: rate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec, err := NewOpusDecoder(rate)
			if err != nil {
				t.Fatal(err)
			}
			sink := &frameSink{keep: true}
			in := newInbound(dec, rate, sink)
			lost := 0
			var gate seqGate
			feed := func(p *rtp.Packet) {
				l, ok := gate.check(p.SequenceNumber)
				if !ok {
					return
				}
				lost += l
				if err := in.opus(context.Background(), p, l > 0); err != nil {
					t.Fatal(err)
				}
			}
			for i, p := range callerPackets(t, src, tt.frameMs) {
				if tt.drop[i] {
					continue
				}
				feed(&p)
				if i == tt.dup {
					feed(&p)
				}
			}
			if lost != tt.wantLost {
				t.Errorf("lost = %d; want %d", lost, tt.wantLost)
			}
			if len(sink.all) != tt.wantTotal {
				t.Errorf("bot got %d samples; want %d (every gap filled, nothing twice)", len(sink.all), tt.wantTotal)
			}
			if a := goertzel(sink.all[rate/5:], rate, 1000); !within(a, 8000, 0.25) {
				t.Errorf("bot got 1000 Hz at %.0f; want about 8000", a)
			}
		})
	}
}

func TestInboundDTXGapFilled(t *testing.T) {
	const rate = 8000
	dec, err := NewOpusDecoder(rate)
	if err != nil {
		t.Fatal(err)
	}
	sink := &frameSink{keep: true}
	in := newInbound(dec, rate, sink)
	pkts := callerPackets(t, tone(callerRate, callerRate, 0, 440, 8000), 20)
	// A sender in DTX skips 400 ms of packets without a sequence gap.
	feed := append(pkts[:10:10], pkts[30:]...)
	var gate seqGate
	for i := range feed {
		feed[i].SequenceNumber = uint16(100 + i)
		lost, _ := gate.check(feed[i].SequenceNumber)
		if err := in.opus(context.Background(), &feed[i], lost > 0); err != nil {
			t.Fatal(err)
		}
	}
	if len(sink.all) != rate {
		t.Errorf("bot got %d samples; want %d: the DTX gap filled", len(sink.all), rate)
	}
}

func TestOutbound(t *testing.T) {
	const rate = 16000
	frame := rate / 50
	enc, err := NewOpusEncoder(rate, -1)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPlayout[bot.Mark](frame, rate)
	out := newOutbound(enc, p, SilenceFrame(rate))
	dec, err := NewOpusDecoder(rate)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, rate*maxOpusDuration/1000)
	var got []int16
	tick := func() []byte {
		payload, _ := out.next(nil)
		n, err := dec.Decode(payload, pcm)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, pcm[:n]...)
		return payload
	}
	// Quiet bot: the pre-encoded silence frame.
	for range 3 {
		if payload := tick(); string(payload) != string(out.silence) {
			t.Fatalf("quiet tick payload %x; want the silence frame", payload)
		}
	}
	// Speech is encoded; after it, encoded silence for the hangover, then
	// the silence frame again.
	if err := p.Push(tone(rate, rate/2, 0, 1000, 8000)); err != nil {
		t.Fatal(err)
	}
	start := len(got)
	for range 25 {
		if payload := tick(); string(payload) == string(out.silence) {
			t.Fatal("silence frame sent while the bot speaks")
		}
	}
	speech := got[start:]
	for i := range hangoverFrames {
		if payload := tick(); string(payload) == string(out.silence) {
			t.Fatalf("silence frame %d ticks after speech; want %d ticks of encoded silence first", i, hangoverFrames)
		}
	}
	if payload := tick(); string(payload) != string(out.silence) {
		t.Fatal("no silence frame after the hangover")
	}
	if a := goertzel(speech[rate/10:], rate, 1000); !within(a, 8000, 0.25) {
		t.Errorf("caller would hear 1000 Hz at %.0f; want about 8000", a)
	}
	if r := rms(got[len(got)-frame:]); r > 50 {
		t.Errorf("rms after the hangover = %.0f; want silence", r)
	}
}

func TestPipelineAllocs(t *testing.T) {
	const rate = 16000
	dec, err := NewOpusDecoder(rate)
	if err != nil {
		t.Fatal(err)
	}
	in := newInbound(dec, rate, &frameSink{last: make([]int16, 0, rate/50)})
	pkts := callerPackets(t, speechLike(callerRate, callerRate, 0), 20)
	var gate seqGate
	i := 0
	inAllocs := testing.AllocsPerRun(200, func() {
		p := &pkts[i%len(pkts)]
		p.SequenceNumber, p.Timestamp = uint16(i), uint32(i*callerFrame)
		i++
		lost, _ := gate.check(p.SequenceNumber)
		if err := in.opus(context.Background(), p, lost > 0); err != nil {
			t.Fatal(err)
		}
	})
	if inAllocs != 0 {
		t.Errorf("inbound allocations per packet = %v; want 0", inAllocs)
	}

	// The outbound check uses a stand-in encoder: gopus's in-band FEC (LBRR)
	// encoder allocates about 14 KB per speech frame by itself (a cloned
	// noise shaping state, see BenchmarkOutbound), which is not ours to fix.
	p := NewPlayout[bot.Mark](rate/50, rate)
	out := newOutbound(copyEncoder{}, p, SilenceFrame(rate))
	src := speechLike(rate, rate/50, 0)
	due := make([]bot.Mark, 0, 4)
	outAllocs := testing.AllocsPerRun(200, func() {
		if err := p.Push(src); err != nil {
			t.Fatal(err)
		}
		out.next(due[:0])
	})
	if outAllocs != 0 {
		t.Errorf("outbound allocations per frame = %v; want 0", outAllocs)
	}
}

// copyEncoder is an Encoder stand-in that copies the first bytes of the PCM.
type copyEncoder struct{}

func (copyEncoder) Encode(pcm []int16, out []byte) (int, error) {
	n := min(len(out), 2*len(pcm), 80)
	for i := 0; i < n/2; i++ {
		out[2*i], out[2*i+1] = byte(pcm[i]), byte(pcm[i]>>8)
	}
	return n, nil
}

// pipeListener is a net.Listener whose connections are in-memory pipes.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(context.Context, string, string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// pipeBot returns a bot.Conn to an in-process bot that discards everything,
// connected over an in-memory pipe: the dialect's encoding and WebSocket
// framing without any network.
func pipeBot(tb testing.TB, protocol bot.Protocol, rate int) *bot.Conn {
	tb.Helper()
	ln := newPipeListener()
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ws, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			for {
				_, rd, err := ws.Reader(context.Background())
				if err != nil {
					return
				}
				if _, err := io.CopyBuffer(io.Discard, rd, buf); err != nil {
					return
				}
			}
		}),
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ln)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, err := bot.Dial(ctx, bot.Config{
		URL:        "ws://pipe/bot",
		Protocol:   protocol,
		SampleRate: rate,
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: ln.dial}},
		Call:       bot.CallInfo{CallID: "wacid.BENCH"},
	})
	if err != nil {
		tb.Fatalf("bot.Dial over a pipe: %v", err)
	}
	tb.Cleanup(func() {
		_ = conn.Close()
		_ = srv.Close()
		wg.Wait()
	})
	return conn
}

// BenchmarkInbound is the caller-to-bot pipeline per 20 ms packet: Opus
// decode straight to the bot rate, the dialect's encoding
// (mu-law + base64 + JSON, or L16) and WebSocket framing into an in-memory
// pipe (the discarding bot's reads are included).
func BenchmarkInbound(b *testing.B) {
	for _, d := range []struct {
		protocol bot.Protocol
		rate     int
	}{{bot.Twilio, 8000}, {bot.Vonage, 16000}} {
		b.Run(fmt.Sprintf("%s-%d", d.protocol, d.rate), func(b *testing.B) {
			conn := pipeBot(b, d.protocol, d.rate)
			dec, err := NewOpusDecoder(d.rate)
			if err != nil {
				b.Fatal(err)
			}
			in := newInbound(dec, d.rate, conn)
			pkts := callerPackets(b, speechLike(callerRate, callerRate, 0), 20)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				p := &pkts[i%len(pkts)]
				p.SequenceNumber, p.Timestamp = uint16(i), uint32(i*callerFrame)
				if err := in.opus(ctx, p, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOutbound is the bot-to-caller pipeline per 20 ms frame: a bot
// chunk into the playout buffer, one frame out, Opus encode at the bot rate.
//
// The offer=meta runs encode under the limits of WhatsApp's offer (20
// kbit/s, wideband at most).
func BenchmarkOutbound(b *testing.B) {
	meta, _ := parseOpusOffer(wacaller.CapturedOffer)
	for _, bc := range []struct {
		rate  int
		offer string
		lim   opusOffer
	}{{8000, "none", opusOffer{}}, {8000, "meta", meta}, {16000, "none", opusOffer{}}, {16000, "meta", meta}, {24000, "meta", meta}} {
		rate := bc.rate
		b.Run(fmt.Sprintf("rate=%d/offer=%s", rate, bc.offer), func(b *testing.B) {
			enc, err := newOpusEncoder(encoderConfig{rate: rate, complexity: -1, maxBitrate: bc.lim.maxAverageBitrate, maxPlaybackRate: bc.lim.maxPlaybackRate})
			if err != nil {
				b.Fatal(err)
			}
			frame := rate / 50
			p := NewPlayout[bot.Mark](frame, rate)
			out := newOutbound(enc, p, SilenceFrame(rate))
			src := speechLike(rate, 50*frame, 0)
			due := make([]bot.Mark, 0, 4)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				off := (i % 50) * frame
				if err := p.Push(src[off : off+frame]); err != nil {
					b.Fatal(err)
				}
				if payload, _ := out.next(due[:0]); len(payload) <= len(out.silence) {
					b.Fatal("no encoded audio")
				}
			}
		})
	}
}

// BenchmarkBridge is one 20 ms frame through the whole bridge, both ways:
// the inbound pipeline of BenchmarkInbound (caller packet to the bot's
// socket) plus the outbound pipeline of BenchmarkOutbound (bot audio to an
// encoded packet for the caller), as a bot that talks all the time costs.
func BenchmarkBridge(b *testing.B) {
	for _, d := range []struct {
		protocol bot.Protocol
		rate     int
	}{{bot.Twilio, 8000}, {bot.Vonage, 16000}} {
		b.Run(fmt.Sprintf("%s-%d", d.protocol, d.rate), func(b *testing.B) {
			conn := pipeBot(b, d.protocol, d.rate)
			dec, err := NewOpusDecoder(d.rate)
			if err != nil {
				b.Fatal(err)
			}
			enc, err := NewOpusEncoder(d.rate, -1)
			if err != nil {
				b.Fatal(err)
			}
			in := newInbound(dec, d.rate, conn)
			frame := d.rate / 50
			p := NewPlayout[bot.Mark](frame, d.rate)
			out := newOutbound(enc, p, SilenceFrame(d.rate))
			pkts := callerPackets(b, speechLike(callerRate, callerRate, 0), 20)
			src := speechLike(d.rate, 50*frame, 1)
			due := make([]bot.Mark, 0, 4)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				pk := &pkts[i%len(pkts)]
				pk.SequenceNumber, pk.Timestamp = uint16(i), uint32(i*callerFrame)
				if err := in.opus(ctx, pk, false); err != nil {
					b.Fatal(err)
				}
				off := (i % 50) * frame
				if err := p.Push(src[off : off+frame]); err != nil {
					b.Fatal(err)
				}
				if payload, _ := out.next(due[:0]); len(payload) <= len(out.silence) {
					b.Fatal("no encoded audio")
				}
			}
		})
	}
}
