package session_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/migrations"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

const origin = "https://auth.example.test"

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// newDB returns a pool on a fresh, migrated database of the shared server.
func newDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	db, err := migrations.OpenDB(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrations.Up(ctx(t), db); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func newManager(t testing.TB, db *pgxpool.Pool, bearer session.BearerVerifier) *session.Manager {
	t.Helper()
	m, err := session.New(session.Config{
		DB: db, PublicOrigin: origin, Bearer: bearer,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newUser(t testing.TB, db *pgxpool.Pool, email string) string {
	t.Helper()
	var id string
	if err := db.QueryRow(ctx(t), `INSERT INTO users (email) VALUES ($1) RETURNING id::text`, email).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// whoami answers the principal's user id, or "-" without one.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := session.PrincipalFrom(r.Context())
	if !ok {
		_, _ = io.WriteString(w, "-")
		return
	}
	_, _ = io.WriteString(w, p.Via+":"+p.UserID+":"+p.SessionID)
})

type call struct {
	method, cookie, csrf, origin, auth string
}

func serve(m *session.Manager, c call) *httptest.ResponseRecorder {
	r := httptest.NewRequest(c.method, "/api/v1/account", nil)
	if c.cookie != "" {
		r.AddCookie(&http.Cookie{Name: session.CookieName, Value: c.cookie})
	}
	if c.csrf != "" {
		r.Header.Set(session.CSRFHeader, c.csrf)
	}
	if c.origin != "" {
		r.Header.Set("Origin", c.origin)
	}
	if c.auth != "" {
		r.Header.Set("Authorization", c.auth)
	}
	w := httptest.NewRecorder()
	m.Middleware(whoami).ServeHTTP(w, r)
	return w
}

type fakeBearer struct{ user, sid string }

func (f fakeBearer) VerifyUserToken(_ context.Context, raw string) (string, string, []string, error) {
	if raw != "good-token" {
		return "", "", nil, errors.New("bad token")
	}
	return f.user, f.sid, []string{"account"}, nil
}

func TestMiddleware(t *testing.T) {
	db := newDB(t)
	alice := newUser(t, db, "alice@example.test")
	bob := newUser(t, db, "bob@example.test")
	m := newManager(t, db, fakeBearer{user: bob, sid: "00000000-0000-0000-0000-000000000001"})
	a, err := m.CreateBrowserSession(ctx(t), alice, "192.0.2.1", "test agent")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.CreateBrowserSession(ctx(t), bob, "192.0.2.2", "test agent")
	if err != nil {
		t.Fatal(err)
	}
	me := "cookie:" + alice + ":" + a.ID
	for _, tc := range []struct {
		name string
		call call
		code int
		body string
	}{
		{"no credential", call{method: "GET"}, 200, "-"},
		{"cookie read", call{method: "GET", cookie: a.Secret}, 200, me},
		{"cookie change with its token", call{method: "POST", cookie: a.Secret, csrf: a.CSRFToken}, 200, me},
		{"cookie change with its token and our origin", call{method: "DELETE", cookie: a.Secret, csrf: a.CSRFToken, origin: origin}, 200, me},
		{"cookie change without a token", call{method: "POST", cookie: a.Secret}, 403, ""},
		{"cookie change with another session's token", call{method: "PATCH", cookie: a.Secret, csrf: b.CSRFToken}, 403, ""},
		{"cookie change with the secret as token", call{method: "PATCH", cookie: a.Secret, csrf: a.Secret}, 403, ""},
		{"cookie change from a foreign origin", call{method: "POST", cookie: a.Secret, csrf: a.CSRFToken, origin: "https://evil.example"}, 403, ""},
		{"unknown cookie", call{method: "GET", cookie: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, 200, "-"},
		{"malformed cookie", call{method: "GET", cookie: "'; DROP TABLE sessions; --"}, 200, "-"},
		{"bearer", call{method: "POST", auth: "Bearer good-token"}, 200, "bearer:" + bob + ":00000000-0000-0000-0000-000000000001"},
		{"bearer wins over cookie", call{method: "GET", auth: "Bearer good-token", cookie: a.Secret}, 200, "bearer:" + bob + ":00000000-0000-0000-0000-000000000001"},
		{"bad bearer", call{method: "GET", auth: "Bearer bad", cookie: a.Secret}, 401, ""},
		{"basic auth", call{method: "GET", auth: "Basic Zm9vOmJhcg=="}, 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(m, tc.call)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			if tc.body != "" && w.Body.String() != tc.body {
				t.Errorf("body %q, want %q", w.Body, tc.body)
			}
			if w.Code == 403 && !strings.Contains(w.Body.String(), "csrf_failed") {
				t.Errorf("403 without csrf_failed: %s", w.Body)
			}
		})
	}
}

func revoked(t *testing.T, db *pgxpool.Pool, sid string) bool {
	t.Helper()
	var n int
	if err := db.QueryRow(ctx(t), `SELECT count(*) FROM revoked_tokens WHERE jti = $1 AND expires_at > now() + interval '50 minutes'`, "sid:"+sid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestEndRevokesAndKillsTheCookie(t *testing.T) {
	db := newDB(t)
	m := newManager(t, db, nil)
	u := newUser(t, db, "u@example.test")
	c, err := m.CreateBrowserSession(ctx(t), u, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.End(ctx(t), c.ID); err != nil {
		t.Fatal(err)
	}
	if !revoked(t, db, c.ID) {
		t.Error("ending a session did not revoke sid:<id>")
	}
	if w := serve(m, call{method: "GET", cookie: c.Secret}); w.Body.String() != "-" {
		t.Errorf("an ended session still resolves: %s", w.Body)
	}
	// Ending again, or something unknown, is no error.
	for _, id := range []string{c.ID, "00000000-0000-0000-0000-000000000000", "not a uuid'--"} {
		if err := m.End(ctx(t), id); err != nil {
			t.Errorf("End(%q): %v", id, err)
		}
	}
}

func TestTimeouts(t *testing.T) {
	db := newDB(t)
	m := newManager(t, db, nil)
	u := newUser(t, db, "u@example.test")
	for _, tc := range []struct {
		name, set string
	}{
		{"idle", `last_seen_at = now() - interval '31 minutes'`},
		{"absolute", `expires_at = now() - interval '1 second'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := m.CreateBrowserSession(ctx(t), u, "", "")
			if err != nil {
				t.Fatal(err)
			}
			if w := serve(m, call{method: "GET", cookie: c.Secret}); w.Body.String() == "-" {
				t.Fatal("a fresh session does not resolve")
			}
			if _, err := db.Exec(ctx(t), `UPDATE sessions SET `+tc.set+` WHERE id = $1`, c.ID); err != nil {
				t.Fatal(err)
			}
			if w := serve(m, call{method: "GET", cookie: c.Secret}); w.Body.String() != "-" {
				t.Errorf("a timed-out session resolves: %s", w.Body)
			}
			if _, ok, err := m.Live(ctx(t), c.ID); err != nil || ok {
				t.Errorf("Live = %v, %v; want not live", ok, err)
			}
		})
	}
}

func TestTokenSessionsEndAllAndList(t *testing.T) {
	db := newDB(t)
	m := newManager(t, db, nil)
	u := newUser(t, db, "u@example.test")
	other := newUser(t, db, "o@example.test")
	tok, err := m.CreateTokenSession(ctx(t), u, "helixctl", "192.0.2.9", "helixctl/1")
	if err != nil {
		t.Fatal(err)
	}
	// A token session has no idle timeout of its own (its refresh tokens'
	// lifetime is that).
	if _, err := db.Exec(ctx(t), `UPDATE sessions SET last_seen_at = now() - interval '2 days' WHERE id = $1`, tok); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := m.Live(ctx(t), tok); err != nil || !ok || got != u {
		t.Fatalf("Live(token) = %q, %v, %v", got, ok, err)
	}
	keep, err := m.CreateBrowserSession(ctx(t), u, "", "")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := m.CreateBrowserSession(ctx(t), other, "", "")
	if err != nil {
		t.Fatal(err)
	}
	list, err := m.List(ctx(t), u, keep.ID)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if !list[0].Current || list[0].ID != keep.ID || list[1].ClientID != "helixctl" || list[1].Kind != session.KindToken {
		t.Errorf("List = %+v", list)
	}
	if err := m.EndOwn(ctx(t), u, theirs.ID); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ending another user's session: %v, want ErrNotFound", err)
	}
	if err := m.EndAll(ctx(t), u, keep.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := m.Live(ctx(t), tok); ok {
		t.Error("EndAll left the token session live")
	}
	if !revoked(t, db, tok) {
		t.Error("EndAll did not revoke the token session's sid")
	}
	if _, ok, _ := m.Live(ctx(t), keep.ID); !ok {
		t.Error("EndAll ended the session it was told to keep")
	}
	if _, ok, _ := m.Live(ctx(t), theirs.ID); !ok {
		t.Error("EndAll ended another user's session")
	}
	if err := m.EndOwn(ctx(t), u, keep.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := m.List(ctx(t), u, ""); len(list) != 0 {
		t.Errorf("sessions left: %+v", list)
	}
}

func TestRequire(t *testing.T) {
	m := &session.Manager{}
	w := httptest.NewRecorder()
	m.Require(whoami).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != 401 {
		t.Errorf("no principal: %d, want 401", w.Code)
	}
	w = httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(session.WithPrincipal(r.Context(), session.Principal{UserID: "u", Via: session.ViaCookie}))
	m.Require(whoami).ServeHTTP(w, r)
	if w.Code != 200 {
		t.Errorf("with a principal: %d, want 200", w.Code)
	}
}
