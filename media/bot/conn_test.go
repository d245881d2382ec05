package bot

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestParseProtocol(t *testing.T) {
	tests := []struct {
		give    string
		want    Protocol
		wantErr bool
	}{
		{give: "twilio", want: Twilio},
		{give: "vonage", want: Vonage},
		{give: " Vonage ", want: Vonage},
		{give: "TWILIO", want: Twilio},
		{give: "", want: Twilio},
		{give: "telnyx", wantErr: true},
		{give: "twilio2", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ParseProtocol(tt.give)
			if tt.wantErr {
				if !errors.Is(err, ErrUnknownProtocol) {
					t.Fatalf("ParseProtocol(%q) = %q, %v; want ErrUnknownProtocol", tt.give, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseProtocol(%q) = %q, %v; want %q", tt.give, got, err, tt.want)
			}
		})
	}
}

func TestDialConfigErrors(t *testing.T) {
	const okURL = "ws://127.0.0.1:1/bot"
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{"http scheme", Config{URL: "http://127.0.0.1:1/"}, ErrInvalidURL},
		{"no host", Config{URL: "ws:///path"}, ErrInvalidURL},
		{"relative", Config{URL: "/bot"}, ErrInvalidURL},
		{"unparsable", Config{URL: "ws://[::1/?token=secret"}, ErrInvalidURL},
		{"unknown protocol", Config{URL: okURL, Protocol: "plivo"}, ErrUnknownProtocol},
		{"twilio 16 kHz", Config{URL: okURL, SampleRate: 16000}, ErrSampleRate},
		{"vonage 44.1 kHz", Config{URL: okURL, Protocol: Vonage, SampleRate: 44100}, ErrSampleRate},
		{"empty param name", Config{URL: okURL, Params: []Param{{"", "x"}}}, ErrInvalidParam},
		{"twilio builtin param", Config{URL: okURL, Params: []Param{{"from_number", "x"}}}, ErrInvalidParam},
		{"vonage builtin param", Config{URL: okURL, Protocol: Vonage, Params: []Param{{"content-type", "x"}}}, ErrInvalidParam},
		{"repeated param", Config{URL: okURL, Params: []Param{{"a", "1"}, {"a", "2"}}}, ErrInvalidParam},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Dial(context.Background(), tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("Dial(%+v) = %v; want %v", tt.cfg, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the URL's query", err)
			}
		})
	}
}

func TestUpgradeHeaders(t *testing.T) {
	const key = "twilio-auth-token"
	tests := []struct {
		name       string
		header     http.Header
		signingKey string
		check      func(t *testing.T, r *http.Request, signedURL string)
	}{
		{
			name:   "custom headers",
			header: http.Header{"Authorization": {"Bearer abc"}, "X-Tenant": {"acme"}},
			check: func(t *testing.T, r *http.Request, _ string) {
				if got := r.Header.Get("Authorization"); got != "Bearer abc" {
					t.Errorf("Authorization = %q; want %q", got, "Bearer abc")
				}
				if got := r.Header.Get("X-Tenant"); got != "acme" {
					t.Errorf("X-Tenant = %q; want acme", got)
				}
				if got := r.Header.Get("X-Twilio-Signature"); got != "" {
					t.Errorf("X-Twilio-Signature = %q without a signing key", got)
				}
			},
		},
		{
			name:   "host override",
			header: http.Header{"Host": {"bot.example"}},
			check: func(t *testing.T, r *http.Request, _ string) {
				if r.Host != "bot.example" {
					t.Errorf("Host = %q; want bot.example", r.Host)
				}
			},
		},
		{
			name:       "twilio signature",
			signingKey: key,
			check: func(t *testing.T, r *http.Request, signedURL string) {
				// Verify as a bot would: rebuild the URL from the request.
				rebuilt := "ws://" + r.Host + r.URL.RequestURI()
				if rebuilt != signedURL {
					t.Fatalf("rebuilt URL %q; want %q", rebuilt, signedURL)
				}
				mac := hmac.New(sha1.New, []byte(key))
				mac.Write([]byte(rebuilt))
				want := mac.Sum(nil)
				got, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Twilio-Signature"))
				if err != nil || !hmac.Equal(got, want) {
					t.Errorf("X-Twilio-Signature = %q; want base64 of HMAC-SHA1(key, %q)", r.Header.Get("X-Twilio-Signature"), rebuilt)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newBot(t)
			u := bot.url("/media?call=wacid.1&token=t0k")
			dial(t, Config{URL: u, Header: tt.header, SigningKey: tt.signingKey, Call: testCall})
			p := bot.accept(t)
			tt.check(t, p.req, u)
		})
	}
}

func TestDialRetriesUntilBotListens(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	bot := newUnstartedBot(t)
	started := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err == nil {
			bot.srv.Listener.Close()
			bot.srv.Listener = l
			bot.srv.Start()
		}
		started <- err
	}()

	c, err := Dial(context.Background(), Config{URL: "ws://" + addr + "/", Call: testCall, DialTimeout: 3 * time.Second})
	if lerr := <-started; lerr != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr, lerr)
	}
	if err != nil {
		t.Fatalf("Dial = %v; want success once the bot listens", err)
	}
	defer c.Close()
	p := bot.accept(t)
	p.startReading()
	if m := p.nextJSON(t); m["event"] != "connected" {
		t.Errorf("first message = %v; want connected", m)
	}
}

func TestDialNothingListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	const budget = 300 * time.Millisecond
	start := time.Now()
	c, err := Dial(context.Background(), Config{URL: "ws://" + addr + "/bot?token=secret", DialTimeout: budget})
	elapsed := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded with nothing listening")
	}
	if !errors.Is(err, ErrBotUnreachable) {
		t.Errorf("Dial = %v; want ErrBotUnreachable", err)
	}
	if elapsed < budget || elapsed > budget+2*time.Second {
		t.Errorf("Dial gave up after %v; want after the %v budget", elapsed, budget)
	}
	msg := err.Error()
	if strings.Contains(msg, "secret") || !strings.Contains(msg, "ws://"+addr+"/bot?REDACTED") || !strings.Contains(msg, "attempts") {
		t.Errorf("error %q: want the redacted URL, the attempts and no query", msg)
	}
}

func TestDialParentContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err := Dial(ctx, Config{URL: "ws://127.0.0.1:1/"})
	if err == nil {
		c.Close()
	}
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrBotUnreachable) {
		t.Errorf("Dial(cancelled ctx) = %v; want context.Canceled", err)
	}
}

func TestDialHandshakeAnswers(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		failures int32 // answers before the upgrade succeeds; -1: never
		wantHits int32
		wantErr  bool
	}{
		{name: "403 is permanent", status: http.StatusForbidden, failures: -1, wantHits: 1, wantErr: true},
		{name: "404 is permanent", status: http.StatusNotFound, failures: -1, wantHits: 1, wantErr: true},
		{name: "503 is retried", status: http.StatusServiceUnavailable, failures: 2, wantHits: 3},
		{name: "502 is retried", status: http.StatusBadGateway, failures: 1, wantHits: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newUnstartedBot(t)
			bot.before = func(n int32, w http.ResponseWriter, _ *http.Request) bool {
				if tt.failures < 0 || n <= tt.failures {
					http.Error(w, "no", tt.status)
					return false
				}
				return true
			}
			bot.srv.Start()
			c, err := Dial(context.Background(), Config{URL: bot.url("/?k=secret"), Call: testCall})
			if tt.wantErr {
				if err == nil {
					c.Close()
					t.Fatal("Dial succeeded")
				}
				if errors.Is(err, ErrBotUnreachable) || !strings.Contains(err.Error(), strconv.Itoa(tt.status)) || strings.Contains(err.Error(), "secret") {
					t.Errorf("Dial = %v; want an immediate error naming %d", err, tt.status)
				}
			} else {
				if err != nil {
					t.Fatalf("Dial = %v", err)
				}
				bot.accept(t).startReading() // answers the close frame
				if err := c.Close(); err != nil {
					t.Errorf("Close = %v", err)
				}
			}
			if got := bot.hits.Load(); got != tt.wantHits {
				t.Errorf("bot got %d requests; want %d", got, tt.wantHits)
			}
		})
	}
}

