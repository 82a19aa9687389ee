package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/extauthz/store"
)

// insertUser adds a verified user the way the accounts package would.
func insertUser(t *testing.T, dsn, email string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx(t))
	var id string
	if err := conn.QueryRow(ctx(t), `INSERT INTO users (email, email_verified_at) VALUES ($1, now()) RETURNING id`, email).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRecordAPIKeyUseAddsDailyRows(t *testing.T) {
	s, _ := newStore(t)
	if err := s.CreateClient(ctx(t), client("c1")); err != nil {
		t.Fatal(err)
	}
	k := &store.APIKey{ID: "k1", Prefix: "k1", Hash: []byte("h"), ClientID: "c1"}
	if err := s.CreateAPIKey(ctx(t), k); err != nil {
		t.Fatal(err)
	}
	day1 := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)
	day2 := day1.Add(2 * time.Minute)
	for _, u := range []struct {
		at time.Time
		n  int64
	}{{day1, 3}, {day1.Add(-time.Hour), 2}, {day2, 7}} {
		if err := s.RecordAPIKeyUse(ctx(t), "k1", u.at, u.n); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.APIKeyUsage(ctx(t), []string{"k1"}, day1.Add(-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	days := got["k1"]
	if len(days) != 2 || days[0].Count != 5 || days[1].Count != 7 ||
		days[0].Day.Format(time.DateOnly) != "2026-03-01" || days[1].Day.Format(time.DateOnly) != "2026-03-02" {
		t.Fatalf("daily usage = %+v, want 2026-03-01: 5, 2026-03-02: 7", days)
	}
	after, err := s.GetAPIKeyByPrefix(ctx(t), "k1")
	if err != nil {
		t.Fatal(err)
	}
	if after.UseCount != 12 || !after.LastUsedAt.Equal(day2) {
		t.Fatalf("totals = %d, %v; want 12, %v", after.UseCount, after.LastUsedAt, day2)
	}
	if err := s.RecordAPIKeyUse(ctx(t), "nope", day1, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown key: %v, want ErrNotFound", err)
	}
}

func TestOrgLimitsAndOwners(t *testing.T) {
	s, dsn := newStore(t)
	alice, bob := insertUser(t, dsn, "alice@example.com"), insertUser(t, dsn, "bob@example.com")
	o := &store.Org{Name: "acme'; DROP TABLE clients; --", AllowedPlans: []string{"free"}, AllowedScopes: []string{"models:infer"}, MaxClients: 1, MaxAPIKeys: 1}
	if err := s.CreateOrg(ctx(t), o, alice); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetOrg(ctx(t), o.ID); err != nil || got.Name != o.Name {
		t.Fatalf("GetOrg = %+v, %v", got, err)
	}
	c := client("oc1")
	c.OrgID, c.CreatedBy = o.ID, alice
	if err := s.CreateOrgClient(ctx(t), c); err != nil {
		t.Fatal(err)
	}
	c2 := client("oc2")
	c2.OrgID = o.ID
	if err := s.CreateOrgClient(ctx(t), c2); !errors.Is(err, store.ErrLimit) {
		t.Fatalf("second client over a limit of 1: %v, want ErrLimit", err)
	}
	k := &store.APIKey{ID: "ok1", Prefix: "ok1", Hash: []byte("h"), ClientID: "oc1", CreatedBy: alice}
	if err := s.CreateOrgAPIKey(ctx(t), o.ID, k); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOrgAPIKey(ctx(t), o.ID, &store.APIKey{ID: "ok2", Prefix: "ok2", Hash: []byte("h"), ClientID: "oc1"}); !errors.Is(err, store.ErrLimit) {
		t.Fatalf("second key over a limit of 1: %v, want ErrLimit", err)
	}
	// Rotation replaces a key: not counted against the limit.
	next := &store.APIKey{ID: "ok3", Prefix: "ok3", Hash: []byte("h"), Replaces: "ok1"}
	until := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	if err := s.RotateAPIKey(ctx(t), o.ID, next, until); err != nil {
		t.Fatal(err)
	}
	if old, err := s.GetAPIKey(ctx(t), "ok1"); err != nil || old.ExpiresAt == nil || !old.ExpiresAt.Equal(until) {
		t.Fatalf("old key after rotation: %+v, %v; want expiry %v", old, err, until)
	}
	if err := s.RotateAPIKey(ctx(t), o.ID, &store.APIKey{ID: "ok4", Prefix: "ok4", Hash: []byte("h"), Replaces: "ok1"}, until); !errors.Is(err, store.ErrRotated) {
		t.Fatalf("rotating twice: %v, want ErrRotated", err)
	}
	// Another organization's key is not found.
	other := &store.Org{Name: "other"}
	if err := s.CreateOrg(ctx(t), other, bob); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateAPIKey(ctx(t), other.ID, &store.APIKey{ID: "ok5", Prefix: "ok5", Hash: []byte("h"), Replaces: "ok3"}, until); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rotating another organization's key: %v, want ErrNotFound", err)
	}

	if err := s.SetMemberRole(ctx(t), o.ID, alice, store.RoleAdmin); !errors.Is(err, store.ErrLastOwner) {
		t.Fatalf("demoting the last owner: %v, want ErrLastOwner", err)
	}
	if err := s.SetMemberRole(ctx(t), o.ID, alice, ""); !errors.Is(err, store.ErrLastOwner) {
		t.Fatalf("removing the last owner: %v, want ErrLastOwner", err)
	}
	if err := s.AddMember(ctx(t), o.ID, bob, store.RoleOwner); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx(t), o.ID, bob, store.RoleViewer); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("adding a member twice: %v, want ErrConflict", err)
	}
	if err := s.SetMemberRole(ctx(t), o.ID, alice, ""); err != nil {
		t.Fatalf("removing one of two owners: %v", err)
	}
	if _, err := s.MemberRole(ctx(t), o.ID, alice); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removed member's role: %v, want ErrNotFound", err)
	}
	if err := s.DeleteOrg(ctx(t), o.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClient(ctx(t), "oc1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("client of a deleted organization: %v, want ErrNotFound", err)
	}
	if _, err := s.GetOrg(ctx(t), "not-a-uuid'--"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("malformed id: %v, want ErrNotFound", err)
	}
}
