package apikeys

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind: a Store must
// stop everything it started when closed (config reloads build new ones).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