func TestDialTLS(t *testing.T) {
	bot := newUnstartedBot(t)
	bot.srv.StartTLS()

	t.Run("trusted", func(t *testing.T) {
		c := dial(t, Config{URL: bot.url("/"), Call: testCall, HTTPClient: bot.srv.Client()})
		p := bot.accept(t)
		p.startReading()
		if m := p.nextJSON(t); m["event"] != "connected" {
			t.Errorf("first message = %v; want connected", m)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	t.Run("untrusted certificate is permanent", func(t *testing.T) {
		c, err := Dial(context.Background(), Config{URL: bot.url("/"), Call: testCall, DialTimeout: 10 * time.Second})
		if err == nil {
			c.Close()
			t.Fatal("Dial succeeded with an untrusted certificate")
		}
		if errors.Is(err, ErrBotUnreachable) {
			t.Errorf("Dial = %v; want an immediate certificate error", err)
		}
	})
}

func TestReadLimit(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Call: testCall, ReadLimit: 1024})
	p := bot.accept(t)
	p.startReading()

	p.send(t, websocket.MessageText, `{"event":"mark","mark":{"name":"`+strings.Repeat("a", 900)+`"}}`)
	if ev := readEvent(t, c); ev.Kind != EventMark {
		t.Fatalf("ReadEvent = %v; want the mark under the limit", ev.Kind)
	}
	p.send(t, websocket.MessageBinary, strings.Repeat("x", 2000))
	err := readEventErr(t, c)
	if !errors.Is(err, ErrMessageTooBig) || errors.Is(err, ErrBotHangup) {
		t.Fatalf("ReadEvent = %v; want ErrMessageTooBig", err)
	}
	if again := readEventErr(t, c); !errors.Is(again, ErrMessageTooBig) {
		t.Errorf("second ReadEvent = %v; want the same error", again)
	}
	p.next(t) // connected
	p.next(t) // start
	if got := websocket.CloseStatus(p.end(t)); got != websocket.StatusMessageTooBig {
		t.Errorf("bot saw close status %v; want %v", got, websocket.StatusMessageTooBig)
	}
}

func TestBotHangup(t *testing.T) {
	tests := []struct {
		name   string
		status websocket.StatusCode // 0: drop the connection
	}{
		{"normal closure", websocket.StatusNormalClosure},
		{"going away", websocket.StatusGoingAway},
		{"application status", 4000},
		{"dropped", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newBot(t)
			c := dial(t, Config{URL: bot.url("/"), Call: testCall})
			p := bot.accept(t)

			closed := make(chan error, 1)
			if tt.status == 0 {
				closed <- p.ws.CloseNow()
			} else {
				// The bot's Close waits for our answer, which ReadEvent reads.
				go func() { closed <- p.ws.Close(tt.status, "bye") }()
			}
			err := readEventErr(t, c)
			if !errors.Is(err, ErrBotHangup) {
				t.Fatalf("ReadEvent = %v; want ErrBotHangup", err)
			}
			if tt.status != 0 && websocket.CloseStatus(err) != tt.status {
				t.Errorf("ReadEvent = %v; want close status %v", err, tt.status)
			}
			if err := <-closed; err != nil {
				t.Errorf("bot Close = %v", err)
			}
			if again := readEventErr(t, c); !errors.Is(again, ErrBotHangup) {
				t.Errorf("second ReadEvent = %v; want ErrBotHangup", again)
			}
			if err := c.Close(); err != nil {
				t.Errorf("Close after the bot hung up = %v; want nil", err)
			}
		})
	}
}

