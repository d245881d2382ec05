package whatsappcalls

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	wacaller "github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// outboundFixture is a registry with a real loopback media engine and a
// bot that reads until the call ends.
type outboundFixture struct {
	r     *registry
	g     *recordingGraph
	cfg   callConfig
	users []*wacaller.Caller
}

func newOutboundFixture(t *testing.T, maxCalls int) *outboundFixture {
	t.Helper()
	botSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			if _, _, err := c.Read(r.Context()); err != nil {
				return
			}
		}
	}))
	engine, err := media.NewEngine(media.EngineConfig{Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, OpusComplexity: -1})
	if err != nil {
		t.Fatal(err)
	}
	f := &outboundFixture{r: newRegistry(nil), g: &recordingGraph{}}
	f.cfg = callConfig{
		logger: zap.NewNop(), graph: f.g, engine: engine, maxCalls: maxCalls,
		answerTimeout: 5 * time.Second, ringTimeout: 5 * time.Second,
		phoneNumbers: map[string]struct{}{"1": {}},
		bot: botTemplate{
			url: "ws" + strings.TrimPrefix(botSrv.URL, "http") + "/bot", protocol: bot.Twilio, sampleRate: 8000, timeout: time.Second,
		},
	}
	t.Cleanup(func() {
		if err := f.r.Destruct(); err != nil {
			t.Error(err)
		}
		for _, u := range f.users {
			u.Close()
		}
		engine.Close()
		botSrv.Close()
	})
	return f
}

// answerAs plays the user: it answers offer as Meta does and delivers the
// connect webhook and ACCEPTED to the registry.
func (f *outboundFixture) answerAs(t *testing.T, id, offer string) {
	t.Helper()
	user, err := wacaller.NewAnswerer(wacaller.Config{}, offer)
	if err != nil {
		t.Fatal(err)
	}
	f.users = append(f.users, user)
	f.r.answer(whatsapp.CallEvent{PhoneNumberID: "1", Call: whatsapp.Call{
		ID: id, Event: "connect", Direction: whatsapp.DirectionBusinessInitiated,
		Session: &whatsapp.Session{SDPType: "answer", SDP: user.Answer()},
	}})
	f.r.status(whatsapp.Status{ID: id, Type: "call", Status: "ACCEPTED"})
}

