package stack

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/internal/pgbin"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/supervise"
	"github.com/helixflow/helixflow/internal/testdeps"
)

// TestSecretFilesArePrivate: the stack's secret files are 0600 whatever
// the umask, and one left readable by others is made private again.
func TestSecretFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := t.TempDir()
	s, err := New(Options{Root: ".", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kek"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kek", "admin-token"} {
		path, value, err := s.secretFile(name)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want 0600", name, fi.Mode(), err)
		}
		if name == "kek" && value != "kept" {
			t.Errorf("kek %q: the kept value was replaced", value)
		}
		if name == "admin-token" && len(value) != 64 {
			t.Errorf("admin-token %q: want 32 random bytes in hex", value)
		}
	}
}

// TestPostgresNeedsItsPassword: the stack's Postgres refuses a connection
// without the password (scram-sha-256, not trust), the password lives in a
// 0600 file, and helix-authz gets the URL from its environment, not its
// command line.
func TestPostgresNeedsItsPassword(t *testing.T) {
	if _, err := pgbin.Find(); err != nil {
		testdeps.Missing(t, "PostgreSQL: %v", err)
	}
	// Not t.TempDir: Postgres runs as "postgres" under root and must pass
	// through every folder above its data.
	dir, err := os.MkdirTemp("", "helix-stack-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Root: "../..", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	specs, err := s.postgres()
	if err != nil {
		t.Fatal(err)
	}
	g, err := supervise.New(supervise.Options{LogDir: filepath.Join(dir, "logs")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := g.Start(ctx, specs[0]); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(filepath.Join(dir, "pg-password"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pg-password: %v, %v; want a 0600 file", fi, err)
	}
	c, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		t.Fatalf("with the password: %v", err)
	}
	c.Close(ctx)
	_, password, err := s.secretFile("pg-password")
	if err != nil {
		t.Fatal(err)
	}
	noPassword := strings.Replace(s.DatabaseURL, ":"+password+"@", "@", 1)
	if noPassword == s.DatabaseURL {
		t.Fatalf("DatabaseURL %q does not hold the password", s.DatabaseURL)
	}
	if c, err := pgx.Connect(ctx, noPassword); err == nil {
		c.Close(ctx)
		t.Fatal("connected without the password")
	} else if !strings.Contains(err.Error(), "password") {
		t.Fatalf("without the password: %v, want a password failure", err)
	}

	// helix-authz: the URL (with the password) in its environment only.
	if err := s.issue(ctx, pki.LocalSpecs()); err != nil {
		t.Fatal(err)
	}
	authz, err := s.authz()
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range authz {
		for _, a := range spec.Args {
			if strings.Contains(a, password) || strings.HasPrefix(a, "--database-url") {
				t.Errorf("%s has the database URL on its command line: %s", spec.Name, a)
			}
		}
		if !slices.Contains(spec.Env, "HELIX_DATABASE_URL="+s.DatabaseURL) {
			t.Errorf("%s: HELIX_DATABASE_URL not in its environment %q", spec.Name, spec.Env)
		}
	}
}
