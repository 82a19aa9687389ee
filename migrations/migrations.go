// Package migrations holds helix-authz's Postgres schema as numbered goose
// SQL migrations, embedded so that every binary carries the schema it was
// built for, and applies them through goose's Provider.
//
// Several replicas may start at once: a Postgres advisory lock makes them
// take turns, and the ones that come second find nothing left to do.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	// The pgx driver, registered as "pgx" for database/sql.
	_ "github.com/jackc/pgx/v5/stdlib"
)

//go:embed *.sql
var files embed.FS

// ErrNothingToRollBack is returned by Down when no migration is applied.
var ErrNothingToRollBack = errors.New("migrations: nothing to roll back")

// Migration is one migration and whether it is applied.
type Migration struct {
	Version int64
	// Name is the file name, e.g. "00001_init.sql".
	Name    string
	Applied bool
	// AppliedAt is zero while the migration is pending.
	AppliedAt time.Time
}

// OpenDB opens a database/sql handle on the pgx driver for dsn (a
// postgres:// URL or key=value string). The caller closes it.
func OpenDB(dsn string) (*sql.DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("migrations: open database: %w", err)
	}
	return db, nil
}

// Up applies every pending migration.
func Up(ctx context.Context, db *sql.DB) error {
	p, err := provider(db)
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations: up: %w", err)
	}
	return nil
}

// Down rolls back the most recently applied migration, one step.
func Down(ctx context.Context, db *sql.DB) error {
	p, err := provider(db)
	if err != nil {
		return err
	}
	if _, err := p.Down(ctx); err != nil {
		if errors.Is(err, goose.ErrNoNextVersion) {
			return ErrNothingToRollBack
		}
		return fmt.Errorf("migrations: down: %w", err)
	}
	return nil
}

// Status lists every known migration, oldest first, applied or pending.
func Status(ctx context.Context, db *sql.DB) ([]Migration, error) {
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: status: %w", err)
	}
	out := make([]Migration, 0, len(st))
	for _, s := range st {
		out = append(out, Migration{
			Version:   s.Source.Version,
			Name:      path.Base(s.Source.Path),
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt,
		})
	}
	return out, nil
}

func provider(db *sql.DB) (*goose.Provider, error) {
	if db == nil {
		return nil, errors.New("migrations: nil database")
	}
	// Replicas that start together wait for each other (up to a minute)
	// rather than apply the same migration twice.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 60))
	if err != nil {
		return nil, fmt.Errorf("migrations: locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files,
		goose.WithSessionLocker(locker),
		// Only the SQL files here count, never Go migrations that some
		// other package registered globally.
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}