func waitState(t *testing.T, r *registry, id, state string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, v := range r.list(false) {
			if v.CallID == id && v.State == state {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("call %s never reached state %s: %+v", id, state, r.list(false))
}

// TestOutboundWebhooksBeforeConnectReturns delivers Meta's answer and
// ACCEPTED while connect has not returned the call id yet.
func TestOutboundWebhooksBeforeConnectReturns(t *testing.T) {
	f := newOutboundFixture(t, 10)
	f.g.onConnect = func(id, offer string) { f.answerAs(t, id, offer) }
	c, err := f.r.place(context.Background(), f.cfg, placeRequest{To: "15551234567"})
	if err != nil {
		t.Fatalf("place: %v", err)
	}
	waitState(t, f.r, c.ev.Call.ID, stateAnswered)
	if _, ok := f.r.hangupCall(c.ev.Call.ID, errHungUpByAPI); !ok {
		t.Fatal("hangupCall found no call")
	}
	waitGone(t, f.r)
	want := []string{"call_permissions 15551234567", "connect 15551234567", "terminate " + c.ev.Call.ID}
	if got := f.g.calls(); !slices.Equal(got, want) {
		t.Errorf("Graph actions = %v; want %v", got, want)
	}
}

func waitGone(t *testing.T, r *registry) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.list(false)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("calls still live: %+v", r.list(false))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMaxCallsBothDirections checks that max_calls counts outbound calls
// being placed or ringing as well as inbound calls.
func TestMaxCallsBothDirections(t *testing.T) {
	f := newOutboundFixture(t, 1)
	c, err := f.r.place(context.Background(), f.cfg, placeRequest{To: "15551234567"})
	if err != nil {
		t.Fatalf("place: %v", err)
	}
	_, err = f.r.place(context.Background(), f.cfg, placeRequest{To: "15551234567"})
	var pe *placeError
	if !errors.As(err, &pe) || pe.status != http.StatusServiceUnavailable || !errors.Is(err, errOverCapacity) {
		t.Fatalf("second place at max_calls 1 = %v; want 503 over capacity", err)
	}
	in := connectEvent("wacid.IN")
	in.Call.Session = &whatsapp.Session{SDPType: "offer", SDP: "v=0"}
	f.r.connect(in, f.cfg)
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(f.g.calls(), "reject wacid.IN") {
		if time.Now().After(deadline) {
			t.Fatalf("an inbound call over max_calls was not rejected: %v", f.g.calls())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(f.r.list(false)) != 1 || f.r.list(false)[0].CallID != c.ev.Call.ID {
		t.Errorf("live calls = %+v; want only the outbound one", f.r.list(false))
	}
}

// TestOutboundRefusedBeforeConnect checks the placements refused before
// connect is sent: they hold no slot afterwards.
func TestOutboundRefusedBeforeConnect(t *testing.T) {
	f := newOutboundFixture(t, 1)
	f.g.permission = &whatsapp.Permission{Status: whatsapp.PermissionNone}
	for range 3 {
		_, err := f.r.place(context.Background(), f.cfg, placeRequest{To: "15551234567"})
		var pe *placeError
		if !errors.As(err, &pe) || pe.code != "no_permission" || !errors.Is(err, whatsapp.ErrNoPermission) {
			t.Fatalf("place without permission = %v; want no_permission", err)
		}
	}
	f.g.permission = nil
	f.g.connectErr = &whatsapp.APIError{StatusCode: 400, Code: whatsapp.CodeCallLimit, Message: "limit"}
	_, err := f.r.place(context.Background(), f.cfg, placeRequest{Recipient: "US.1"})
	var pe *placeError
	if !errors.As(err, &pe) || pe.code != "limit_reached" || pe.meta == nil || pe.meta.Code != whatsapp.CodeCallLimit {
		t.Fatalf("place at Meta's call limit = %v; want limit_reached with the meta code", err)
	}
	if f.r.placing != 0 || len(f.r.live) != 0 {
		t.Errorf("after refusals: placing %d, live %d; want 0, 0", f.r.placing, len(f.r.live))
	}
	// A BSUID recipient skips call_permissions (it takes a wa_id only).
	want := []string{"call_permissions 15551234567", "call_permissions 15551234567", "call_permissions 15551234567", "connect US.1"}
	if got := f.g.calls(); !slices.Equal(got, want) {
		t.Errorf("Graph actions = %v; want %v", got, want)
	}
}

// TestOutboundManyAttempts places and ends many calls, answered or not,
// and checks that nothing is left behind.
func TestOutboundManyAttempts(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // after the fixture's cleanup
	f := newOutboundFixture(t, 4)
	for i := range 12 {
		c, err := f.r.place(context.Background(), f.cfg, placeRequest{To: "15551234567"})
		if err != nil {
			t.Fatalf("attempt %d: place: %v", i, err)
		}
		id := c.ev.Call.ID
		switch i % 3 {
		case 0: // declined
			f.r.status(whatsapp.Status{ID: id, Type: "call", Status: "REJECTED"})
		case 1: // answered, then the user hangs up
			f.answerAs(t, id, f.g.offers[len(f.g.offers)-1])
			waitState(t, f.r, id, stateAnswered)
			f.r.terminate(whatsapp.CallEvent{PhoneNumberID: "1", Call: whatsapp.Call{ID: id, Event: "terminate", Status: "COMPLETED"}}, f.cfg)
		case 2: // hung up while ringing
			f.r.hangupCall(id, errHungUpByAPI)
		}
		waitGone(t, f.r)
	}
	if n := len(f.g.offers); n != 12 {
		t.Errorf("connect sent %d offers; want 12", n)
	}
}
