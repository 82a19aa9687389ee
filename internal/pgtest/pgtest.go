package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/pgbin"
	"github.com/helixflow/helixflow/internal/testdeps"
)

// Start starts a private Postgres for one test and returns the DSN of a
// database made for it. The server is killed and its folder removed when
// the test ends. Without PostgreSQL binaries the test is skipped, or fails
// when CI=true.
func Start(t testing.TB) (dsn string) {
	t.Helper()
	srv := StartServer(t)
	return NewDatabase(t, srv.DSN())
}

// StartServer is Start that returns the Server, for tests that stop it.
func StartServer(t testing.TB) *Server {
	t.Helper()
	RequireBinaries(t)
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	srv, err := StartProcess(dir)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := srv.Kill(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return srv
}

var shared struct {
	mu  sync.Mutex
	srv *Server
	dir string
	err error
}

// StartShared returns the DSN of a server shared by every test of the test
// binary, started on first use; give each test its own database with
// NewDatabase. Call Stop from TestMain after m.Run to remove it (the
// server dies with the test binary in any case).
func StartShared(t testing.TB) (dsn string) {
	t.Helper()
	RequireBinaries(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		dir, err := os.MkdirTemp("", "pgtest-shared-")
		if err != nil {
			shared.err = fmt.Errorf("pgtest: %w", err)
		} else {
			shared.dir = dir
			shared.srv, shared.err = StartProcess(dir)
		}
	}
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.srv.DSN()
}

// Stop kills the shared server, if one was started, and removes its files.
func Stop() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		_ = shared.srv.Kill()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	shared.srv, shared.dir, shared.err = nil, "", errors.New("pgtest: shared server already stopped")
}

var dbSeq atomic.Int64

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates an empty database for t on the server at dsn and
// returns its DSN. Databases are cheap: one per test isolates tests that
// share a server.
func NewDatabase(t testing.TB, dsn string) string {
	t.Helper()
	name := unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("t%d_%s", dbSeq.Add(1), name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := CreateDatabase(ctx, dsn, name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	// Dropped when the test ends, so that a shared server does not pile up
	// databases; a server already gone makes this a no-op.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = DropDatabase(ctx, dsn, name)
	})
	return out
}

// RequireBinaries skips t, or fails it under CI=true, when PostgreSQL is
// not installed.
func RequireBinaries(t testing.TB) {
	t.Helper()
	if _, err := pgbin.Find(); err != nil {
		testdeps.Missing(t, "%v: make deps installs Debian's postgresql", err)
	}
}
