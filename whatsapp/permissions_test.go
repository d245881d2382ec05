package whatsapp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// Bodies as Meta's calling docs show them.
const (
	permissionTemporary = `{"messaging_product":"whatsapp","permission":{"status":"temporary","expiration_time":1745343479},` +
		`"actions":[{"action_name":"send_call_permission_request","can_perform_action":true,"limits":[` +
		`{"time_period":"PT24H","max_allowed":1,"current_usage":0},{"time_period":"P7D","max_allowed":2,"current_usage":1}]},` +
		`{"action_name":"start_call","can_perform_action":true,"limits":[{"time_period":"PT24H","max_allowed":100,"current_usage":3}]}]}`
	permissionNone = `{"messaging_product":"whatsapp","permission":{"status":"no_permission"},` +
		`"actions":[{"action_name":"send_call_permission_request","can_perform_action":true,"limits":[{"time_period":"PT24H","max_allowed":1,"current_usage":0}]},` +
		`{"action_name":"start_call","can_perform_action":false}]}`
	permissionExhausted = `{"messaging_product":"whatsapp","permission":{"status":"permanent"},` +
		`"actions":[{"action_name":"start_call","can_perform_action":false,"limits":[{"time_period":"PT24H","max_allowed":100,"current_usage":100,"limit_expiration_time":1745622600}]}]}`
)

// graphServer answers every request with status and body, and records the
// method, path with query, and body it saw.
func graphServer(t *testing.T, status int, body string) (*Client, *[]string) {
	t.Helper()
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization")+" "+string(b))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return &Client{BaseURL: srv.URL, AccessToken: testToken, HTTPClient: srv.Client()}, &seen
}

func TestCallPermission(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		want       *Permission
		wantCanErr bool   // CanCall fails with ErrNoPermission
		wantCanMsg string // in CanCall's error
		wantErr    string // CallPermission fails with this in its error
		wantCode   int    // the APIError code, if any
	}{
		{
			name: "temporary", status: 200, body: permissionTemporary,
			want: &Permission{Status: "temporary", Expires: 1745343479, Actions: []PermissionAction{
				{Name: ActionSendPermissionRequest, CanPerform: true, Limits: []PermissionLimit{
					{TimePeriod: "PT24H", MaxAllowed: 1}, {TimePeriod: "P7D", MaxAllowed: 2, CurrentUsage: 1}}},
				{Name: ActionStartCall, CanPerform: true, Limits: []PermissionLimit{{TimePeriod: "PT24H", MaxAllowed: 100, CurrentUsage: 3}}},
			}},
		},
		{
			name: "no permission", status: 200, body: permissionNone,
			want: &Permission{Status: "no_permission", Actions: []PermissionAction{
				{Name: ActionSendPermissionRequest, CanPerform: true, Limits: []PermissionLimit{{TimePeriod: "PT24H", MaxAllowed: 1}}},
				{Name: ActionStartCall},
			}},
			wantCanErr: true, wantCanMsg: `no call permission from the user (status "no_permission")`,
		},
		{
			name: "call limit reached", status: 200, body: permissionExhausted,
			want: &Permission{Status: "permanent", Actions: []PermissionAction{
				{Name: ActionStartCall, Limits: []PermissionLimit{{TimePeriod: "PT24H", MaxAllowed: 100, CurrentUsage: 100, Expires: 1745622600}}},
			}},
			wantCanErr: true, wantCanMsg: "start_call limit reached (100 of 100 per PT24H)",
		},
		{
			name: "rate limited", status: 429,
			body:    `{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","type":"OAuthException","code":613,"fbtrace_id":"AX1"}}`,
			wantErr: "call_permissions: graph api error (http 429)", wantCode: CodeRateLimited,
		},
		{
			name: "no status", status: 200, body: `{"messaging_product":"whatsapp"}`,
			wantErr: "call_permissions: graph api did not report success: no permission status",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, seen := graphServer(t, tt.status, tt.body)
			got, err := c.CallPermission(context.Background(), testPhone, "15551234567")
			if wantReq := "GET /v23.0/" + testPhone + "/call_permissions?user_wa_id=15551234567 Bearer " + testToken + " "; len(*seen) != 1 || (*seen)[0] != wantReq {
				t.Errorf("requests = %q; want [%q]", *seen, wantReq)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CallPermission() = %v; want an error containing %q", err, tt.wantErr)
				}
				if tt.wantCode != 0 && !IsCode(err, tt.wantCode) {
					t.Errorf("IsCode(%v, %d) = false; want true", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("CallPermission() = %v; want nil", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CallPermission() = %+v\nwant %+v", got, tt.want)
			}
			canErr := got.CanCall()
			if (canErr != nil) != tt.wantCanErr || (canErr != nil && !errors.Is(canErr, ErrNoPermission)) {
				t.Fatalf("CanCall() = %v; want error %v wrapping ErrNoPermission", canErr, tt.wantCanErr)
			}
			if canErr != nil && !strings.Contains(canErr.Error(), tt.wantCanMsg) {
				t.Errorf("CanCall() = %q; want it to contain %q", canErr, tt.wantCanMsg)
			}
		})
	}
}

