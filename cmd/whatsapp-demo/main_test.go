package main

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestModules checks that the demo binary holds the plugin and both demo
// modules that examples/demo.Caddyfile uses.
func TestModules(t *testing.T) {
	for _, id := range []string{"http.handlers.whatsapp_calls", "http.handlers.whatsapp_simulator", "http.handlers.whatsapp_bot"} {
		if _, err := caddy.GetModule(id); err != nil {
			t.Errorf("module %s missing: %v", id, err)
		}
	}
}
