package whatsappcalls

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

func TestConnectAge(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const maxAge = time.Minute
	tests := []struct {
		name      string
		timestamp whatsapp.Time
		maxAge    time.Duration
		wantAge   time.Duration
		wantOK    bool
	}{
		{"now", whatsapp.Time(now.Unix()), maxAge, 0, true},
		{"a few seconds old", whatsapp.Time(now.Unix() - 3), maxAge, 3 * time.Second, true},
		{"exactly max age", whatsapp.Time(now.Unix() - 60), maxAge, time.Minute, true},
		{"one second past max age", whatsapp.Time(now.Unix() - 61), maxAge, 61 * time.Second, false},
		{"a day old replay", whatsapp.Time(now.Unix() - 86400), maxAge, 24 * time.Hour, false},
		{"slightly in the future", whatsapp.Time(now.Unix() + 5), maxAge, -5 * time.Second, true},
		{"far in the future", whatsapp.Time(now.Unix() + 3600), maxAge, -time.Hour, false},
		{"no timestamp", 0, maxAge, 0, true},
		{"check off", whatsapp.Time(now.Unix() - 86400), 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := whatsapp.CallEvent{Call: whatsapp.Call{ID: "wacid.x", Timestamp: tt.timestamp}}
			age, ok := connectAge(ev, now, tt.maxAge)
			if age != tt.wantAge || ok != tt.wantOK {
				t.Errorf("connectAge(%d, %d, %s) = %s, %v; want %s, %v", tt.timestamp, now.Unix(), tt.maxAge, age, ok, tt.wantAge, tt.wantOK)
			}
		})
	}
}

// TestRegistryIgnoresReplayedConnect replays a signed connect after the
// dedupe window has forgotten its id (or after a restart): with a fixed
// clock, the stale connect makes no Graph call and starts no call, while
// a fresh connect is handled (here: rejected over max_calls 0).
func TestRegistryIgnoresReplayedConnect(t *testing.T) {
	captured := time.Unix(1_800_000_000, 0)
	now := captured.Add(2 * time.Hour)
	g := &recordingGraph{}
	r := newRegistry(nil)
	r.now = func() time.Time { return now }
	cfg := callConfig{logger: zap.NewNop(), graph: g, maxCalls: 0, maxConnectAge: DefaultMaxConnectAge}

	replay := connectEvent("wacid.replayed")
	replay.Call.Timestamp = whatsapp.Time(captured.Unix())
	fresh := connectEvent("wacid.fresh")
	fresh.Call.Timestamp = whatsapp.Time(now.Add(-2 * time.Second).Unix())
	r.connect(replay, cfg)
	r.connect(fresh, cfg)
	if err := r.Destruct(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"reject wacid.fresh"}; !reflect.DeepEqual(g.actions, want) {
		t.Errorf("Graph actions = %v; want %v (nothing for the replay)", g.actions, want)
	}
	if _, seen := r.seen["wacid.replayed"]; seen {
		t.Error("the replayed call id was remembered; want it ignored before dedupe")
	}
}

// failingGraph answers each action with the error in errs, and records
// the actions asked of it.
type failingGraph struct {
	recordingGraph
	errs map[string]error
}

func (g *failingGraph) Reject(ctx context.Context, p, callID string) error {
	_ = g.recordingGraph.Reject(ctx, p, callID)
	return g.errs["reject"]
}

func (g *failingGraph) Terminate(ctx context.Context, p, callID string) error {
	_ = g.recordingGraph.Terminate(ctx, p, callID)
	return g.errs["terminate"]
}

