package bot

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait in these tests.
const waitTimeout = 3 * time.Second

// testBot is a bot WebSocket server on loopback. Each accepted connection is
// handed to the test as a *peer.
type testBot struct {
	srv   *httptest.Server
	peers chan *peer
	hits  atomic.Int32
	// before, if set, runs before the upgrade; returning false answers the
	// request without upgrading.
	before func(n int32, w http.ResponseWriter, r *http.Request) bool
}

func newBot(t testing.TB) *testBot {
	t.Helper()
	b := newUnstartedBot(t)
	b.srv.Start()
	return b
}

func newUnstartedBot(t testing.TB) *testBot {
	t.Helper()
	b := &testBot{peers: make(chan *peer, 8)}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	b.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(func() {
		b.srv.Close()
		for {
			select {
			case p := <-b.peers:
				p.close()
			default:
				return
			}
		}
	})
	return b
}

func (b *testBot) serve(w http.ResponseWriter, r *http.Request) {
	n := b.hits.Add(1)
	if b.before != nil && !b.before(n, w, r) {
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(-1)
	b.peers <- &peer{ws: ws, req: r, msgs: make(chan wsMessage, 4096), readErr: make(chan error, 1)}
}

// url returns the bot's ws:// URL with path and query appended.
func (b *testBot) url(pathQuery string) string {
	return "ws" + strings.TrimPrefix(b.srv.URL, "http") + pathQuery
}

// accept returns the next connection the bot accepted. The peer is closed
// when the test ends.
func (b *testBot) accept(t testing.TB) *peer {
	t.Helper()
	select {
	case p := <-b.peers:
		t.Cleanup(p.close)
		return p
	case <-time.After(waitTimeout):
		t.Fatal("bot accepted no connection")
		return nil
	}
}

// peer is the bot's side of one connection.
type peer struct {
	ws      *websocket.Conn
	req     *http.Request
	msgs    chan wsMessage
	readErr chan error
	wg      sync.WaitGroup
	once    sync.Once
}

type wsMessage struct {
	typ  websocket.MessageType
	data []byte
}

// startReading reads messages in the background until the connection ends;
// the end's error goes to readErr.
func (p *peer) startReading() {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			typ, data, err := p.ws.Read(context.Background())
			if err != nil {
				p.readErr <- err
				return
			}
			p.msgs <- wsMessage{typ: typ, data: data}
		}
	}()
}

// discard reads and drops messages in the background until the connection
// ends, answering the close frame.
func (p *peer) discard() {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			_, r, err := p.ws.Reader(context.Background())
			if err == nil {
				_, err = io.Copy(io.Discard, r)
			}
			if err != nil {
				p.readErr <- err
				return
			}
		}
	}()
}

func (p *peer) close() {
	p.once.Do(func() {
		_ = p.ws.CloseNow()
		p.wg.Wait()
	})
}

// next returns the next message the bot received.
func (p *peer) next(t testing.TB) wsMessage {
	t.Helper()
	select {
	case m := <-p.msgs:
		return m
	case err := <-p.readErr:
		p.readErr <- err // keep it for end
		select {
		case m := <-p.msgs: // sent before the read ended
			return m
		default:
		}
		t.Fatalf("bot read ended before the next message: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("bot received no message")
	}
	return wsMessage{}
}

// nextText returns the next message, which must be a text frame.
func (p *peer) nextText(t testing.TB) string {
	t.Helper()
	m := p.next(t)
	if m.typ != websocket.MessageText {
		t.Fatalf("bot received a %v frame; want text", m.typ)
	}
	return string(m.data)
}

// nextJSON returns the next message decoded as a JSON object.
func (p *peer) nextJSON(t testing.TB) map[string]any {
	t.Helper()
	s := p.nextText(t)
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bot received invalid JSON %q: %v", s, err)
	}
	return v
}

// end waits for the bot's read loop to end and returns why.
func (p *peer) end(t testing.TB) error {
	t.Helper()
	select {
	case m := <-p.msgs:
		t.Fatalf("bot received %q; want the end of the stream", m.data)
	case err := <-p.readErr:
		select {
		case m := <-p.msgs:
			t.Fatalf("bot received %q; want the end of the stream", m.data)
		default:
		}
		return err
	case <-time.After(waitTimeout):
		t.Fatal("bot connection did not end")
	}
	return nil
}

// send writes a message from the bot.
func (p *peer) send(t testing.TB, typ websocket.MessageType, data string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := p.ws.Write(ctx, typ, []byte(data)); err != nil {
		t.Fatalf("bot write: %v", err)
	}
}

// dial dials cfg and closes the Conn when the test ends.
func dial(t testing.TB, cfg Config) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readEvent reads the next event within waitTimeout.
func readEvent(t testing.TB, c *Conn) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ev, err := c.ReadEvent(ctx)
	if err != nil {
		t.Fatalf("ReadEvent: %v", err)
	}
	return ev
}

// readEventErr reads until ReadEvent fails and returns the error.
func readEventErr(t testing.TB, c *Conn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ev, err := c.ReadEvent(ctx)
	if err == nil {
		t.Fatalf("ReadEvent = %v event; want an error", ev.Kind)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("ReadEvent did not return in time")
	}
	return err
}

// testCall is the CallInfo used across tests.
// usernameCall is a call from a user who shares no phone number.
var usernameCall = CallInfo{
	CallID:           "wacid.NOPHONE",
	To:               "15550001111",
	PhoneNumberID:    "106540352242922",
	CallerName:       "Jane",
	FromUserID:       "US.1349",
	FromParentUserID: "US.ENT.1181",
	Username:         "jane.doe",
	DeeplinkPayload:  "spring",
	CTAPayload:       "btn-42",
}

var testCall = CallInfo{
	CallID:        "wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI",
	From:          "15551234567",
	To:            "15550001111",
	PhoneNumberID: "106540352242922",
	CallerName:    "Jane \"JJ\" Doe",
}
