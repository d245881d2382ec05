// Command caddy is Caddy with its standard modules and the whatsapp_calls
// plugin compiled in, so that `go build ./cmd/caddy` makes a production
// binary without xcaddy, as caddy-l4's cmd/caddy does. The demo modules
// (the simulator and the demo bot) are in cmd/whatsapp-demo only.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/whatsappcalls/caddy-whatsapp-calls"
)

func main() {
	caddycmd.Main()
}
