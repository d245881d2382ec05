package whatsappcalls

import (
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestRejectLogRateLimits(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	now := time.Unix(1_700_000_000, 0)
	l := newRejectLog(zap.New(core))
	l.now = func() time.Time { return now }
	r := httptest.NewRequest("POST", "/webhook", nil)
	r.RemoteAddr = "203.0.113.7:5555"

	for range 5 {
		l.log(r, rejectBadSignature, 403)
	}
	l.log(r, rejectMissingSignature, 401) // another reason has its own budget
	now = now.Add(rejectLogInterval)
	l.log(r, rejectBadSignature, 403)

	entries := logs.All()
	if len(entries) != 3 {
		t.Fatalf("%d log lines; want 3 (first bad_signature, first missing_signature, then bad_signature after the interval)", len(entries))
	}
	tests := []struct {
		reason     string
		suppressed int64
	}{
		{rejectBadSignature, 0},
		{rejectMissingSignature, 0},
		{rejectBadSignature, 4},
	}
	for i, tt := range tests {
		e := entries[i]
		f := e.ContextMap()
		if e.Level != zapcore.WarnLevel || f["reason"] != tt.reason || f["suppressed"] != tt.suppressed || f["remote_ip"] != "203.0.113.7" {
			t.Errorf("line %d = %s %v; want warn, reason %s, suppressed %d, remote_ip 203.0.113.7", i, e.Level, f, tt.reason, tt.suppressed)
		}
	}
}

func TestSanitizeMethod(t *testing.T) {
	for give, want := range map[string]string{"POST": "POST", "get": "GET", "BREW": "OTHER", "": "OTHER", "Post": "OTHER"} {
		if got := sanitizeMethod(give); got != want {
			t.Errorf("sanitizeMethod(%q) = %q; want %q", give, got, want)
		}
	}
}
