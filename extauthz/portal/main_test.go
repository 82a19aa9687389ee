package portal

import (
	"os"
	"testing"

	"github.com/helixflow/helixflow/internal/pgtest"
)

// TestMain stops the shared Postgres the package's tests start (one
// TestMain per test binary: tests of every page file share it).
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}
