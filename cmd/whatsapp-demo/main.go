// Command whatsapp-demo is Caddy with the whatsapp_calls plugin and the
// demo modules of the simulator package (whatsapp_simulator, a fake Meta
// with a call page, and whatsapp_bot, an echo or tone bot), to try the
// plugin on one machine:
//
//	go run ./cmd/whatsapp-demo run --config examples/demo.Caddyfile
//
// It is a demo, not a server to deploy: the simulator's page signs any
// offer with the configured app secret. Production builds (cmd/caddy, or
// xcaddy with the plugin) do not include the simulator.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/whatsappcalls/caddy-whatsapp-calls"
	_ "github.com/whatsappcalls/caddy-whatsapp-calls/simulator"
)

func main() {
	caddycmd.Main()
}
