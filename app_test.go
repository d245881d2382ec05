package whatsappcalls

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
)

// testHandler is a handler as Provision leaves it, with no Caddy context.
func testHandler(secret string, port int) *Handler {
	networks := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	return &Handler{
		UDPPort:   &port,
		appSecret: []byte(secret),
		networks:  networks,
		engineCfg: media.EngineConfig{Networks: networks, OpusComplexity: -1},
		callCfg:   callConfig{logger: zap.NewNop(), maxCalls: 1},
		holds:     new(handlerHolds),
		logger:    zap.NewNop(),
	}
}

func testApp(handlers ...*Handler) *App {
	a := &App{mu: new(sync.Mutex), started: make(chan struct{}), logger: zap.NewNop()}
	for _, h := range handlers {
		a.register(h)
	}
	return a
}

func references(pool interface {
	References(any) (int, bool)
}, key string,
) int {
	n, _ := pool.References(key)
	return n
}

// TestAppStartFailureReleasesAll starts a config whose second handler's
// udp_port is taken: Start fails naming the port, and the first handler's
// registry and engine are released again, so the failed config holds
// nothing.
func TestAppStartFailureReleasesAll(t *testing.T) {
	held, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.LocalAddr().(*net.UDPAddr).Port

	first, second := testHandler("app-start-failure-a", 0), testHandler("app-start-failure-b", port)
	app := testApp(first, second)
	err = app.Start()
	if err == nil || !strings.Contains(err.Error(), "udp_port ") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start() = %v; want udp_port ...: address already in use", err)
	}
	for _, h := range []*Handler{first, second} {
		if n := references(registries, h.registryKey()); n != 0 {
			t.Errorf("registry of %s has %d holders after the failed start; want 0", h.appSecret, n)
		}
		if h.holds.running.Load() != nil {
			t.Errorf("handler %s runs after the failed start", h.appSecret)
		}
	}
	if err := app.Stop(); err != nil {
		t.Errorf("Stop() after a failed Start = %v", err)
	}
}

// TestAppReloadSharesResources plays a reload: the next config's app
// starts while the previous one runs, and only the last Stop lets go of
// the UDP port and the registry.
func TestAppReloadSharesResources(t *testing.T) {
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()

	oldH, newH := testHandler("app-reload", port), testHandler("app-reload", port)
	oldApp, newApp := testApp(oldH), testApp(newH)
	if err := oldApp.Start(); err != nil {
		t.Fatal(err)
	}
	if err := newApp.Start(); err != nil {
		t.Fatalf("the next config's Start() = %v; want the port shared, not bound again", err)
	}
	muxKey := oldH.holds.muxKey
	if n := references(udpMuxes, muxKey); n != 2 {
		t.Errorf("UDP port has %d holders during the reload; want 2", n)
	}
	if oldH.holds.running.Load().calls != newH.holds.running.Load().calls {
		t.Error("the configs of one Meta app use different registries; want one, so live calls stay reachable")
	}
	if err := oldApp.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := references(udpMuxes, muxKey); n != 1 {
		t.Errorf("UDP port has %d holders after the old config stopped; want 1", n)
	}
	if err := newApp.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := references(udpMuxes, muxKey); n != 0 {
		t.Errorf("UDP port has %d holders after a real stop; want 0", n)
	}
	rebound, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatalf("port %d still bound after a real stop: %v", port, err)
	}
	rebound.Close()
}
