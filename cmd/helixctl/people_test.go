package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// TestUsersAndOrgs drives helixctl users and orgs against the admin API on
// a real Postgres, and checks that each call named its operator.
func TestUsersAndOrgs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := pgtest.Start(t)
	pgtest.Migrate(t, dsn)
	st := peopletest.Store(t, dsn)
	uid := peopletest.AddUser(t, pgtest.Pool(t, dsn), peopletest.User{Email: "ada@example.com", Verified: true})

	trail := &peopletest.Recorder{}
	h, err := admin.Handler(admin.Config{
		Store: st, People: st, Audit: trail, Hasher: secret.NewHasher(nil), Token: adminToken,
		Plans: admin.NewPlans([]string{"free", "gold"}, "free"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	t.Setenv("HELIX_ADMIN_URL", srv.URL)
	t.Setenv("HELIX_ADMIN_TOKEN", adminToken)
	t.Setenv("HELIX_OPERATOR", "ada from the environment")
	c := &cli{}

	var o admin.OrgView
	if err := json.Unmarshal([]byte(c.mustRun(t, "orgs", "create", "--name", "Acme", "--owner", "ada@example.com", "--output", "json")), &o); err != nil {
		t.Fatal(err)
	}
	if o.Name != "Acme" || !slices.Equal(o.Policy.Plans, []string{"free"}) || o.Policy.MaxAPIKeys != 10 {
		t.Fatalf("created %+v", o)
	}
	if ev := trail.Last(); ev.Action != "admin.orgs.create" || ev.Actor != "admin-token" || ev.Operator != "ada from the environment" || ev.Target != "org:"+o.ID {
		t.Fatalf("audit event %+v", ev)
	}

	out := c.mustRun(t, "orgs", "policy", o.ID, "--plans", "gold,free", "--max-keys", "3", "--operator", "grace")
	if !strings.Contains(out, "free,gold") {
		t.Fatalf("policy output:\n%s", out)
	}
	got, err := st.GetOrg(ctx, o.ID)
	if err != nil || !slices.Equal(got.AllowedPlans, []string{"free", "gold"}) || got.MaxAPIKeys != 3 || got.MaxClients != 5 ||
		!slices.Equal(got.AllowedScopes, []string{"models:infer", "models:read"}) {
		t.Fatalf("policy after helixctl orgs policy: %+v, %v", got, err)
	}
	if ev := trail.Last(); ev.Operator != "grace" || ev.Action != "admin.orgs.set_policy" {
		t.Fatalf("--operator not sent: %+v", ev)
	}
	if _, err := c.run(t, "orgs", "policy", o.ID, "--plans", "platinum"); err == nil || !strings.Contains(err.Error(), "platinum") {
		t.Fatalf("a plan the gateway lacks: %v", err)
	}
	if _, err := c.run(t, "orgs", "policy", o.ID); err == nil {
		t.Fatal("orgs policy without a change passed")
	}

	c.mustRun(t, "users", "set-admin", uid)
	u, err := st.GetUser(ctx, uid)
	if err != nil || !u.PlatformAdmin {
		t.Fatalf("after set-admin: %+v, %v", u, err)
	}
	out = c.mustRun(t, "users", "list")
	if !strings.Contains(out, "ada@example.com") || !strings.Contains(out, "true") {
		t.Fatalf("users list:\n%s", out)
	}
	c.mustRun(t, "users", "set-admin", uid, "--off")
	if u, _ := st.GetUser(ctx, uid); u.PlatformAdmin {
		t.Fatal("set-admin --off left the flag")
	}
	if out := c.mustRun(t, "orgs", "list"); !strings.Contains(out, o.ID) {
		t.Fatalf("orgs list:\n%s", out)
	}
	if _, err := c.run(t, "users", "get", "00000000-0000-0000-0000-000000000000"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown user: %v", err)
	}
}
