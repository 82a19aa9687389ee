package store_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/migrations"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// migrate applies the schema to the database at dsn.
func migrate(t testing.TB, dsn string) {
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

func open(t testing.TB, dsn string, cfg store.Config) *store.Store {
	t.Helper()
	cfg.DSN = dsn
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	s, err := store.Open(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newStore opens a store on a fresh, migrated database of the shared
// server, and returns its DSN too.
func newStore(t testing.TB) (*store.Store, string) {
	t.Helper()
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	migrate(t, dsn)
	return open(t, dsn, store.Config{}), dsn
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func client(id string) *store.Client {
	return &store.Client{
		ID:         id,
		Name:       "client " + id,
		SecretHash: []byte("hash-" + id),
		Scopes:     []string{"models:infer", "models:read"},
		Models:     []string{"*"},
		Audience:   []string{"helix"},
		Plan:       "free",
		Enabled:    true,
	}
}
