package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/migrations"
)

// Migrated returns the DSN of a fresh database of the shared server (see
// StartShared) with every migration applied.
func Migrated(t testing.TB) (dsn string) {
	t.Helper()
	dsn = NewDatabase(t, StartShared(t))
	Migrate(t, dsn)
	return dsn
}

// Migrate applies every migration to the database at dsn.
func Migrate(t testing.TB, dsn string) {
	t.Helper()
	db, err := migrations.OpenDB(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
}

// Pool opens a connection pool on dsn, closed when t ends.
func Pool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
