package whatsappcalls

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Status callback events, the "event" of a callback body.
const (
	eventInitiated       = "initiated"        // an outbound call was placed (connect returned its id)
	eventRinging         = "ringing"          // the user's phone rings
	eventAnswered        = "answered"         // the user picked up (outbound) or we accepted (inbound); the bot is connected
	eventEnded           = "ended"            // the call or attempt ended; see reason
	eventPermissionReply = "permission_reply" // a user answered a call permission request
)

// Headers of a status callback request.
const (
	callbackSignatureHeader = "X-Whatsapp-Calls-Signature"
	callbackTimestampHeader = "X-Whatsapp-Calls-Timestamp"
	callbackEventHeader     = "X-Whatsapp-Calls-Event"
)

// Delivery bounds of the status callback.
const (
	// callbackQueue is how many events wait for delivery; when the
	// receiver is so slow that it fills, new events are dropped (and
	// logged), so that no call ever waits for the receiver.
	callbackQueue    = 256
	callbackAttempts = 3               // deliveries of one event, retries included
	callbackBackoff  = time.Second     // before the first retry; doubled for each next one
	callbackTimeout  = 5 * time.Second // per attempt
	callbackMaxReply = 4 << 10         // bytes of a reply read (and discarded)
)

// statusEvent is the JSON body of one status callback.
type statusEvent struct {
	Event         string `json:"event"`
	CallID        string `json:"call_id,omitempty"`
	Direction     string `json:"direction,omitempty"` // "outbound" or "inbound"
	PhoneNumberID string `json:"phone_number_id,omitempty"`
	// To is the user called (a wa_id) or Recipient their BSUID, for
	// outbound calls; From is the caller of an inbound call.
	To            string    `json:"to,omitempty"`
	Recipient     string    `json:"recipient,omitempty"`
	From          string    `json:"from,omitempty"`
	Timestamp     time.Time `json:"timestamp"`
	TwilioCallSID string    `json:"twilio_call_sid,omitempty"`
	// BizOpaqueCallbackData is what the call was placed or accepted with.
	BizOpaqueCallbackData string `json:"biz_opaque_callback_data,omitempty"`
	// Reason says why an ended call ended (see the README's table).
	Reason string `json:"reason,omitempty"`
	// Status is Meta's status of a terminated call, as sent.
	Status string `json:"status,omitempty"`
	// DurationSeconds is how long an ended call was connected.
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
	// Errors are Meta's error codes: of the Graph API call that failed,
	// or of the terminate webhook.
	Errors     []callbackError  `json:"errors,omitempty"`
	Permission *permissionReply `json:"permission,omitempty"`
}

// callbackError is one of Meta's errors in a status callback.
type callbackError struct {
	Code    int    `json:"code"`
	Message string `json:"message,omitempty"`
}

// permissionReply is a call permission reply in a status callback.
type permissionReply struct {
	Response       string     `json:"response"`
	IsPermanent    bool       `json:"is_permanent"`
	Expires        *time.Time `json:"expires,omitempty"`
	ResponseSource string     `json:"response_source,omitempty"`
	MessageID      string     `json:"message_id,omitempty"`
	FromUserID     string     `json:"from_user_id,omitempty"`
}

// callbackConfig is the status_callback configuration of a handler, with
// its secrets resolved.
type callbackConfig struct {
	url    string
	secret string
	header http.Header
}

// key names the notifier of this configuration in the notifiers pool:
// successive configs with the same receiver share one, so a reload loses
// no queued event.
func (c callbackConfig) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", c.url, c.secret)
	names := make([]string, 0, len(c.header))
	for k := range c.header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(h, "%s\x00%s\x00", k, strings.Join(c.header[k], "\x00"))
	}
	return "whatsapp_calls/callback/" + hex.EncodeToString(h.Sum(nil)[:16])
}

var notifiers = caddy.NewUsagePool()

// loadNotifier returns the notifier of cfg from the pool, creating it on
// first use. It starts nothing: its worker starts with the first event.
func loadNotifier(cfg callbackConfig, logger *zap.Logger) (*notifier, string) {
	key := cfg.key()
	v, _, _ := notifiers.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newNotifier(cfg, logger), nil
	})
	return v.(*notifier), key
}

