package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// TestEchoWebhookChecks covers the floor's webhook front door: signature on
// the raw body, then parsing. No call is started (no connect event with an
// offer), so nothing touches the network.
func TestEchoWebhookChecks(t *testing.T) {
	const secret = "s3cret"
	s := &echoServer{
		cfg:   echoConfig{AppSecret: secret, MaxBodyBytes: 1 << 10},
		ctx:   context.Background(),
		calls: map[string]*echoCall{},
	}
	messages := `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{}}]}]}`
	terminate, err := terminateWebhook("1", "wacid.unknown", "15551234567", testTime, testTime)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		method string
		body   string
		sig    string
		want   int
	}{
		{"get", http.MethodGet, "", "", http.StatusMethodNotAllowed},
		{"unsigned", http.MethodPost, messages, "", http.StatusUnauthorized},
		{"wrong signature", http.MethodPost, messages, whatsapp.Sign([]byte("other"), []byte(messages)), http.StatusForbidden},
		{"too large", http.MethodPost, strings.Repeat(" ", 2<<10), "", http.StatusRequestEntityTooLarge},
		{"malformed", http.MethodPost, "[1]", whatsapp.Sign([]byte(secret), []byte("[1]")), http.StatusBadRequest},
		{"messages field", http.MethodPost, messages, whatsapp.Sign([]byte(secret), []byte(messages)), http.StatusOK},
		{"terminate of an unknown call", http.MethodPost, string(terminate), whatsapp.Sign([]byte(secret), terminate), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/webhook", strings.NewReader(tt.body))
			if tt.sig != "" {
				req.Header.Set("X-Hub-Signature-256", tt.sig)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("%s %s: status %d; want %d", tt.method, tt.name, rec.Code, tt.want)
			}
		})
	}
	if len(s.calls) != 0 {
		t.Errorf("%d calls started; want none", len(s.calls))
	}
}
