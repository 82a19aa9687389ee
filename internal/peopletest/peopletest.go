// Package peopletest holds the test setup that the people's packages
// (accounts, orgs, admin, gdpr, the server, helixctl) share: a store on a
// migrated database, users and organizations made as the product would
// make them, and a fake audit recorder for unit tests. Databases come from
// internal/pgtest (Migrated, Migrate, Pool).
package peopletest

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/gdpr"
	"github.com/helixflow/helixflow/extauthz/password"
	"github.com/helixflow/helixflow/extauthz/store"
)

// Quiet discards logs.
var Quiet = slog.New(slog.DiscardHandler)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// Store opens a store on the (migrated) database at dsn, closed when t ends.
func Store(t testing.TB, dsn string) *store.Store {
	t.Helper()
	st, err := store.Open(ctx(t), store.Config{DSN: dsn, Logger: Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// Privacy returns the real audit trail and GDPR service on pool, as
// helix-authz wires them (the service records erasures in that trail).
func Privacy(t testing.TB, pool *pgxpool.Pool) (*audit.Store, *gdpr.Service) {
	t.Helper()
	trail, err := audit.New(audit.Config{Pool: pool, Logger: Quiet})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := gdpr.New(gdpr.Config{Pool: pool, Audit: trail})
	if err != nil {
		t.Fatal(err)
	}
	return trail, svc
}

// Querier is a *pgx.Conn or a *pgxpool.Pool.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// User is a row of users to add; the zero value beyond Email is an
// unverified user without a password, a display name or admin rights.
type User struct {
	Email       string
	DisplayName string
	Verified    bool // email_verified_at = now()
	Admin       bool // platform_admin
	// Password, when set, is stored hashed at password.Minimum, so that
	// the user can log in with it.
	Password string
}

// AddUser inserts u into users, as sign-up and verification would leave
// it, and returns its id.
func AddUser(t testing.TB, db Querier, u User) string {
	t.Helper()
	var phc *string
	if u.Password != "" {
		hasher, err := password.New(password.Config{Params: password.Minimum})
		if err != nil {
			t.Fatal(err)
		}
		h, err := hasher.Hash(ctx(t), u.Password)
		if err != nil {
			t.Fatal(err)
		}
		phc = &h
	}
	var id string
	if err := db.QueryRow(ctx(t), `INSERT INTO users (email, email_verified_at, display_name, password_hash, platform_admin)
		VALUES ($1, CASE WHEN $2::boolean THEN now() END, $3, $4, $5) RETURNING id::text`,
		u.Email, u.Verified, u.DisplayName, phc, u.Admin).Scan(&id); err != nil {
		t.Fatalf("add user %s: %v", u.Email, err)
	}
	return id
}

// AddOrg makes organization o (named "org" when unnamed) owned by owner,
// through the store, and returns its id.
func AddOrg(t testing.TB, st *store.Store, owner string, o store.Org) string {
	t.Helper()
	if o.Name == "" {
		o.Name = "org"
	}
	if err := st.CreateOrg(ctx(t), &o, owner); err != nil {
		t.Fatal(err)
	}
	return o.ID
}

// Recorder is a fake audit.Recorder that keeps every event, for unit
// tests of packages that record (the audit store has tests of its own).
type Recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

// Record keeps e.
func (r *Recorder) Record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

// Events returns the events recorded so far, oldest first.
func (r *Recorder) Events() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Last returns the latest event, or the zero Event when none was recorded.
func (r *Recorder) Last() audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return audit.Event{}
	}
	return r.events[len(r.events)-1]
}

// Find returns the events with action and result, oldest first.
func (r *Recorder) Find(action, result string) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.events {
		if e.Action == action && e.Result == result {
			out = append(out, e)
		}
	}
	return out
}
