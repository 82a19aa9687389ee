package pgtest_test

import (
	"context"
	"testing"

	"github.com/helixflow/helixflow/internal/pgtest"
)

// TestMigrated: a migrated database has the schema (the newest migration's
// table among it), Pool reaches it, and each Migrated database is its own.
func TestMigrated(t *testing.T) {
	a, b := pgtest.Migrated(t), pgtest.Migrated(t)
	if a == b {
		t.Fatal("two Migrated calls gave one database")
	}
	pool := pgtest.Pool(t, a)
	for _, table := range []string{"clients", "users", "sessions", "audit_log"} {
		var exists bool
		if err := pool.QueryRow(context.Background(),
			`SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = $1)`, table).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			t.Errorf("table %s missing after Migrated", table)
		}
	}
	if _, err := pool.Exec(context.Background(), `INSERT INTO users (email) VALUES ('a@example.test')`); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, b, `SELECT count(*) FROM users`); n != 0 {
		t.Fatalf("the other database sees %d users", n)
	}
	// Migrating again is a no-op.
	pgtest.Migrate(t, a)
}