func TestFailAccept(t *testing.T) {
	graph4xx := &whatsapp.APIError{StatusCode: http.StatusBadRequest, Code: 138000, Message: "call not found"}
	graph5xx := &whatsapp.APIError{StatusCode: http.StatusInternalServerError, Code: 131000}
	tests := []struct {
		name      string
		acceptErr error
		graphErrs map[string]error
		hungUp    bool
		want      []string
	}{
		{"graph 4xx: not accepted, rejected", fmt.Errorf("accept: %w", graph4xx), nil, false, []string{"reject wacid.x"}},
		{"graph 5xx: maybe accepted, terminated", fmt.Errorf("accept: %w", graph5xx), nil, false, []string{"terminate wacid.x"}},
		{"timeout: maybe accepted, terminated", fmt.Errorf("accept: %w", context.DeadlineExceeded), nil, false, []string{"terminate wacid.x"}},
		{"2xx without success: terminated", fmt.Errorf("accept: %w", whatsapp.ErrNotSuccess), nil, false, []string{"terminate wacid.x"}},
		{"nothing sent: rejected", fmt.Errorf("accept: %w", whatsapp.ErrMissingParameter), nil, false, []string{"reject wacid.x"}},
		{
			"terminate refused with 4xx: then rejected",
			fmt.Errorf("accept: %w", context.DeadlineExceeded), map[string]error{"terminate": graph4xx}, false,
			[]string{"terminate wacid.x", "reject wacid.x"},
		},
		{
			"terminate fails with 5xx: no reject",
			fmt.Errorf("accept: %w", context.DeadlineExceeded), map[string]error{"terminate": graph5xx}, false,
			[]string{"terminate wacid.x"},
		},
		{"caller hung up meanwhile: Meta knows", fmt.Errorf("accept: %w", context.Canceled), nil, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &failingGraph{errs: tt.graphErrs}
			r := newRegistry(nil)
			ctx, hangup := context.WithCancelCause(context.Background())
			defer hangup(nil)
			if tt.hungUp {
				hangup(errCallerHungUp)
			}
			c := &call{ev: connectEvent("wacid.x"), received: time.Now(), ctx: ctx, hangup: hangup}
			r.failAccept(c, callConfig{logger: zap.NewNop(), graph: g}, tt.acceptErr)
			if !reflect.DeepEqual(g.actions, tt.want) {
				t.Errorf("failAccept(%v): Graph actions = %v; want %v", tt.acceptErr, g.actions, tt.want)
			}
		})
	}
}

// usernameEvent is a call from a user who shares no phone number.
var usernameEvent = whatsapp.CallEvent{
	PhoneNumberID: "106540352242922",
	CallerName:    "Jane",
	Contact: whatsapp.Contact{
		Profile: whatsapp.Profile{Name: "Jane", Username: "jane.doe"},
		UserID:  "US.1349", ParentUserID: "US.ENT.1181",
	},
	Call: whatsapp.Call{
		ID: "wacid.NOPHONE", To: "15550001111", FromUserID: "US.1349", Event: whatsapp.EventConnect,
		DeeplinkPayload: "spring sale", CTAPayload: "btn-42",
	},
}

