package main

// The backup and the restore, with the PostgreSQL client programs as an
// operator runs them (docs/deploy.md, "Self-managed Postgres: pg_dump and
// pg_restore").

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/internal/pgbin"
)

// pgTools are pg_dump and pg_restore, from the folder of the server
// binaries the stack runs (internal/pgbin), so that their version
// matches the server's.
type pgTools struct{ dump, restore string }

func findTools() (pgTools, error) {
	bins, err := pgbin.Find()
	if err != nil {
		return pgTools{}, err
	}
	dir := filepath.Dir(bins.Postgres)
	t := pgTools{dump: filepath.Join(dir, "pg_dump"), restore: filepath.Join(dir, "pg_restore")}
	for _, p := range []string{t.dump, t.restore} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			return pgTools{}, fmt.Errorf("%s is missing next to %s (Debian: apt-get install postgresql-client)", filepath.Base(p), bins.Postgres)
		}
	}
	return t, nil
}

// backup is a pg_dump and what its snapshot held.
type backup struct {
	file string
	// snapshot is when the dump's snapshot was taken: writes
	// acknowledged before it are in the dump, writes sent after it not.
	snapshot time.Time
	took     time.Duration // pg_dump's run
	size     int64
	counts   map[string]int64 // rows per table in the dump's snapshot
}

// takeBackup runs pg_dump in the custom format on dsn's database, the way
// docs/deploy.md says, with one addition: --snapshot, a snapshot this
// function exports from a REPEATABLE READ transaction in which it also
// counts every table's rows, so that the counts are exactly the dump's.
func takeBackup(ctx context.Context, tools pgTools, dsn, file string) (*backup, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to Postgres: %w", err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only
	b := &backup{file: file, snapshot: time.Now()}
	var snap string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snap); err != nil {
		return nil, fmt.Errorf("export a snapshot: %w", err)
	}
	if b.counts, err = countRows(ctx, tx); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := runPG(ctx, tools.dump, dsn, "--format=custom", "--file="+file, "--snapshot="+snap); err != nil {
		return nil, err
	}
	b.took = time.Since(start)
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	b.size = fi.Size()
	return b, nil
}

// restoreInto runs pg_restore of b into dsn's (empty) database.
// --no-owner: the restored server's user owns the objects, whatever the
// old server's roles were.
func restoreInto(ctx context.Context, tools pgTools, dsn string, b *backup) error {
	return runPG(ctx, tools.restore, dsn, "--no-owner", "--exit-on-error", "--single-transaction", b.file)
}

// runPG runs a PostgreSQL client program on dsn's database: the password
// travels in PGPASSWORD (the environment), not on the command line, which
// every local user can read.
func runPG(ctx context.Context, prog, dsn string, args ...string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	pw, _ := u.User.Password()
	u.User = url.User(u.User.Username())
	cmd := exec.CommandContext(ctx, prog, append([]string{"--dbname=" + u.String()}, args...)...)
	cmd.Env = append(pgFreeEnv(), "PGPASSWORD="+pw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", filepath.Base(prog), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// pgFreeEnv is our environment without PG* settings that would point the
// programs elsewhere.
func pgFreeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// querier is a pgx.Tx or a *pgx.Conn.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// countRows counts the rows of every table in the public schema.
func countRows(ctx context.Context, q querier) (map[string]int64, error) {
	rows, err := q.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	if len(tables) == 0 {
		return nil, errors.New("the database has no tables")
	}
	counts := make(map[string]int64, len(tables))
	for _, t := range tables {
		var n int64
		if err := q.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{"public", t}.Sanitize()).Scan(&n); err != nil {
			return nil, fmt.Errorf("count %s: %w", t, err)
		}
		counts[t] = n
	}
	return counts, nil
}

// countsFrom counts dsn's tables.
func countsFrom(ctx context.Context, dsn string) (map[string]int64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to Postgres: %w", err)
	}
	defer conn.Close(context.Background())
	return countRows(ctx, conn)
}

// addHistory inserts n rows of past usage into the ledger (usage_hourly:
// 100 clients, one row per client and hour, going back n/100 hours), so
// that the dump and the restore are timed at a size closer to a
// deployment's than the drill's own few rows.
func addHistory(ctx context.Context, dsn string, n int) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to Postgres: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `INSERT INTO usage_hourly (hour, client_id, model, requests, inferences, compute_ns, latency_buckets)
		SELECT (date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') - (i / 100 + 1) * interval '1 hour',
		       'history-' || (i % 100), 'simple', 1000 + i % 7, 1000 + i % 7, 1000000 * (i % 13), '{3,5,1,0}'
		FROM generate_series(0, $1::int - 1) AS i`, n)
	if err != nil {
		return fmt.Errorf("add %d rows of usage history: %w", n, err)
	}
	return nil
}

// restoreRole is the role that restores the dump and that helix-authz
// logs in as on the fresh server: an ordinary role owning its database,
// as docs/deploy.md has the operator make it, not the superuser.
const restoreRole = "helix"

// newDatabase makes, as the fresh server's superuser (superDSN), the
// restore role when missing and an empty database it owns, and returns
// the URL of that database as that role.
func newDatabase(ctx context.Context, superDSN, name, password string) (string, error) {
	conn, err := pgx.Connect(ctx, superDSN)
	if err != nil {
		return "", fmt.Errorf("connect to the fresh server: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", restoreRole).Scan(&exists); err != nil {
		return "", err
	}
	role := pgx.Identifier{restoreRole}.Sanitize()
	if !exists {
		// CREATE ROLE takes no parameters: the password is hex, quoted.
		if _, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD '"+password+"'"); err != nil {
			return "", fmt.Errorf("create role %s: %w", restoreRole, err)
		}
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" OWNER "+role); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(superDSN)
	if err != nil {
		return "", err
	}
	u.User = url.UserPassword(restoreRole, password)
	u.Path = "/" + name
	return u.String(), nil
}
