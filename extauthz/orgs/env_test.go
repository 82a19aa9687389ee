package orgs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/orgs"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is the organizations' API on a real Postgres, with the caller chosen
// per request (the session middleware is the session package's and tested
// there; here the principal is put in the context as it would).
type env struct {
	st     *store.Store
	pool   *pgxpool.Pool
	api    http.Handler
	audit  *peopletest.Recorder
	hasher *secret.Hasher
	plans  *admin.Plans
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dsn := pgtest.Migrated(t)
	st := peopletest.Store(t, dsn)
	e := &env{st: st, pool: pgtest.Pool(t, dsn), audit: &peopletest.Recorder{}, hasher: secret.NewHasher([]byte("pepper for the orgs tests")),
		plans: admin.NewPlans([]string{"free", "standard", "gold"}, "free")}
	api, err := orgs.New(orgs.Config{Store: st, Hasher: e.hasher, Plans: e.plans, Audit: e.audit, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.api = api
	return e
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// user adds a verified user named by its address, as the accounts package
// would.
func (e *env) user(t testing.TB, email string) string {
	t.Helper()
	return peopletest.AddUser(t, e.pool, peopletest.User{Email: strings.ToLower(email), DisplayName: email, Verified: true})
}

// call sends a request as userID ("" for nobody) with bearer scopes
// (nil: a cookie session) and decodes the answer into out.
func (e *env) call(t testing.TB, userID, method, path string, body any, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	} else if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if userID != "" {
		req = req.WithContext(session.WithPrincipal(req.Context(), session.Principal{UserID: userID, Via: session.ViaCookie}))
	}
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, req)
	if out != nil && rec.Code < 300 {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, rec.Body)
		}
	}
	return rec.Code, rec.Body.String()
}

// openPolicy allows the test plans and scopes, a few of each count.
func openPolicy() store.Org {
	return store.Org{AllowedPlans: []string{"free", "standard"}, AllowedScopes: []string{"models:infer", "models:read"}, MaxAPIKeys: 10, MaxClients: 5}
}

type clientOut struct {
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret"`
	Plan         string   `json:"plan"`
	Scopes       []string `json:"scopes"`
	OrgID        string   `json:"org_id"`
}

type keyOut struct {
	ID         string     `json:"id"`
	Key        string     `json:"key"`
	ClientID   string     `json:"client_id"`
	Replaces   string     `json:"replaces"`
	LastUsedAt *time.Time `json:"last_used_at"`
	UseCount   int64      `json:"use_count"`
	Usage      []struct {
		Day   string `json:"day"`
		Count int64  `json:"count"`
	} `json:"usage"`
}

func (e *env) client(t testing.TB, as, org string) clientOut {
	t.Helper()
	var c clientOut
	if code, body := e.call(t, as, "POST", "/api/v1/orgs/"+org+"/clients",
		map[string]any{"name": "app", "scopes": []string{"models:infer"}, "models": []string{"*"}}, &c); code != http.StatusCreated {
		t.Fatalf("create client: %d %s", code, body)
	}
	return c
}

func (e *env) key(t testing.TB, as, org, client string) keyOut {
	t.Helper()
	var k keyOut
	if code, body := e.call(t, as, "POST", "/api/v1/orgs/"+org+"/apikeys", map[string]any{"client_id": client, "name": "k"}, &k); code != http.StatusCreated {
		t.Fatalf("create key: %d %s", code, body)
	}
	return k
}
