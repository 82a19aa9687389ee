package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/gdpr"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// TestAuditAndErasure drives helixctl audit and users export|erase against
// the admin API over the real trail and gdpr service on Postgres.
func TestAuditAndErasure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := pgtest.Start(t)
	pgtest.Migrate(t, dsn)
	pool := pgtest.Pool(t, dsn)
	trail, svc := peopletest.Privacy(t, pool)
	uid := peopletest.AddUser(t, pool, peopletest.User{Email: "eve@example.com"})
	if err := trail.Record(ctx, audit.Event{Actor: "user:" + uid, Action: "account.login", Result: audit.ResultSuccess, Source: "192.0.2.5"}); err != nil {
		t.Fatal(err)
	}
	h, err := admin.Handler(admin.Config{
		Store: &memStore{}, Hasher: secret.NewHasher(nil), Token: adminToken, Plans: admin.NewPlans([]string{"free"}, "free"),
		Audit: trail, Trail: trail, PersonalData: svc, Logger: peopletest.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	t.Setenv("HELIX_ADMIN_URL", srv.URL)
	t.Setenv("HELIX_ADMIN_TOKEN", adminToken)
	t.Setenv("HELIX_OPERATOR", "dpo")
	c := &cli{}

	out := c.mustRun(t, "audit", "list", "--actor", "user:"+uid, "--since", "1h")
	if !strings.Contains(out, "account.login") || !strings.Contains(out, "192.0.2.5") {
		t.Fatalf("audit list:\n%s", out)
	}
	if out := c.mustRun(t, "audit", "list", "--until", "1h"); strings.Contains(out, "account.login") {
		t.Fatalf("audit list --until 1h (an hour ago):\n%s", out)
	}
	if out := c.mustRun(t, "audit", "verify"); !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("audit verify:\n%s", out)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "user.json")
	c.mustRun(t, "users", "export", uid, "--file", file)
	var doc map[string]any
	if b, err := os.ReadFile(file); err != nil || json.Unmarshal(b, &doc) != nil || doc["format"] != gdpr.Format {
		t.Fatalf("users export: %s, %v", b, err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("export file mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := c.run(t, "users", "export", uid, "--file", file); err == nil {
		t.Error("export over an existing file passed")
	}

	if _, err := c.run(t, "users", "erase", uid); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("erase without --yes: %v", err)
	}
	if out := c.mustRun(t, "users", "erase", uid, "--yes"); !strings.Contains(out, "erased user "+uid) {
		t.Fatalf("users erase:\n%s", out)
	}
	var email *string
	if err := pool.QueryRow(ctx, `SELECT email FROM users WHERE id = $1`, uid).Scan(&email); err != nil || email != nil {
		t.Fatalf("email after erasure: %v, %v", email, err)
	}

	exported := filepath.Join(dir, "audit.jsonl")
	c.mustRun(t, "audit", "export", "--file", exported)
	b, err := os.ReadFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var first audit.Row
	if json.Unmarshal([]byte(lines[0]), &first) != nil || first.Seq != 1 || !first.Pseudonymised || first.Source != "" {
		t.Fatalf("audit export after erasure, first line: %s", lines[0])
	}

	// A trail that does not verify: exit status 1 and the row named.
	if _, err := pool.Exec(ctx, `BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE audit_log SET action = 'account.logout' WHERE seq = 1; COMMIT`); err != nil {
		t.Fatal(err)
	}
	out, err = c.run(t, "audit", "verify")
	if !errors.Is(err, errNotVerified) || !strings.Contains(out, "NOT OK: row 1") {
		t.Fatalf("audit verify of an edited trail: %v\n%s", err, out)
	}
	if _, err := c.run(t, "audit", "list", "--since", "yesterday"); !errors.Is(err, errUsage) {
		t.Fatalf("--since yesterday: %v", err)
	}
}
