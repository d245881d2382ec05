// Command caddy is Caddy with the whatsapp_calls plugin (and its demo
// simulator and bot) compiled in, so that `go run ./cmd/caddy` works
// without xcaddy, as caddy-l4's cmd/caddy does.
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