func TestClose(t *testing.T) {
	for _, protocol := range []Protocol{Twilio, Vonage} {
		t.Run(string(protocol), func(t *testing.T) {
			bot := newBot(t)
			c := dial(t, Config{URL: bot.url("/"), Protocol: protocol, Call: testCall})
			p := bot.accept(t)
			p.startReading()
			p.next(t) // connected / websocket:connected
			if protocol == Twilio {
				p.next(t) // start
			}
			ctx := context.Background()
			if err := c.WriteAudio(ctx, make([]int16, c.FrameSamples())); err != nil {
				t.Fatalf("WriteAudio: %v", err)
			}
			p.next(t)

			if err := c.Close(); err != nil {
				t.Fatalf("Close = %v", err)
			}
			if protocol == Twilio {
				m := p.nextJSON(t)
				stop, _ := m["stop"].(map[string]any)
				d := newTwilio(testCall, nil)
				if m["event"] != "stop" || m["sequenceNumber"] != "3" || m["streamSid"] != d.streamSID ||
					stop["accountSid"] != d.accountSID || stop["callSid"] != d.callSID {
					t.Errorf("last message = %v; want stop with sequenceNumber 3 and the call's sids", m)
				}
			}
			if got := websocket.CloseStatus(p.end(t)); got != websocket.StatusNormalClosure {
				t.Errorf("bot saw close status %v; want %v", got, websocket.StatusNormalClosure)
			}

			if err := c.Close(); err != nil {
				t.Errorf("second Close = %v; want nil", err)
			}
			writes := map[string]error{
				"WriteAudio":      c.WriteAudio(ctx, make([]int16, c.FrameSamples())),
				"WriteDTMF":       c.WriteDTMF(ctx, "1", 0),
				"WriteMarkPlayed": c.WriteMarkPlayed(ctx, Mark{}),
				"WriteCleared":    c.WriteCleared(ctx, nil),
			}
			for name, err := range writes {
				if !errors.Is(err, ErrClosed) {
					t.Errorf("%s after Close = %v; want ErrClosed", name, err)
				}
			}
			if _, err := c.ReadEvent(ctx); !errors.Is(err, ErrClosed) {
				t.Errorf("ReadEvent after Close = %v; want ErrClosed", err)
			}
		})
	}
}

func TestCloseUnblocksReadEvent(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Call: testCall})
	p := bot.accept(t)
	p.startReading()
	p.next(t) // connected
	p.next(t) // start

	readErr := make(chan error, 1)
	go func() {
		_, err := c.ReadEvent(context.Background())
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond) // let ReadEvent block; the result is the same if it has not yet

	var wg sync.WaitGroup
	closeErrs := make([]error, 3)
	for i := range closeErrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			closeErrs[i] = c.Close()
		}()
	}
	wg.Wait()
	for i, err := range closeErrs {
		if err != nil {
			t.Errorf("concurrent Close %d = %v", i, err)
		}
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("blocked ReadEvent = %v; want ErrClosed", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("ReadEvent still blocked after Close")
	}
	if m := p.nextJSON(t); m["event"] != "stop" {
		t.Errorf("last message = %v; want stop", m)
	}
	if got := websocket.CloseStatus(p.end(t)); got != websocket.StatusNormalClosure {
		t.Errorf("bot saw close status %v; want normal closure", got)
	}
}

func TestReadEventContextKeepsConnection(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Call: testCall})
	p := bot.accept(t)
	p.startReading()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := c.ReadEvent(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadEvent(expiring ctx) = %v; want context.DeadlineExceeded", err)
	}
	p.send(t, websocket.MessageText, `{"event":"mark","mark":{"name":"still-here"}}`)
	if ev := readEvent(t, c); ev.Kind != EventMark || ev.Mark.String() != "still-here" {
		t.Errorf("ReadEvent = %v %q; want the mark still-here", ev.Kind, ev.Mark)
	}
	if err := c.WriteDTMF(context.Background(), "9", 0); err != nil {
		t.Errorf("WriteDTMF after a cancelled ReadEvent = %v", err)
	}
}

