package pgtest_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

func queryInt(t *testing.T, dsn, sql string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestStart(t *testing.T) {
	dsn := pgtest.Start(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if u.Hostname() != "127.0.0.1" || u.Query().Get("sslmode") != "disable" {
		t.Errorf("dsn %q: want 127.0.0.1 and sslmode=disable", dsn)
	}
	if got := queryInt(t, dsn, "SELECT 1"); got != 1 {
		t.Errorf("SELECT 1 = %d", got)
	}
	if got := queryInt(t, dsn, "SELECT CASE WHEN current_setting('fsync') = 'off' THEN 1 ELSE 0 END"); got != 1 {
		t.Error("fsync is on")
	}
	// Only the password in the DSN lets a TCP client in.
	u.User = url.UserPassword(pgtest.Superuser, "wrong")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, u.String()); err == nil {
		conn.Close(ctx)
		t.Error("connected with a wrong password")
	}
}

func TestSharedDatabasesAreIsolated(t *testing.T) {
	srv := pgtest.StartShared(t)
	a := pgtest.NewDatabase(t, srv)
	b := pgtest.NewDatabase(t, srv)
	if a == b {
		t.Fatalf("same database twice: %s", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if got := queryInt(t, b, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"); got != 0 {
		t.Error("a table of database a is visible in database b")
	}
	if again := pgtest.StartShared(t); again != srv {
		t.Errorf("second StartShared started another server: %s vs %s", again, srv)
	}
}

func TestStartProcessKeepsDataAcrossRestarts(t *testing.T) {
	pgtest.RequireBinaries(t)
	base := mkdirTemp(t)
	dir := filepath.Join(base, "pg")
	if os.Geteuid() == 0 {
		// A private folder above dir is refused with a reason.
		if _, err := pgtest.StartProcess(dir); err == nil || !strings.Contains(err.Error(), "cannot reach") {
			t.Fatalf("StartProcess under a 0700 folder as root: %v", err)
		}
		if err := os.Chmod(base, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := pgtest.StartProcess(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Kill() })
	db, err := pgtest.CreateDatabase(context.Background(), srv.DSN(), "kept")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	srv2, err := pgtest.StartProcess(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv2.Kill() })
	u, _ := url.Parse(srv2.DSN())
	u.Path = "/kept"
	if got := queryInt(t, u.String(), "SELECT 1"); got != 1 {
		t.Errorf("database kept across restart: SELECT 1 = %d", got)
	}
	if !strings.Contains(db, "/kept") {
		t.Errorf("CreateDatabase DSN %q does not name the database", db)
	}
}

func mkdirTemp(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgtest-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
