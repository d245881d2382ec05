package whatsappcalls

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/pion/ice/v4"
	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
)

func init() {
	caddy.RegisterModule(App{})
}

// appID is the module ID of the app and the name handlers ask ctx.App for.
const appID = "whatsapp_calls"

// App owns the long-lived resources of the whatsapp_calls handlers of one
// config: the ICE UDP ports, the call registries and the media engines.
// Handlers never bind or start anything in Provision, which also runs in
// `caddy validate` and in a reload that may still fail; they register with
// the app, and the app acquires what they need in Start, once the whole
// config has loaded, and releases it in Stop.
//
// The resources themselves live in process-wide caddy.UsagePools, so that
// the successive configs of a reload share them: the new config's Start
// takes a hold before the old config's Stop drops its own, and a port stays
// bound and every live call goes on. Only the last holder's release (a real
// stop, or a config without the handler) closes the port and ends the
// calls, toward Meta and toward each bot.
//
// The app has no settings. It is created on first use by the handlers; it
// needs no entry in the config.
type App struct {
	mu       *sync.Mutex
	handlers []*Handler
	started  chan struct{} // closed once Start has acquired everything
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  appID,
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets up the app. It acquires nothing.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.mu = new(sync.Mutex)
	a.started = make(chan struct{})
	return nil
}

// register adds a provisioned handler, whose resources Start acquires.
func (a *App) register(h *Handler) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.handlers = append(a.handlers, h)
}

// Start acquires every registered handler's UDP port, registry and engine.
// If any fails, it releases what it acquired, so that a config that fails
// to start changes nothing.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, h := range a.handlers {
		if err := h.start(); err != nil {
			for _, prev := range a.handlers[:i] {
				_ = prev.stop()
			}
			return err
		}
	}
	close(a.started)
	return nil
}

// Stop releases the holds that Start took. On a reload the next config
// holds the same resources already, so nothing closes; on a real stop the
// last release ends every live call and closes the ports.
func (a *App) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, h := range a.handlers {
		errs = append(errs, h.stop())
	}
	return errors.Join(errs...)
}

// startWait bounds how long a webhook that arrives between the HTTP
// server's start and this app's start waits for the app.
const startWait = 2 * time.Second

// waitStarted waits until Start has run, up to startWait or until done.
func (a *App) waitStarted(done <-chan struct{}) bool {
	t := time.NewTimer(startWait)
	defer t.Stop()
	select {
	case <-a.started:
		return true
	case <-t.C:
	case <-done:
	}
	return false
}

// running is what a started handler uses for its calls.
type running struct {
	calls *registry
	cfg   callConfig
}

// handlerHolds are the pool entries one handler holds between start and
// stop. The zero value holds nothing.
type handlerHolds struct {
	mu        sync.Mutex
	muxKey    string
	regKey    string
	notifyKey string
	engine    *media.Engine
	running   atomic.Pointer[running]
}

// start acquires the handler's resources: the shared ICE UDP port (if
// udp_port is not 0), a media engine on it, and the call registry of the
// handler's Meta app. It is idempotent.
func (h *Handler) start() error {
	hold := h.holds
	hold.mu.Lock()
	defer hold.mu.Unlock()
	if hold.running.Load() != nil {
		return nil
	}
	if err := checkICEAddresses(h.networks, localAddrs); err != nil {
		return err
	}
	engineCfg := h.engineCfg
	if port := *h.UDPPort; port > 0 {
		key := fmt.Sprintf("whatsapp_calls/udp/%d", port)
		mux, err := loadUDPMux(key, port, h.networks, h.logger.Named("media"))
		if err != nil {
			return fmt.Errorf("udp_port %d: %w", port, err)
		}
		hold.muxKey = key
		engineCfg.UDPMux = mux
	}
	engine, err := media.NewEngine(engineCfg)
	if err != nil {
		hold.releaseMux()
		return fmt.Errorf("webrtc engine: %w", err)
	}
	hold.engine = engine
	hold.regKey = h.registryKey()
	calls := loadRegistry(hold.regKey, h.metrics)
	cfg := h.callCfg
	cfg.engine = engine
	if h.callback != nil {
		cfg.notify, hold.notifyKey = loadNotifier(*h.callback, h.logger.Named("status_callback"))
	}
	if h.clusterCfg != nil {
		// The cluster node starts with the registry's first holder and
		// stops with its last, so that a reload keeps every lease.
		if err := calls.attachCluster(*h.clusterCfg, cfg); err != nil {
			_, _ = registries.Delete(hold.regKey)
			hold.regKey = ""
			_ = engine.Close()
			hold.engine = nil
			hold.releaseMux()
			if hold.notifyKey != "" {
				_, _ = notifiers.Delete(hold.notifyKey)
				hold.notifyKey = ""
			}
			return err
		}
	}
	hold.running.Store(&running{calls: calls, cfg: cfg})
	directory.add(h)
	return nil
}