// smallBufferListener shrinks the receive buffer of accepted connections so
// that a bot that never reads stalls our writes quickly.
type smallBufferListener struct {
	net.Listener
}

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	return c, err
}

func TestStalledBot(t *testing.T) {
	bot := newUnstartedBot(t)
	bot.srv.Listener = smallBufferListener{bot.srv.Listener}
	bot.srv.Start()

	// A custom transport with a small send buffer: this also exercises a
	// caller's HTTPClient.
	dialer := &net.Dialer{}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetWriteBuffer(4096)
			}
			return c, err
		},
	}}
	const writeTimeout = 200 * time.Millisecond
	c := dial(t, Config{URL: bot.url("/"), Protocol: Vonage, SampleRate: 24000, Call: testCall,
		WriteTimeout: writeTimeout, HTTPClient: client})
	bot.accept(t) // never reads

	// Frames are written in real time, as a Session does: the queue never
	// fills, and the writer's stalled write times out.
	frame := make([]int16, c.FrameSamples())
	deadline := time.Now().Add(20 * time.Second)
	var err error
	var slowest time.Duration
	for time.Now().Before(deadline) {
		start := time.Now()
		err = c.WriteAudio(context.Background(), frame)
		slowest = max(slowest, time.Since(start))
		if err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err == nil {
		t.Fatal("WriteAudio never failed against a bot that does not read")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WriteAudio = %v; want a write timeout", err)
	}
	if slowest > 100*time.Millisecond {
		t.Errorf("a WriteAudio took %v; want it to queue and return at once", slowest)
	}
	rctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, rerr := c.ReadEvent(rctx); rerr == rctx.Err() || !errors.Is(rerr, context.DeadlineExceeded) || errors.Is(rerr, ErrBotHangup) {
		t.Errorf("ReadEvent after the write timeout = %v; want the write timeout, not a hang-up", rerr)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("Close hung after a write timeout")
	}
}

// TestWriteQueueFull has a bot that reads nothing while frames are queued
// far faster than real time and the write timeout is long: the queue
// overflows, and the connection fails with ErrWriteQueueFull for every
// later write and for ReadEvent.
func TestWriteQueueFull(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Protocol: Vonage, SampleRate: 24000, Call: testCall,
		WriteTimeout: time.Minute})
	bot.accept(t) // never reads

	frame := make([]int16, c.FrameSamples())
	var err error
	n := 0
	for ; n < 100000 && err == nil; n++ {
		err = c.WriteAudio(context.Background(), frame)
	}
	if !errors.Is(err, ErrWriteQueueFull) {
		t.Fatalf("WriteAudio after %d frames = %v; want ErrWriteQueueFull", n, err)
	}
	if n < minWriteQueue {
		t.Errorf("the queue overflowed after %d frames; want at least %d", n, minWriteQueue)
	}
	if err := c.WriteMarkPlayed(context.Background(), Mark{}); !errors.Is(err, ErrWriteQueueFull) {
		t.Errorf("WriteMarkPlayed after the overflow = %v; want ErrWriteQueueFull", err)
	}
	if err := readEventErr(t, c); !errors.Is(err, ErrWriteQueueFull) {
		t.Errorf("ReadEvent after the overflow = %v; want ErrWriteQueueFull", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
	case <-time.After(closeTimeout + waitTimeout):
		t.Fatal("Close hung after the overflow")
	}
}

func TestCloseUnansweredHandshake(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Protocol: Vonage, Call: testCall})
	bot.accept(t) // never reads, so never answers the close frame
	// Let the reader reach its read, as on any call that has run at all:
	// Close cuts an unanswered handshake by ending that read. A reader not
	// yet scheduled leaves the wait to the library's own 5 s bound.
	time.Sleep(20 * time.Millisecond)

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err == nil || !strings.Contains(err.Error(), "close frame") {
			t.Errorf("Close = %v; want the unanswered close frame reported", err)
		}
	case <-time.After(closeTimeout + waitTimeout):
		t.Fatal("Close hung on a bot that never answers")
	}
}

