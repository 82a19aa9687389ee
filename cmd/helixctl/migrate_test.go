package main

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
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

type migrationRow struct {
	Version   int64      `json:"version"`
	Name      string     `json:"name"`
	Applied   bool       `json:"applied"`
	AppliedAt *time.Time `json:"applied_at"`
}

// TestMigrate runs helixctl migrate against a real Postgres (started by
// internal/pgtest; skipped without PostgreSQL binaries, failed under CI).
func TestMigrate(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	c := &cli{}
	// The URL holds the password: the environment, never a flag.
	t.Setenv("HELIX_DATABASE_URL", dsn)

	status := func(t *testing.T) []migrationRow {
		t.Helper()
		out := c.mustRun(t, "migrate", "status", "--output", "json")
		var rows []migrationRow
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("status json: %v\n%s", err, out)
		}
		if len(rows) == 0 {
			t.Fatal("no migrations listed")
		}
		return rows
	}
	applied := func(rows []migrationRow) (n int) {
		for _, r := range rows {
			if r.Applied {
				n++
			}
		}
		return n
	}

	rows := status(t)
	if applied(rows) != 0 {
		t.Fatalf("fresh database: %+v", rows)
	}
	for _, r := range rows {
		if r.AppliedAt != nil {
			t.Errorf("pending migration with applied_at %v", r.AppliedAt)
		}
	}
	if !strings.HasSuffix(rows[0].Name, ".sql") || rows[0].Version != 1 {
		t.Errorf("first migration %+v", rows[0])
	}
	table := c.mustRun(t, "migrate", "status")
	if !strings.Contains(table, "VERSION") || !strings.Contains(table, "pending") {
		t.Errorf("status table:\n%s", table)
	}

	out := c.mustRun(t, "migrate", "up")
	if strings.Contains(out, "pending") || !strings.Contains(out, rows[0].Name) {
		t.Errorf("up printed:\n%s", out)
	}
	rows = status(t)
	if applied(rows) != len(rows) {
		t.Fatalf("after up: %+v", rows)
	}
	for _, r := range rows {
		if r.AppliedAt == nil || time.Since(*r.AppliedAt) > time.Hour {
			t.Errorf("applied at %v", r.AppliedAt)
		}
	}
	// up again changes nothing.
	c.mustRun(t, "migrate", "up")
	if r := status(t); applied(r) != len(r) {
		t.Fatalf("after a second up: %+v", r)
	}

	c.mustRun(t, "migrate", "down")
	after := status(t)
	if applied(after) != len(rows)-1 || after[len(after)-1].Applied {
		t.Fatalf("after down: %+v", after)
	}
	if !strings.Contains(c.mustRun(t, "migrate", "status"), "pending") {
		t.Error("status table shows nothing pending after down")
	}
	// Down to the bottom, then once more: nothing to roll back is an error.
	for range len(rows) - 1 {
		c.mustRun(t, "migrate", "down")
	}
	if _, err := c.run(t, "migrate", "down"); !errors.Is(err, migrations.ErrNothingToRollBack) {
		t.Errorf("down with nothing applied: %v", err)
	}
	c.mustRun(t, "migrate", "up")
	if r := status(t); applied(r) != len(r) {
		t.Fatalf("after up again: %+v", r)
	}
}

func TestMigrateUnreachable(t *testing.T) {
	c := &cli{}
	_, err := c.run(t, "migrate", "status", "--database-url", "postgres://helix@127.0.0.1:1/none?connect_timeout=2")
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("unreachable database: %v", err)
	}
}