// stop releases what start acquired. It is idempotent and safe when start
// never ran. The registry goes first: on a real stop its Destruct ends
// every call, whose media still needs the port until then.
func (h *Handler) stop() error {
	hold := h.holds
	if hold == nil {
		return nil // Provision never got this far
	}
	hold.mu.Lock()
	defer hold.mu.Unlock()
	// A webhook still in flight on a stopping server gets 503, and Meta
	// retries it on the running config.
	hold.running.Store(nil)
	directory.remove(h)
	var errs []error
	if hold.regKey != "" {
		deleted, err := registries.Delete(hold.regKey)
		errs = append(errs, err)
		hold.regKey = ""
		// On a reload the engine's live sessions belong to calls that go
		// on, so the engine stays open for them; once the registry has
		// ended every call, nothing uses it.
		if deleted && hold.engine != nil {
			errs = append(errs, hold.engine.Close())
		}
	}
	// The notifier goes after the registry, so that the calls it ended
	// have queued their events; a real stop drops what is undelivered.
	if hold.notifyKey != "" {
		_, err := notifiers.Delete(hold.notifyKey)
		errs = append(errs, err)
		hold.notifyKey = ""
	}
	errs = append(errs, hold.releaseMux())
	return errors.Join(errs...)
}

func (hold *handlerHolds) releaseMux() error {
	if hold.muxKey == "" {
		return nil
	}
	_, err := udpMuxes.Delete(hold.muxKey)
	hold.muxKey = ""
	return err
}

// registryKey names the call registry of this handler's Meta app, shared by
// the handler's successive configs and by any handler that takes webhooks
// from the same app. The key is the app secret's digest: the app secret is
// what authenticates the webhooks, and Meta's call ids are unique within
// one app. A reload that changes phone_number_ids, the bot or the Graph
// settings keeps the key, so live calls and their terminate webhooks stay
// together; sites of different Meta apps never share call state.
func (h *Handler) registryKey() string {
	sum := sha256.Sum256(append([]byte("whatsapp_calls registry\x00"), h.appSecret...))
	return "whatsapp_calls/calls/" + hex.EncodeToString(sum[:16])
}

// udpMux holds one ICE UDP mux in the udpMuxes pool, so that a config
// reload keeps the port bound.
type udpMux struct{ ice.UDPMux }

// Destruct closes the mux when its last config is cleaned up.
func (m udpMux) Destruct() error { return m.Close() }

// loadUDPMux returns the ICE UDP mux of port from the pool, binding it on
// first use.
func loadUDPMux(key string, port int, networks []netip.Prefix, logger *zap.Logger) (ice.UDPMux, error) {
	v, _, err := udpMuxes.LoadOrNew(key, func() (caddy.Destructor, error) {
		mux, err := media.NewUDPMux(port, networks, logger)
		if err != nil {
			return nil, err
		}
		return udpMux{mux}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(udpMux).UDPMux, nil
}

var (
	registries = caddy.NewUsagePool()
	udpMuxes   = caddy.NewUsagePool()
)

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Destructor  = udpMux{}
)
