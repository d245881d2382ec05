package whatsapp

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind (for
// example an HTTP connection that was never closed).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