func TestSendPermissionRequest(t *testing.T) {
	tests := []struct {
		name     string
		req      PermissionRequest
		status   int
		reply    string
		wantBody string
		wantID   string
		wantErr  string
		wantCode int
	}{
		{
			name:   "to a wa_id",
			req:    PermissionRequest{To: "15551234567", Body: "May we call you about order 1234?"},
			status: 200,
			reply:  `{"messaging_product":"whatsapp","contacts":[{"input":"15551234567","wa_id":"15551234567"}],"messages":[{"id":"wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI"}]}`,
			wantBody: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"15551234567","type":"interactive",` +
				`"interactive":{"type":"call_permission_request","action":{"name":"call_permission_request"},"body":{"text":"May we call you about order 1234?"}}}`,
			wantID: "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI",
		},
		{
			name:   "to a bsuid",
			req:    PermissionRequest{Recipient: "US.13491208655302741918", Body: "Call?"},
			status: 200,
			reply:  `{"messaging_product":"whatsapp","messages":[{"id":"wamid.X"}]}`,
			wantBody: `{"messaging_product":"whatsapp","recipient_type":"individual","recipient":"US.13491208655302741918","type":"interactive",` +
				`"interactive":{"type":"call_permission_request","action":{"name":"call_permission_request"},"body":{"text":"Call?"}}}`,
			wantID: "wamid.X",
		},
		{
			name:   "request limit",
			req:    PermissionRequest{To: "15551234567", Body: "Call?"},
			status: 400,
			reply:  `{"error":{"message":"(#138009) Call permission request limit reached","type":"OAuthException","code":138009,"error_data":{"messaging_product":"whatsapp","details":"1 per 24 hours"},"fbtrace_id":"AY2"}}`,
			wantBody: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"15551234567","type":"interactive",` +
				`"interactive":{"type":"call_permission_request","action":{"name":"call_permission_request"},"body":{"text":"Call?"}}}`,
			wantErr:  "send call_permission_request: graph api error (http 400): (#138009) Call permission request limit reached",
			wantCode: 138009,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, seen := graphServer(t, tt.status, tt.reply)
			id, err := c.SendPermissionRequest(context.Background(), testPhone, tt.req)
			if wantReq := "POST /v23.0/" + testPhone + "/messages Bearer " + testToken + " " + tt.wantBody; len(*seen) != 1 || (*seen)[0] != wantReq {
				t.Errorf("requests = %q\nwant [%q]", *seen, wantReq)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !IsCode(err, tt.wantCode) {
					t.Fatalf("SendPermissionRequest() = %v; want an error with code %d containing %q", err, tt.wantCode, tt.wantErr)
				}
				return
			}
			if err != nil || id != tt.wantID {
				t.Fatalf("SendPermissionRequest() = %q, %v; want %q, nil", id, err, tt.wantID)
			}
		})
	}
}

func TestPermissionMissingParameters(t *testing.T) {
	c, seen := graphServer(t, 200, `{}`)
	ctx := context.Background()
	errs := []error{
		func() error { _, err := c.CallPermission(ctx, testPhone, ""); return err }(),
		func() error {
			_, err := c.SendPermissionRequest(ctx, testPhone, PermissionRequest{Body: "x"})
			return err
		}(),
		func() error {
			_, err := c.SendPermissionRequest(ctx, testPhone, PermissionRequest{To: "1", Recipient: "US.1", Body: "x"})
			return err
		}(),
		func() error {
			_, err := c.SendPermissionRequest(ctx, testPhone, PermissionRequest{To: "1"})
			return err
		}(),
		func() error {
			_, err := c.Connect(ctx, testPhone, ConnectRequest{To: "1", Recipient: "US.1", OfferSDP: testSDP})
			return err
		}(),
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: err = nil; want an error", i)
		}
	}
	if len(*seen) != 0 {
		t.Errorf("server saw %d requests; want 0", len(*seen))
	}
}

func TestCallPermissionErrorHidesNumber(t *testing.T) {
	c := &Client{BaseURL: "http://127.0.0.1:1", AccessToken: testToken}
	_, err := c.CallPermission(context.Background(), testPhone, "15551234567")
	if err == nil || strings.Contains(err.Error(), "15551234567") {
		t.Errorf("CallPermission() against a closed port = %v; want an error without the user's number", err)
	}
}