// roundTripper hides the *http.Transport behind it, so Dial uses the
// caller's client as it is.
type roundTripper struct {
	rt http.RoundTripper
}

func (r roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	return r.rt.RoundTrip(req)
}

func TestCloseUnansweredHandshakeCustomTransport(t *testing.T) {
	bot := newBot(t)
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	c := dial(t, Config{URL: bot.url("/"), Protocol: Vonage, Call: testCall,
		HTTPClient: &http.Client{Transport: roundTripper{transport}}})
	bot.accept(t) // never reads, so never answers the close frame

	readErr := make(chan error, 1)
	go func() {
		_, err := c.ReadEvent(context.Background())
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the read start

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err == nil || !strings.Contains(err.Error(), "close frame") {
			t.Errorf("Close = %v; want the unanswered close frame reported", err)
		}
	case <-time.After(closeTimeout + waitTimeout):
		t.Fatal("Close hung on a bot that never answers")
	}
	if err := <-readErr; !errors.Is(err, ErrClosed) {
		t.Errorf("ReadEvent = %v; want ErrClosed", err)
	}
}

func TestConcurrentWritesStayOrdered(t *testing.T) {
	bot := newBot(t)
	c := dial(t, Config{URL: bot.url("/"), Call: testCall})
	p := bot.accept(t)
	p.startReading()
	p.next(t) // connected
	p.next(t) // start

	const writers, each = 4, 25 // 200 messages at once: within the write queue
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			frame := make([]int16, c.FrameSamples())
			for range each {
				if err := c.WriteAudio(context.Background(), frame); err != nil {
					errs <- err
				}
				if err := c.WriteDTMF(context.Background(), "#", 0); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent write: %v", err)
	}
	chunk := 0
	for seq := 2; seq < 2+2*writers*each; seq++ {
		var m struct {
			Event          string `json:"event"`
			SequenceNumber string `json:"sequenceNumber"`
			Media          struct {
				Chunk     string `json:"chunk"`
				Timestamp string `json:"timestamp"`
			} `json:"media"`
		}
		if err := json.Unmarshal(p.next(t).data, &m); err != nil {
			t.Fatal(err)
		}
		if m.SequenceNumber != strconv.Itoa(seq) {
			t.Fatalf("sequenceNumber = %q; want %d", m.SequenceNumber, seq)
		}
		if m.Event == "media" {
			chunk++
			if m.Media.Chunk != strconv.Itoa(chunk) || m.Media.Timestamp != strconv.Itoa(20*chunk) {
				t.Fatalf("media chunk, timestamp = %q, %q; want %d, %d", m.Media.Chunk, m.Media.Timestamp, chunk, 20*chunk)
			}
		}
	}
	if chunk != writers*each {
		t.Errorf("bot got %d media messages; want %d", chunk, writers*each)
	}
}

func TestAppendJSONString(t *testing.T) {
	tests := []string{
		"", "plain", `quote " and \ backslash`, "tab\tnewline\nreturn\r", "\x00\x01\x1f\x7f",
		"日本語 ✓ emoji 😀", "line\u2028sep\u2029", "bad \xff utf8 \xc3", "</script>&",
	}
	for _, give := range tests {
		b := appendJSONString(nil, give)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("appendJSONString(%q) = %s: invalid JSON: %v", give, b, err)
			continue
		}
		want, _ := json.Marshal(give)
		var wantStr string
		_ = json.Unmarshal(want, &wantStr)
		if got != wantStr {
			t.Errorf("appendJSONString(%q) decodes to %q; want %q", give, got, wantStr)
		}
	}
}

func TestEventKindString(t *testing.T) {
	tests := []struct {
		give EventKind
		want string
	}{
		{EventAudio, "audio"}, {EventMark, "mark"}, {EventClear, "clear"}, {0, "EventKind(0)"},
	}
	for _, tt := range tests {
		if got := tt.give.String(); got != tt.want {
			t.Errorf("EventKind(%d).String() = %q; want %q", int(tt.give), got, tt.want)
		}
	}
}