// notifier delivers status callbacks, in order, from one worker goroutine
// that it owns. send never blocks.
type notifier struct {
	cfg    callbackConfig
	client *http.Client
	logger *zap.Logger
	now    func() time.Time
	sleep  func(context.Context, time.Duration) bool
	// delivered, if set, is called after each event's last attempt
	// (tests wait on it).
	delivered func()

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool
	closed  bool
	queue   chan statusEvent
}

func newNotifier(cfg callbackConfig, logger *zap.Logger) *notifier {
	ctx, cancel := context.WithCancel(context.Background())
	return &notifier{
		cfg:    cfg,
		client: &http.Client{Timeout: callbackTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		logger: logger,
		now:    time.Now,
		sleep:  sleepCtx,
		ctx:    ctx,
		cancel: cancel,
		queue:  make(chan statusEvent, callbackQueue),
	}
}

// send queues ev for delivery. A nil notifier (no status_callback) does
// nothing. A full queue or a closed notifier drops the event with a
// warning: a call never waits for the receiver.
func (n *notifier) send(ev statusEvent) {
	if n == nil {
		return
	}
	if ev.Timestamp.IsZero() {
		ev.Timestamp = n.now().UTC()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		n.logger.Debug("status callback dropped: stopping", zap.String("event", ev.Event), zap.String("call_id", ev.CallID))
		return
	}
	if !n.started {
		n.started = true
		n.wg.Add(1)
		go n.run()
	}
	select {
	case n.queue <- ev:
	default:
		n.logger.Warn("status callback dropped: queue full (receiver too slow or down)",
			zap.String("event", ev.Event), zap.String("call_id", ev.CallID), zap.Int("queue", callbackQueue))
	}
}

// Destruct stops the worker, dropping events not yet delivered, and waits
// for it.
func (n *notifier) Destruct() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
	return nil
}

func (n *notifier) run() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case ev := <-n.queue:
			n.deliver(ev)
			if n.delivered != nil {
				n.delivered()
			}
		}
	}
}

// deliver posts ev, retrying a network error, a 5xx or a 429 up to
// callbackAttempts times with a doubling backoff.
func (n *notifier) deliver(ev statusEvent) {
	body, err := json.Marshal(ev)
	if err != nil {
		n.logger.Error("status callback not encoded", zap.Error(err))
		return
	}
	backoff := callbackBackoff
	var last error
	for attempt := 1; attempt <= callbackAttempts; attempt++ {
		retry, err := n.post(ev.Event, body)
		if err == nil {
			return
		}
		last = err
		if !retry || attempt == callbackAttempts || !n.sleep(n.ctx, backoff) {
			break
		}
		backoff *= 2
	}
	n.logger.Warn("status callback not delivered",
		zap.String("event", ev.Event), zap.String("call_id", ev.CallID), zap.Error(last))
}

// post makes one delivery attempt, and says whether a failure is worth a
// retry.
func (n *notifier) post(event string, body []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(n.ctx, callbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("status_callback: %w", err)
	}
	for k, vs := range n.cfg.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	ts := strconv.FormatInt(n.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "caddy-whatsapp-calls")
	req.Header.Set(callbackEventHeader, event)
	req.Header.Set(callbackTimestampHeader, ts)
	if n.cfg.secret != "" {
		req.Header.Set(callbackSignatureHeader, "sha256="+signCallback(n.cfg.secret, ts, body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("status_callback: %w", redactURL(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, callbackMaxReply))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("status_callback answered http %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("status_callback answered http %d", resp.StatusCode)
	}
}

// signCallback returns the lowercase hex HMAC-SHA256, keyed with secret,
// of the timestamp, a dot and the body: what a receiver recomputes to
// trust a callback (and, with the timestamp, to refuse a replay).
func signCallback(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// redactURL drops the URL from a client error: its query may carry a
// secret.
func redactURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// sleepCtx waits d or until ctx is done, and reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Interface guards
var _ caddy.Destructor = (*notifier)(nil)
