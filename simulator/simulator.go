package simulator

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Simulator{})
}

//go:embed assets
var assetsFS embed.FS

const (
	defaultPhoneNumberID      = "100000000000001"
	defaultDisplayPhoneNumber = "15550001111"
	defaultCaller             = "15551234567"
	defaultCallerName         = "Simulator"
	// businessAccountID is the WABA id put in every webhook entry.
	businessAccountID = "100000000000000"
	// finishedCalls bounds how many finished calls the simulator remembers.
	finishedCalls = 100
	// webhookTimeout bounds one webhook delivery.
	webhookTimeout = 10 * time.Second
)

// Simulator plays Meta's side of WhatsApp calls for local testing. It serves:
//
//   - a web page (GET /) where a user places a call from the browser: the
//     page sends its WebRTC offer to POST /api/calls; the simulator wraps it
//     in a signed `connect` webhook and posts it to WebhookURL;
//   - the call's progress as Server-Sent Events on
//     GET /api/calls/{id}/events (ringing, pre_accepted with the answer SDP,
//     accepted, rejected, ended, failed), and a hang-up endpoint
//     POST /api/calls/{id}/hangup that sends a signed `terminate` webhook;
//   - a fake Graph API at POST /graph/{version}/{phone_number_id}/calls that
//     checks the bearer token and the request body like Meta does and
//     answers {"success":true}, or, for connect (a business-initiated
//     call), the new call id: the call then rings on the page, which
//     answers with POST /api/calls/{id}/answer or declines with
//     POST /api/calls/{id}/decline, and the simulator sends the statuses
//     and the connect webhook with the page's answer as Meta does;
//   - GET /graph/{version}/{phone_number_id}/call_permissions (a temporary
//     permission) and POST .../messages for the call permission request,
//     which the simulated user accepts at once;
//   - GET /api/calls, the calls with every Graph action and webhook
//     delivery, as JSON.
//
// Paths are relative to where the handler is mounted: behind handle_path
// the prefix is stripped; otherwise mount it at the site root. Requests for
// other paths pass to the next handler.
//
// The simulator is a development tool: its page and API are unauthenticated.
type Simulator struct {
	// WebhookURL is the URL of the whatsapp_calls route that receives the
	// webhooks, such as http://localhost:8080/webhook. Required.
	WebhookURL string `json:"webhook_url,omitempty"`

	// AppSecret signs the webhooks (X-Hub-Signature-256); it must equal
	// whatsapp_calls' app_secret. Placeholders such as {env.*} are resolved
	// when the config loads. Required.
	AppSecret string `json:"app_secret,omitempty"`

	// AccessToken is the bearer token the fake Graph API accepts; it must
	// equal whatsapp_calls' access_token. Placeholders are resolved.
	// Required.
	AccessToken string `json:"access_token,omitempty"`

	// PhoneNumberID is the business phone number id put in webhooks and
	// expected in Graph API paths. Default: 100000000000001.
	PhoneNumberID string `json:"phone_number_id,omitempty"`

	// DisplayPhoneNumber is the business number shown in webhooks and on
	// the page. Default: 15550001111.
	DisplayPhoneNumber string `json:"display_phone_number,omitempty"`

	// Caller is the caller's WhatsApp id (wa_id). Default: 15551234567.
	Caller string `json:"caller,omitempty"`

	// CallerName is the caller's profile name. Default: Simulator.
	CallerName string `json:"caller_name,omitempty"`

	// PublicURL is the address of the simulator's page, logged at startup
	// so that the user knows where to point the browser. Default: the
	// scheme and host of WebhookURL followed by /, which is right when the
	// simulator serves the root of the same site.
	PublicURL string `json:"public_url,omitempty"`

	// AllowRemote lets clients that are not on loopback use the page and
	// its API. The page signs any offer with AppSecret, so keep it off
	// unless the network is yours alone. Default: loopback clients only.
	AllowRemote bool `json:"allow_remote,omitempty"`

	logger *zap.Logger
	client *http.Client
	now    func() time.Time
	mux    *http.ServeMux
	state  *simState
}

// simState is the runtime state, behind a pointer so that Simulator stays
// copyable for CaddyModule.
type simState struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // asynchronous webhook deliveries

	// streamsDone is closed when event streams must end: at server
	// shutdown or Cleanup, whichever comes first.
	streamsDone chan struct{}
	endOnce     sync.Once

	mu       sync.Mutex
	closed   bool
	calls    map[string]*call
	finished []string // ids of finished calls, oldest first
}

// CaddyModule returns the Caddy module information.
func (Simulator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.whatsapp_simulator",
		New: func() caddy.Module { return new(Simulator) },
	}
}

// Provision resolves placeholders, applies defaults and builds the routes.
// It does no network I/O.
func (s *Simulator) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	for _, f := range []struct {
		name string
		val  *string
	}{
		{"webhook", &s.WebhookURL},
		{"app_secret", &s.AppSecret},
		{"access_token", &s.AccessToken},
		{"phone_number_id", &s.PhoneNumberID},
		{"public_url", &s.PublicURL},
	} {
		if *f.val == "" {
			continue
		}
		v, err := repl.ReplaceOrErr(*f.val, true, true)
		if err != nil {
			// The error names the placeholder, never its value.
			return fmt.Errorf("whatsapp_simulator %s: %w", f.name, err)
		}
		*f.val = v
	}
	if err := s.provision(ctx, ctx.Logger(), nil); err != nil {
		return err
	}
	// The server waits for active requests when it shuts down, and an event
	// stream stays active until told to end: end them as shutdown begins.
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil {
		srv.RegisterOnShutdown(s.state.endStreams)
	}
	s.logger.Info("whatsapp call simulator ready: open it in a browser",
		zap.String("url", s.PublicURL),
		zap.String("webhook", s.WebhookURL))
	return nil
}

