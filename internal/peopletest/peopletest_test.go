package peopletest_test

import (
	"context"
	"os"
	"testing"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/password"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// TestAddUser: each field of User lands in its column, and a password is
// stored as a hash that verifies.
func TestAddUser(t *testing.T) {
	dsn := pgtest.Migrated(t)
	pool := pgtest.Pool(t, dsn)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		u    peopletest.User
	}{
		{"bare", peopletest.User{Email: "bare@example.test"}},
		{"verified admin", peopletest.User{Email: "root@example.test", Verified: true, Admin: true, DisplayName: "Root"}},
		{"password", peopletest.User{Email: "pw@example.test", Verified: true, Password: "a long enough passphrase"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := peopletest.AddUser(t, pool, tc.u)
			var (
				email, name string
				verified    bool
				admin       bool
				phc         *string
			)
			if err := pool.QueryRow(ctx, `SELECT email, display_name, email_verified_at IS NOT NULL, platform_admin, password_hash FROM users WHERE id = $1`,
				id).Scan(&email, &name, &verified, &admin, &phc); err != nil {
				t.Fatal(err)
			}
			if email != tc.u.Email || name != tc.u.DisplayName || verified != tc.u.Verified || admin != tc.u.Admin {
				t.Fatalf("row %q %q verified=%v admin=%v, want %+v", email, name, verified, admin, tc.u)
			}
			if tc.u.Password == "" {
				if phc != nil {
					t.Fatalf("password_hash %q without a password", *phc)
				}
				return
			}
			h, err := password.New(password.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if phc == nil {
				t.Fatal("no password_hash")
			}
			if ok, rehash, err := h.Verify(ctx, *phc, tc.u.Password); !ok || rehash || err != nil {
				t.Fatalf("verify: ok=%v rehash=%v err=%v", ok, rehash, err)
			}
		})
	}
}

func TestAddOrg(t *testing.T) {
	dsn := pgtest.Migrated(t)
	st := peopletest.Store(t, dsn)
	owner := peopletest.AddUser(t, pgtest.Pool(t, dsn), peopletest.User{Email: "o@example.test", Verified: true})
	id := peopletest.AddOrg(t, st, owner, store.Org{})
	o, err := st.GetOrg(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "org" {
		t.Fatalf("name %q, want the default org", o.Name)
	}
}

func TestRecorder(t *testing.T) {
	var r peopletest.Recorder
	if r.Last().Action != "" || len(r.Events()) != 0 {
		t.Fatal("an empty recorder has events")
	}
	for _, e := range []audit.Event{
		{Action: "a", Result: audit.ResultSuccess, Target: "1"},
		{Action: "b", Result: audit.ResultSuccess, Target: "2"},
		{Action: "a", Result: audit.ResultSuccess, Target: "3"},
		{Action: "a", Result: audit.ResultFailure, Target: "4"},
	} {
		if err := r.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Find("a", audit.ResultSuccess); len(got) != 2 || got[0].Target != "1" || got[1].Target != "3" {
		t.Fatalf("Find: %+v", got)
	}
	if r.Last().Target != "4" || len(r.Events()) != 4 {
		t.Fatalf("Last %+v, %d events", r.Last(), len(r.Events()))
	}
}
