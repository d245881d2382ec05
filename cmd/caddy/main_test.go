package main

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestModules checks what the production binary holds: whatsapp_calls and
// Caddy's standard modules, and none of the demo's modules, whose page
// would sign any offer with the real app secret.
func TestModules(t *testing.T) {
	for _, id := range []string{"http.handlers.whatsapp_calls", "whatsapp_calls", "http.handlers.reverse_proxy", "tls"} {
		if _, err := caddy.GetModule(id); err != nil {
			t.Errorf("module %s missing: %v", id, err)
		}
	}
	for _, id := range []string{"http.handlers.whatsapp_simulator", "http.handlers.whatsapp_bot"} {
		if _, err := caddy.GetModule(id); err == nil {
			t.Errorf("module %s is in the production binary; it belongs in cmd/whatsapp-demo only", id)
		}
	}
}