func TestBotConfigForUsernameCaller(t *testing.T) {
	tmpl := botTemplate{
		url:      "wss://bot.example/{whatsapp.username}?u={whatsapp.from_user_id}&p={whatsapp.from_parent_user_id}&d={whatsapp.deeplink_payload}&f={whatsapp.from}",
		header:   http.Header{"X-Cta": {"{whatsapp.cta_payload}"}},
		params:   []bot.Param{{Name: "who", Value: "{whatsapp.caller_name} ({whatsapp.username})"}},
		protocol: bot.Twilio,
	}
	if err := tmpl.check(caddy.NewReplacer()); err != nil {
		t.Fatalf("check() = %v; want the new placeholders known", err)
	}
	cfg, err := tmpl.config(usernameEvent, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if want := "wss://bot.example/jane.doe?u=US.1349&p=US.ENT.1181&d=spring+sale&f="; cfg.URL != want {
		t.Errorf("URL = %q; want %q", cfg.URL, want)
	}
	if got := cfg.Header.Get("X-Cta"); got != "btn-42" {
		t.Errorf("X-Cta header = %q; want btn-42", got)
	}
	if want := []bot.Param{{Name: "who", Value: "Jane (jane.doe)"}}; !reflect.DeepEqual(cfg.Params, want) {
		t.Errorf("Params = %v; want %v", cfg.Params, want)
	}
	want := bot.CallInfo{
		CallID: "wacid.NOPHONE", To: "15550001111", PhoneNumberID: "106540352242922", CallerName: "Jane",
		FromUserID: "US.1349", FromParentUserID: "US.ENT.1181", Username: "jane.doe",
		DeeplinkPayload: "spring sale", CTAPayload: "btn-42",
	}
	if !reflect.DeepEqual(cfg.Call, want) {
		t.Errorf("Call = %+v; want %+v", cfg.Call, want)
	}
}

func TestCallbackData(t *testing.T) {
	long := strings.Repeat("é", maxCallbackData) // 512 characters, 1024 bytes
	tests := []struct {
		name     string
		template string
		ev       whatsapp.CallEvent
		want     string
	}{
		{"none", "", usernameEvent, ""},
		{"placeholders", "call={whatsapp.call_id};user={whatsapp.from_user_id};cta={whatsapp.cta_payload}", usernameEvent,
			"call=wacid.NOPHONE;user=US.1349;cta=btn-42"},
		{"512 characters is allowed", long, usernameEvent, long},
		{"over 512 after placeholders is not sent", long[:len(long)-2] + "{whatsapp.cta_payload}", usernameEvent, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := callConfig{callbackData: tt.template}
			if got := cfg.callbackDataFor(tt.ev, zap.NewNop()); got != tt.want {
				t.Errorf("callbackDataFor(%q) = %q; want %q", tt.template, got, tt.want)
			}
		})
	}
}

func TestCheckCallbackData(t *testing.T) {
	t.Setenv("CALLBACK_TENANT", "acme")
	tests := []struct {
		name     string
		template string
		wantErr  string
	}{
		{"empty", "", ""},
		{"env and call placeholders", "{env.CALLBACK_TENANT}:{whatsapp.call_id}", ""},
		{"unknown placeholder", "{whatsapp.nope}", "biz_opaque_callback_data: unrecognized placeholder {whatsapp.nope}"},
		{"too long already", strings.Repeat("x", 513), "biz_opaque_callback_data: 513 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkCallbackData(caddy.NewReplacer(), tt.template)
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("checkCallbackData(%q) = %v; want %q", tt.template, err, tt.wantErr)
			}
		})
	}
}

func TestAcceptMayHaveSucceeded(t *testing.T) {
	tests := []struct {
		give error
		want bool
	}{
		{&whatsapp.APIError{StatusCode: 400}, false},
		{&whatsapp.APIError{StatusCode: 404}, false},
		{&whatsapp.APIError{StatusCode: 429}, false},
		{&whatsapp.APIError{StatusCode: 500}, true},
		{&whatsapp.APIError{StatusCode: 200, Code: 1}, true},
		{whatsapp.ErrMissingParameter, false},
		{whatsapp.ErrNotSuccess, true},
		{context.DeadlineExceeded, true},
		{errors.New("connection reset by peer"), true},
	}
	for _, tt := range tests {
		if got := acceptMayHaveSucceeded(fmt.Errorf("accept call wacid.x: %w", tt.give)); got != tt.want {
			t.Errorf("acceptMayHaveSucceeded(%v) = %v; want %v", tt.give, got, tt.want)
		}
	}
}

func TestBotTemplateCheckParamClash(t *testing.T) {
	tmpl := botTemplate{url: "ws://127.0.0.1:1/", protocol: bot.Twilio, params: []bot.Param{{Name: "username", Value: "x"}}}
	err := tmpl.check(caddy.NewReplacer())
	if !errors.Is(err, bot.ErrInvalidParam) || !strings.Contains(err.Error(), `bot_param: invalid bot parameter: "username" is already set`) {
		t.Errorf("check() = %v; want a bot_param clash error", err)
	}
}
