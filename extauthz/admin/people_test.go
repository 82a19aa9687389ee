package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// tokens is a fake verifier of people's access tokens (the OAuth package
// has the real one, tested there): raw token -> user and scopes.
type tokens map[string]struct {
	user   string
	scopes []string
}

func (ts tokens) VerifyUserToken(_ context.Context, raw string) (string, string, []string, error) {
	if raw == "store-down" {
		return "", "", nil, fmt.Errorf("%w: revocation store", session.ErrUnavailable)
	}
	t, ok := ts[raw]
	if !ok {
		return "", "", nil, errors.New("invalid token")
	}
	return t.user, "00000000-0000-0000-0000-00000000000s", t.scopes, nil
}

type peopleEnv struct {
	st      *store.Store
	handler http.Handler
	trail   *peopletest.Recorder
	admin   string // a platform admin's id
	plain   string // a user who is not
}

func newPeopleEnv(t *testing.T) (*peopleEnv, tokens) {
	t.Helper()
	dsn := pgtest.Start(t)
	pgtest.Migrate(t, dsn)
	st := peopletest.Store(t, dsn)
	pool := pgtest.Pool(t, dsn)
	e := &peopleEnv{st: st, trail: &peopletest.Recorder{}}
	e.admin = peopletest.AddUser(t, pool, peopletest.User{Email: "root@example.com", Verified: true, Admin: true})
	e.plain = peopletest.AddUser(t, pool, peopletest.User{Email: "plain@example.com", Verified: true})
	peopletest.AddUser(t, pool, peopletest.User{Email: "unverified@example.com"})
	toks := tokens{
		"admin-with-scope":    {e.admin, []string{"account", admin.ScopeAdmin}},
		"admin-without-scope": {e.admin, []string{"account"}},
		"plain-with-scope":    {e.plain, []string{"account", admin.ScopeAdmin}},
	}
	h, err := admin.Handler(admin.Config{
		Store: st, People: st, UserTokens: toks, Audit: e.trail, Hasher: secret.NewHasher(nil), Token: testToken,
		Plans: admin.NewPlans(testPlans, "free"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Source: func(*http.Request) string { return "192.0.2.7" },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.handler = h
	return e, toks
}

func (e *peopleEnv) do(method, path, auth, operator, body string) (int, string) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if operator != "" {
		req.Header.Set(admin.OperatorHeader, operator)
	}
	req.Header.Set("User-Agent", "people-test")
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// TestActorRule: every admin call names a person: the admin token with
// Helix-Operator, or a platform admin's token with helix:admin, the flag
// read at each request.
func TestActorRule(t *testing.T) {
	e, _ := newPeopleEnv(t)
	for _, tc := range []struct {
		name, auth, operator string
		want                 int
		naming               string
	}{
		{"admin token without operator", testToken, "", http.StatusBadRequest, admin.OperatorHeader},
		{"admin token with a blank operator", testToken, "   ", http.StatusBadRequest, admin.OperatorHeader},
		{"admin token with a control character", testToken, "eve\x1b[2J", http.StatusBadRequest, admin.OperatorHeader},
		{"admin token with an overlong operator", testToken, strings.Repeat("o", 201), http.StatusBadRequest, admin.OperatorHeader},
		{"admin token with operator", testToken, "alice@ops", http.StatusOK, ""},
		{"platform admin's token", "admin-with-scope", "", http.StatusOK, ""},
		{"platform admin's token without helix:admin", "admin-without-scope", "", http.StatusForbidden, admin.ScopeAdmin},
		{"another person's token with helix:admin", "plain-with-scope", "", http.StatusForbidden, "platform admin"},
		{"unknown token", "nope", "", http.StatusUnauthorized, ""},
		{"a token that cannot be checked now", "store-down", "", http.StatusServiceUnavailable, "right now"},
		{"no token, operator alone", "", "alice@ops", http.StatusUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.do("GET", "/admin/v1/users", tc.auth, tc.operator, "")
			if code != tc.want || !strings.Contains(body, tc.naming) {
				t.Fatalf("%d %s, want %d naming %q", code, body, tc.want, tc.naming)
			}
		})
	}
	e.do("GET", "/admin/v1/users/"+e.plain, testToken, "alice@ops", "")
	if ev := e.trail.Last(); ev.Actor != "admin-token" || ev.Operator != "alice@ops" || ev.Target != "user:"+e.plain ||
		ev.Source != "192.0.2.7" || ev.UserAgent != "people-test" || ev.Result != audit.ResultSuccess {
		t.Fatalf("admin-token event %+v", ev)
	}
	e.do("GET", "/admin/v1/users/"+e.plain, "admin-with-scope", "", "")
	if ev := e.trail.Last(); ev.Actor != "user:"+e.admin || ev.Operator != "" {
		t.Fatalf("platform admin's event %+v", ev)
	}
	e.do("GET", "/admin/v1/users", "plain-with-scope", "", "")
	if ev := e.trail.Last(); ev.Actor != "user:"+e.plain || ev.Result != audit.ResultDenied {
		t.Fatalf("refused person's event %+v", ev)
	}
	// Withdrawing the flag takes effect at the next request.
	if code, body := e.do("PATCH", "/admin/v1/users/"+e.admin, testToken, "alice@ops", `{"platform_admin":false}`); code != http.StatusOK {
		t.Fatalf("withdraw: %d %s", code, body)
	}
	if code, _ := e.do("GET", "/admin/v1/users", "admin-with-scope", "", ""); code != http.StatusForbidden {
		t.Fatalf("former platform admin: %d, want 403", code)
	}
	// The other endpoints keep the rule: clients need an operator too.
	if code, body := e.do("GET", "/admin/v1/clients", testToken, "", ""); code != http.StatusBadRequest {
		t.Fatalf("clients without an operator: %d %s", code, body)
	}
}

func TestPeopleEndpoints(t *testing.T) {
	e, _ := newPeopleEnv(t)
	as := func(method, path, body string) (int, string) { return e.do(method, path, testToken, "ops", body) }
	for _, tc := range []struct {
		method, path, body string
		want               int
		naming             string
	}{
		{"GET", "/admin/v1/users?limit=0", "", http.StatusBadRequest, "limit"},
		{"GET", "/admin/v1/users?limit=1001", "", http.StatusBadRequest, "limit"},
		{"GET", "/admin/v1/users?after=x'--", "", http.StatusBadRequest, "after"},
		{"GET", "/admin/v1/users/" + e.plain, "", http.StatusOK, "plain@example.com"},
		{"GET", "/admin/v1/users/not-a-uuid", "", http.StatusNotFound, ""},
		{"PATCH", "/admin/v1/users/" + e.plain, `{}`, http.StatusBadRequest, "platform_admin"},
		{"PATCH", "/admin/v1/users/" + e.plain, `{"platform_admin":"yes"}`, http.StatusBadRequest, ""},
		{"PATCH", "/admin/v1/users/00000000-0000-0000-0000-000000000000", `{"platform_admin":true}`, http.StatusNotFound, ""},
		{"POST", "/admin/v1/orgs", `{"name":"x"}`, http.StatusBadRequest, "owner"},
		{"POST", "/admin/v1/orgs", `{"owner":"plain@example.com"}`, http.StatusBadRequest, "name"},
		{"POST", "/admin/v1/orgs", `{"name":"x","owner":"unverified@example.com"}`, http.StatusBadRequest, "verified"},
		{"POST", "/admin/v1/orgs", `{"name":"x","owner":"' OR 1=1 --@x"}`, http.StatusBadRequest, "verified"},
		{"POST", "/admin/v1/orgs", `{"name":"x","owner":"not-a-uuid"}`, http.StatusBadRequest, "verified"},
		{"POST", "/admin/v1/orgs", `{"name":"Plain's org","owner":"PLAIN@example.com"}`, http.StatusCreated, `"allowed_plans":["free"]`},
		{"GET", "/admin/v1/orgs", "", http.StatusOK, "Plain's org"},
	} {
		if code, body := as(tc.method, tc.path, tc.body); code != tc.want || !strings.Contains(body, tc.naming) {
			t.Fatalf("%s %s %s: %d %s, want %d naming %q", tc.method, tc.path, tc.body, code, body, tc.want, tc.naming)
		}
	}
	orgs, err := e.st.UserOrgs(context.Background(), e.plain)
	if err != nil || len(orgs) != 1 || orgs[0].Role != store.RoleOwner {
		t.Fatalf("owner's organizations %+v, %v", orgs, err)
	}
	policy := "/admin/v1/orgs/" + orgs[0].ID + "/policy"
	for _, tc := range []struct {
		body, naming string
		want         int
	}{
		{`{"allowed_plans":["gold"],"allowed_scopes":["models:infer"],"max_api_keys":3}`, "max_clients", http.StatusBadRequest},
		{`{"allowed_plans":["platinum"],"allowed_scopes":["models:infer"],"max_api_keys":3,"max_clients":1}`, "platinum", http.StatusBadRequest},
		{`{"allowed_plans":["gold"],"allowed_scopes":["root"],"max_api_keys":3,"max_clients":1}`, "root", http.StatusBadRequest},
		{`{"allowed_plans":["gold"],"allowed_scopes":["models:infer"],"max_api_keys":-1,"max_clients":1}`, "max_api_keys", http.StatusBadRequest},
		{`{"allowed_plans":["gold"],"allowed_scopes":["models:infer"],"max_api_keys":100001,"max_clients":1}`, "max_api_keys", http.StatusBadRequest},
		{`{"allowed_plans":["gold","free","gold"],"allowed_scopes":["models:infer"],"max_api_keys":3,"max_clients":1}`, `"allowed_plans":["free","gold"]`, http.StatusOK},
	} {
		if code, body := as("PUT", policy, tc.body); code != tc.want || !strings.Contains(body, tc.naming) {
			t.Fatalf("PUT policy %s: %d %s, want %d naming %q", tc.body, code, body, tc.want, tc.naming)
		}
	}
	if code, _ := as("PUT", "/admin/v1/orgs/00000000-0000-0000-0000-000000000000/policy",
		`{"allowed_plans":[],"allowed_scopes":[],"max_api_keys":0,"max_clients":0}`); code != http.StatusNotFound {
		t.Fatalf("policy of an unknown organization: %d, want 404", code)
	}
	if ev := e.trail.Last(); ev.Action != "admin.orgs.set_policy" || ev.Result != audit.ResultFailure {
		t.Fatalf("failed policy change's event %+v", ev)
	}
}

// TestPeopleOff: without a people store the endpoints say so.
func TestPeopleOff(t *testing.T) {
	e := newEnv(t, false)
	if code, body := e.do(t, "GET", "/admin/v1/users", nil); code != http.StatusNotImplemented {
		t.Fatalf("users without a people store: %d %s", code, body)
	}
}
