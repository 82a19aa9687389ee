// Package testdeps is the project's one rule for a test whose dependency
// (a program or library make deps installs) is missing: in the project's
// CI (CI=true) the test fails, so that a missing install step cannot pass
// unseen; elsewhere it is skipped, saying what to install.
package testdeps

import (
	"fmt"
	"os"
	"testing"
)

// InCI reports whether the tests run in the project's CI.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing fails t under CI=true and skips it elsewhere, with the reason.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI=true: required)", msg)
		return
	}
	t.Skip(msg)
}
