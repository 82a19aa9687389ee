package migrations_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/migrations"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := migrations.OpenDB(pgtest.NewDatabase(t, pgtest.StartShared(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func tables(t *testing.T, db *sql.DB) map[string]bool {
	t.Helper()
	rows, err := db.Query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[n] = true
	}
	return out
}

func functionExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var ok bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = $1)`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

var schemaTables = []string{"clients", "api_keys", "signing_keys", "revoked_tokens"}

func TestUpDownUpAndStatus(t *testing.T) {
	db := openDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	st, err := migrations.Status(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) == 0 || st[0].Version != 1 || st[0].Name != "00001_init.sql" {
		t.Fatalf("status of an empty database: %+v", st)
	}
	for _, m := range st {
		if m.Applied || !m.AppliedAt.IsZero() {
			t.Errorf("migration %d applied before Up: %+v", m.Version, m)
		}
	}

	before := time.Now().Add(-time.Minute)
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	st, err = migrations.Status(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st {
		if !m.Applied || m.AppliedAt.Before(before) {
			t.Errorf("migration %d after Up: %+v", m.Version, m)
		}
	}
	got := tables(t, db)
	for _, tb := range schemaTables {
		if !got[tb] {
			t.Errorf("table %s missing after Up", tb)
		}
	}
	// Up again has nothing to do.
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("second Up: %v", err)
	}

	// Down, one step at a time, until nothing is left.
	for range st {
		if err := migrations.Down(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	if err := migrations.Down(ctx, db); !errors.Is(err, migrations.ErrNothingToRollBack) {
		t.Fatalf("Down with nothing applied: %v", err)
	}
	got = tables(t, db)
	for _, tb := range schemaTables {
		if got[tb] {
			t.Errorf("table %s left after Down", tb)
		}
	}
	if functionExists(t, db, "helix_authz_notify") {
		t.Error("function helix_authz_notify left after Down")
	}
	st, err = migrations.Status(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st {
		if m.Applied {
			t.Errorf("migration %d applied after Down: %+v", m.Version, m)
		}
	}

	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
	got = tables(t, db)
	for _, tb := range schemaTables {
		if !got[tb] {
			t.Errorf("table %s missing after Up, Down, Up", tb)
		}
	}
}

// Replicas that start together each run Up; the lock lets one apply and
// the others find nothing to do.
func TestConcurrentUp(t *testing.T) {
	db := openDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = migrations.Up(ctx, db) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Up %d: %v", i, err)
		}
	}
	st, err := migrations.Status(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st {
		if !m.Applied {
			t.Errorf("migration %d not applied", m.Version)
		}
	}
}

// The schema refuses bad rows even when they come from outside the store.
func TestConstraints(t *testing.T) {
	db := openDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO clients (id, secret_hash) VALUES ('ok', '\x01')`); err != nil {
		t.Fatal(err)
	}
	var enabled bool
	if err := db.QueryRowContext(ctx, `SELECT enabled FROM clients WHERE id = 'ok'`).Scan(&enabled); err != nil || enabled {
		t.Errorf("a client inserted without enabled must be disabled: enabled=%v err=%v", enabled, err)
	}
	bad := []struct{ name, sql string }{
		{"empty client id", `INSERT INTO clients (id, secret_hash) VALUES ('', '\x01')`},
		{"null client id", `INSERT INTO clients (id, secret_hash) VALUES (NULL, '\x01')`},
		{"empty secret hash", `INSERT INTO clients (id, secret_hash) VALUES ('c2', '')`},
		{"null scope", `INSERT INTO clients (id, secret_hash, scopes) VALUES ('c3', '\x01', ARRAY[NULL]::text[])`},
		{"empty scope", `INSERT INTO clients (id, secret_hash, scopes) VALUES ('c4', '\x01', ARRAY['']::text[])`},
		{"null enabled", `INSERT INTO clients (id, secret_hash, enabled) VALUES ('c5', '\x01', NULL)`},
		{"api key of no client", `INSERT INTO api_keys (id, prefix, hash, client_id) VALUES ('k', 'p', '\x01', 'nobody')`},
		{"empty api key prefix", `INSERT INTO api_keys (id, prefix, hash, client_id) VALUES ('k', '', '\x01', 'ok')`},
		{"negative use count", `INSERT INTO api_keys (id, prefix, hash, client_id, use_count) VALUES ('k', 'p', '\x01', 'ok', -1)`},
		{"alg HS256", `INSERT INTO signing_keys (kid, alg, public_jwk, private_sealed) VALUES ('a', 'HS256', '{}', '\x01')`},
		{"alg none", `INSERT INTO signing_keys (kid, alg, public_jwk, private_sealed) VALUES ('a', 'none', '{}', '\x01')`},
		{"jwk not an object", `INSERT INTO signing_keys (kid, alg, public_jwk, private_sealed) VALUES ('a', 'ES256', '[]', '\x01')`},
		{"empty kid", `INSERT INTO signing_keys (kid, alg, public_jwk, private_sealed) VALUES ('', 'ES256', '{}', '\x01')`},
		{"empty jti", `INSERT INTO revoked_tokens (jti, expires_at) VALUES ('', now())`},
		{"revocation without expiry", `INSERT INTO revoked_tokens (jti) VALUES ('j')`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := db.ExecContext(ctx, tc.sql); err == nil {
				t.Errorf("accepted: %s", tc.sql)
			}
		})
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO api_keys (id, prefix, hash, client_id) VALUES ('k1', 'p1', '\x01', 'ok')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO api_keys (id, prefix, hash, client_id) VALUES ('k2', 'p1', '\x01', 'ok')`); err == nil {
		t.Error("two api keys with one prefix")
	}
}
