package bot

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// Dial retry backoff: the first retry waits initialBackoff, each later one
// twice as long, at most maxBackoff.
const (
	initialBackoff = 50 * time.Millisecond
	maxBackoff     = 400 * time.Millisecond
)

// Dial connects to the bot and sends the dialect's opening messages: Twilio
// `connected` then `start`; Vonage the `websocket:connected` text frame.
//
// Connection errors and 5xx handshake answers are retried with a short
// backoff until cfg.DialTimeout is spent; the error then wraps
// ErrBotUnreachable and the last failure. Other handshake answers (401, 403,
// 404...) and TLS certificate errors fail at once. Configuration errors wrap
// ErrInvalidURL, ErrUnknownProtocol, ErrSampleRate or ErrInvalidParam.
// ctx bounds the dial and the opening messages only, not the connection.
//
// The caller must Close the returned Conn.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.Protocol == "" {
		cfg.Protocol = Twilio
	}
	u, err := checkURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	d, rate, err := newDialect(&cfg)
	if err != nil {
		return nil, err
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.ReadLimit <= 0 {
		cfg.ReadLimit = DefaultReadLimit
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	logger = logger.With(zap.String("call_id", cfg.Call.CallID), zap.String("bot_protocol", string(cfg.Protocol)))

	client, transport := privateClient(cfg.HTTPClient)
	opts := &websocket.DialOptions{
		HTTPClient: client,
		HTTPHeader: cfg.Header.Clone(),
	}
	if opts.HTTPHeader == nil {
		opts.HTTPHeader = make(http.Header)
	}
	if host := opts.HTTPHeader.Get("Host"); host != "" {
		opts.Host = host
		opts.HTTPHeader.Del("Host")
	}
	if cfg.SigningKey != "" {
		opts.HTTPHeader.Set("X-Twilio-Signature", twilioSignature(cfg.SigningKey, cfg.URL))
	}

	ws, attempts, err := dialWithRetry(ctx, cfg.URL, u, opts, cfg.DialTimeout, logger)
	if transport != nil {
		// Failed attempts may have left pooled connections behind.
		transport.CloseIdleConnections()
	}
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(cfg.ReadLimit)

	c := newConn(ws, d, rate, cfg, logger)
	if err := c.sendOpening(ctx); err != nil {
		_ = ws.CloseNow()
		c.readCancel()
		return nil, fmt.Errorf("send opening messages to bot %s: %w", u.Redacted(), err)
	}
	c.start()
	logger.Debug("bot connected",
		zap.String("bot_host", u.Host),
		zap.Int("sample_rate", rate),
		zap.Int("attempts", attempts))
	return c, nil
}

// safeURL is a bot URL that is safe to print: no user info and no query.
type safeURL struct {
	*url.URL
}

// Redacted returns scheme://host/path, with "?REDACTED" if there was a query.
func (u safeURL) Redacted() string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	s := r.String()
	if u.RawQuery != "" || u.ForceQuery {
		s += "?REDACTED"
	}
	return s
}

// checkURL parses a bot URL and requires an absolute ws:// or wss:// URL.
func checkURL(raw string) (safeURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse errors quote the whole input, query included.
		return safeURL{}, fmt.Errorf("%w: unparsable", ErrInvalidURL)
	}
	su := safeURL{u}
	if (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return safeURL{}, fmt.Errorf("%w %s: want ws://host/... or wss://host/...", ErrInvalidURL, su.Redacted())
	}
	return su, nil
}

// twilioSignature computes X-Twilio-Signature for a request without POST
// parameters: base64(HMAC-SHA1(key, url)). See
// https://www.twilio.com/docs/usage/webhooks/webhooks-security.
func twilioSignature(key, rawURL string) string {
	mac := hmac.New(sha1.New, []byte(key))
	mac.Write([]byte(rawURL))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// dialWithRetry dials until success, a permanent failure, or the budget is
// spent. It returns the number of attempts made.
func dialWithRetry(ctx context.Context, rawURL string, u safeURL, opts *websocket.DialOptions, budget time.Duration, logger *zap.Logger) (*websocket.Conn, int, error) {
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()

	backoff := initialBackoff
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for attempt := 1; ; attempt++ {
		ws, resp, err := websocket.Dial(dctx, rawURL, opts)
		if err == nil {
			return ws, attempt, nil
		}
		err = redactError(err, u)
		switch {
		case ctx.Err() != nil:
			return nil, attempt, fmt.Errorf("dial bot %s: %w", u.Redacted(), ctx.Err())
		case !retryable(resp, err):
			return nil, attempt, fmt.Errorf("dial bot %s: %w", u.Redacted(), err)
		case dctx.Err() != nil:
			return nil, attempt, fmt.Errorf("%w: %s: no connection after %d attempts in %v: %w",
				ErrBotUnreachable, u.Redacted(), attempt, time.Since(start).Round(time.Millisecond), err)
		}
		logger.Debug("bot dial failed, retrying",
			zap.Int("attempt", attempt), zap.Duration("backoff", backoff), zap.Error(err))

		if timer == nil {
			timer = time.NewTimer(backoff)
		} else {
			timer.Reset(backoff)
		}
		select {
		case <-timer.C:
		case <-dctx.Done():
			if ctx.Err() != nil {
				return nil, attempt, fmt.Errorf("dial bot %s: %w", u.Redacted(), ctx.Err())
			}
			return nil, attempt, fmt.Errorf("%w: %s: no connection after %d attempts in %v: %w",
				ErrBotUnreachable, u.Redacted(), attempt, time.Since(start).Round(time.Millisecond), err)
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// retryable reports whether a failed dial may succeed later: no HTTP answer
// at all (connection refused or reset: the bot is starting), or a 5xx answer
// (a proxy in front of a bot that is starting). Certificate errors and other
// HTTP answers are permanent.
func retryable(resp *http.Response, err error) bool {
	if resp != nil {
		return resp.StatusCode >= 500
	}
	var certErr *tls.CertificateVerificationError
	return !errors.As(err, &certErr)
}

// redactError returns err with the bot URL's query string removed from its
// text: net/http quotes the request URL in its errors, and a bot URL may carry
// a token. The result still wraps err.
func redactError(err error, u safeURL) error {
	if u.RawQuery == "" {
		return err
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		uerr.URL = u.Redacted()
	}
	msg := err.Error()
	clean := strings.ReplaceAll(msg, "?"+u.RawQuery, "?REDACTED")
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

// redactedError is an error with a cleaned-up text.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// privateClient returns a client with a private clone of hc's transport,
// so that Dial can close the idle connections its failed attempts (5xx
// answers) leave in the pool without touching a transport the caller
// shares. If hc's transport is not an *http.Transport, it returns hc
// unchanged and a nil transport.
func privateClient(hc *http.Client) (*http.Client, *http.Transport) {
	if hc == nil {
		hc = http.DefaultClient
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	base, ok := rt.(*http.Transport)
	if !ok {
		return hc, nil
	}
	tr := base.Clone()
	client := *hc
	client.Transport = tr
	return &client, tr
}
