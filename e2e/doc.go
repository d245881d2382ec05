// Package e2e holds the browser end-to-end test: Chromium, driven by
// chromedp, places real calls from the simulator's page through
// whatsapp_calls to the demo bot, all in one Caddy.
//
// It is a Go module of its own, so that chromedp and its dependencies stay
// out of the plugin's go.mod, which carries only what users build. Run it
// from this directory: `go vet ./... && go test -race ./...`. It skips,
// saying so, when no Chromium is installed (`apt-get install -y chromium`).
package e2e
