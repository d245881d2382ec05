package whatsappcalls

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test of the package leaves a goroutine behind:
// the registry must wait for every call and reject it starts.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