// provision applies defaults and builds the runtime state; tests call it
// directly with their own HTTP client.
func (s *Simulator) provision(ctx context.Context, logger *zap.Logger, client *http.Client) error {
	if logger == nil {
		logger = zap.NewNop()
	}
	s.logger = logger
	if client == nil {
		client = &http.Client{Timeout: webhookTimeout}
	}
	s.client = client
	if s.now == nil {
		s.now = time.Now
	}
	if s.PhoneNumberID == "" {
		s.PhoneNumberID = defaultPhoneNumberID
	}
	if s.DisplayPhoneNumber == "" {
		s.DisplayPhoneNumber = defaultDisplayPhoneNumber
	}
	if s.Caller == "" {
		s.Caller = defaultCaller
	}
	if s.CallerName == "" {
		s.CallerName = defaultCallerName
	}
	if s.PublicURL == "" && s.WebhookURL != "" {
		if u, err := url.Parse(s.WebhookURL); err == nil && u.Host != "" {
			s.PublicURL = u.Scheme + "://" + u.Host + "/"
		}
	}
	st := &simState{calls: make(map[string]*call), streamsDone: make(chan struct{})}
	st.ctx, st.cancel = context.WithCancel(ctx)
	s.state = st
	s.mux = s.routes()
	return nil
}

// Validate checks the configuration.
func (s *Simulator) Validate() error {
	if s.WebhookURL == "" {
		return fmt.Errorf("whatsapp_simulator: webhook is required")
	}
	u, err := url.Parse(s.WebhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("whatsapp_simulator: webhook %q: want an http or https URL", s.WebhookURL)
	}
	if s.AppSecret == "" {
		return fmt.Errorf("whatsapp_simulator: app_secret is required")
	}
	if s.AccessToken == "" {
		return fmt.Errorf("whatsapp_simulator: access_token is required")
	}
	if strings.Contains(s.PhoneNumberID, "/") {
		return fmt.Errorf("whatsapp_simulator: phone_number_id %q must not contain /", s.PhoneNumberID)
	}
	return nil
}

// Cleanup ends the event streams and waits for pending webhook deliveries.
func (s *Simulator) Cleanup() error {
	if s.state == nil {
		return nil
	}
	s.state.mu.Lock()
	s.state.closed = true
	s.state.mu.Unlock()
	s.state.endStreams()
	s.state.cancel()
	s.state.wg.Wait()
	return nil
}

// endStreams ends every event stream; it is idempotent.
func (st *simState) endStreams() {
	st.endOnce.Do(func() { close(st.streamsDone) })
}

// ServeHTTP serves the page, the page's API and the fake Graph API, and
// passes any other request to next.
// Clients not on loopback get 403 unless AllowRemote is set, and the
// page's POST endpoints take only application/json, which another site's
// page cannot send without a CORS preflight that the simulator never
// grants: no cross-site request can place or end a call.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		return next.ServeHTTP(w, r)
	}
	if !s.AllowRemote && !isLoopbackClient(r) {
		writeError(w, http.StatusForbidden, errors.New("the simulator serves loopback clients only (set allow_remote to serve others)"))
		return nil
	}
	s.mux.ServeHTTP(w, r)
	return nil
}

// isLoopbackClient reports whether the request comes from loopback, by
// the client address Caddy determined (trusted_proxies honoured).
func isLoopbackClient(r *http.Request) bool {
	addr, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if addr == "" {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return false
		}
		addr = host
	}
	ip, err := netip.ParseAddr(addr)
	return err == nil && ip.Unmap().IsLoopback()
}

// requireJSON answers 415 unless the request body is declared
// application/json.
func requireJSON(w http.ResponseWriter, r *http.Request) bool {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, errors.New("Content-Type must be application/json"))
		return false
	}
	return true
}

func (s *Simulator) routes() *http.ServeMux {
	mux := http.NewServeMux()
	assets, err := fs.Sub(assetsFS, "assets")
	if err != nil {
		panic(err) // the embedded directory always exists
	}
	files := http.FileServerFS(assets)
	static := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, assets, "index.html")
	})
	mux.HandleFunc("GET /app.js", static)
	mux.HandleFunc("GET /style.css", static)
	mux.HandleFunc("GET /api/config", s.serveConfig)
	mux.HandleFunc("GET /api/calls", s.serveCallList)
	mux.HandleFunc("POST /api/calls", s.servePlaceCall)
	mux.HandleFunc("GET /api/calls/{id}/events", s.serveEvents)
	mux.HandleFunc("POST /api/calls/{id}/hangup", s.serveHangup)
	mux.HandleFunc("POST /graph/{version}/{phone_number_id}/calls", s.serveGraph)
	mux.HandleFunc("GET /graph/{version}/{phone_number_id}/call_permissions", s.servePermissions)
	mux.HandleFunc("POST /graph/{version}/{phone_number_id}/messages", s.serveMessages)
	mux.HandleFunc("POST /api/calls/{id}/answer", s.serveAnswer)
	mux.HandleFunc("POST /api/calls/{id}/decline", s.serveDecline)
	return mux
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Simulator)(nil)
	_ caddy.Validator             = (*Simulator)(nil)
	_ caddy.CleanerUpper          = (*Simulator)(nil)
	_ caddyhttp.MiddlewareHandler = (*Simulator)(nil)
)
