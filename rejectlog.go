package whatsappcalls

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Reasons a webhook request is rejected, as logged.
const (
	rejectMissingSignature = "missing_signature"
	rejectBadSignature     = "bad_signature"
	rejectVerifyToken      = "wrong_verify_token"
	rejectTooLarge         = "body_too_large"
	rejectReadError        = "body_read_error"
	rejectMalformed        = "malformed_body"
	rejectMethod           = "method_not_allowed"
	rejectNotStarted       = "not_started"
)

// rejectLogInterval is the least time between two log lines of one
// reason; the lines in between are counted in the next one's suppressed.
const rejectLogInterval = 10 * time.Second

// rejectLog logs rejected webhook requests at WARN, so that an operator
// stuck on Meta's verification step, or with a wrong app secret, sees why
// at the default log level. One line per reason per rejectLogInterval at
// most, so that a flood of bad requests cannot flood the log. A line holds
// the reason, the status and the client's address, never the body, the
// signature or the query.
type rejectLog struct {
	logger *zap.Logger
	now    func() time.Time

	mu      sync.Mutex
	reasons map[string]*rejectState
}

type rejectState struct {
	last       time.Time
	suppressed int
}

func newRejectLog(logger *zap.Logger) *rejectLog {
	return &rejectLog{logger: logger, now: time.Now, reasons: make(map[string]*rejectState)}
}

// log records one rejected request.
func (l *rejectLog) log(r *http.Request, reason string, status int) {
	now := l.now()
	l.mu.Lock()
	st := l.reasons[reason]
	if st == nil {
		st = &rejectState{}
		l.reasons[reason] = st
	}
	if !st.last.IsZero() && now.Sub(st.last) < rejectLogInterval {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.last, st.suppressed = now, 0
	l.mu.Unlock()

	l.logger.Warn("webhook rejected",
		zap.String("reason", reason),
		zap.Int("status", status),
		zap.String("remote_ip", clientIP(r)),
		zap.String("method", sanitizeMethod(r.Method)),
		zap.Int("suppressed", suppressed))
}

// clientIP is the client's address as Caddy's trusted_proxies setting
// determines it, or the connection's peer.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
