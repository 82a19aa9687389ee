package session_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/webapi"
	"github.com/helixflow/helixflow/internal/freeport"
)

// deadPool is a pool on a port where no database listens: every query
// fails as it does when Postgres is down.
func deadPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx(t), fmt.Sprintf("postgres://helix@127.0.0.1:%d/helix?sslmode=disable&connect_timeout=2", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestNewRefusesBadConfig(t *testing.T) {
	db := deadPool(t)
	for _, tc := range []struct {
		name string
		cfg  session.Config
		want string
	}{
		{"no database", session.Config{PublicOrigin: origin}, "no database"},
		{"negative idle timeout", session.Config{DB: db, PublicOrigin: origin, IdleTimeout: -time.Minute}, "positive"},
		{"negative lifetime", session.Config{DB: db, PublicOrigin: origin, Lifetime: -time.Hour, IdleTimeout: -time.Hour}, "positive"},
		{"negative token lifetime", session.Config{DB: db, PublicOrigin: origin, TokenLifetime: -time.Hour}, "positive"},
		{"idle longer than the lifetime", session.Config{DB: db, PublicOrigin: origin, IdleTimeout: 2 * time.Hour, Lifetime: time.Hour}, "idle timeout"},
		{"default idle longer than a short lifetime", session.Config{DB: db, PublicOrigin: origin, Lifetime: 10 * time.Minute}, "idle timeout"},
		{"no public URL", session.Config{DB: db}, "public URL"},
		{"a relative public URL", session.Config{DB: db, PublicOrigin: "auth.example.test"}, "public URL"},
		{"no host", session.Config{DB: db, PublicOrigin: "https://"}, "public URL"},
		{"another scheme", session.Config{DB: db, PublicOrigin: "ftp://auth.example.test"}, "public URL"},
		{"unparsable", session.Config{DB: db, PublicOrigin: "https://auth.example.test:port"}, "public URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := session.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || m != nil {
				t.Fatalf("New = %v, %v; want an error naming %q", m, err, tc.want)
			}
		})
	}
	m, err := session.New(session.Config{DB: db, PublicOrigin: origin})
	if err != nil || m.Lifetime() != session.DefaultLifetime {
		t.Fatalf("defaults: %v, lifetime %v", err, m.Lifetime())
	}
	m, err = session.New(session.Config{DB: db, PublicOrigin: origin, IdleTimeout: time.Minute, Lifetime: time.Minute})
	if err != nil || m.Lifetime() != time.Minute {
		t.Fatalf("idle = lifetime: %v", err)
	}
}

func TestOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://auth.example.test":                 "https://auth.example.test",
		"HTTPS://Auth.Example.TEST/some/path?q=1#f": "https://auth.example.test",
		"http://127.0.0.1:8443/":                    "http://127.0.0.1:8443",
		"https://[::1]:8443":                        "https://[::1]:8443",
	} {
		if got, err := session.Origin(in); err != nil || got != want {
			t.Errorf("Origin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// The cookie is a __Host- cookie: Secure, Path=/, no Domain; HttpOnly
// (no script reads it) and SameSite=Lax. Clearing it keeps the attributes
// (a browser ignores a __Host- cookie without them).
func TestCookieAttributes(t *testing.T) {
	m := newManager(t, deadPool(t), nil)
	exp := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	for name, set := range map[string]func(http.ResponseWriter){
		"set":   func(w http.ResponseWriter) { m.SetCookie(w, session.Created{Secret: "s3cret", ExpiresAt: exp}) },
		"clear": m.ClearCookie,
	} {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			set(w)
			cs := w.Result().Cookies()
			if len(cs) != 1 {
				t.Fatalf("cookies: %v", w.Header()["Set-Cookie"])
			}
			c := cs[0]
			if c.Name != session.CookieName || !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || !c.HttpOnly ||
				c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
				t.Errorf("cookie %s lacks an attribute", w.Header().Get("Set-Cookie"))
			}
			switch name {
			case "set":
				if c.Value != "s3cret" || !c.Expires.Equal(exp) {
					t.Errorf("cookie %s: value or expiry", w.Header().Get("Set-Cookie"))
				}
			case "clear":
				if c.Value != "" || c.MaxAge >= 0 {
					t.Errorf("cookie %s does not remove the session", w.Header().Get("Set-Cookie"))
				}
			}
		})
	}
}

func TestHasScope(t *testing.T) {
	for _, tc := range []struct {
		p    session.Principal
		want bool
	}{
		{session.Principal{Via: session.ViaCookie}, true},
		{session.Principal{Via: session.ViaCookie, Scopes: []string{"models:read"}}, true},
		{session.Principal{Via: session.ViaBearer, Scopes: []string{"models:read", "account"}}, true},
		{session.Principal{Via: session.ViaBearer, Scopes: []string{"models:read"}}, false},
		{session.Principal{Via: session.ViaBearer}, false},
		{session.Principal{Scopes: []string{"account"}}, true},
		{session.Principal{}, false},
	} {
		if got := tc.p.HasScope("account"); got != tc.want {
			t.Errorf("%+v.HasScope(account) = %v, want %v", tc.p, got, tc.want)
		}
	}
}

func TestSecretsAndIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s, err := session.NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) != 32 || len(s) != 43 || seen[s] {
			t.Fatalf("secret %q: %d bytes, %v, seen %v", s, len(b), err, seen[s])
		}
		seen[s] = true
		if sum := sha256.Sum256([]byte(s)); string(session.Hash(s)) != string(sum[:]) {
			t.Fatalf("Hash(%q) is not its SHA-256", s)
		}
	}
	for id, want := range map[string]bool{
		"0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e":   true,
		"0B4C2F1E-5D6A-4B7C-8D9E-0F1A2B3C4D5E":   true,
		"0b4c2f1e5d6a4b7c8d9e0f1a2b3c4d5e":       false,
		"0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5":    false,
		"0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e0":  false,
		"0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5g":   false,
		"{b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e}":  false,
		"0b4c2f1e_5d6a-4b7c-8d9e-0f1a2b3c4d5e":   false,
		"0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d-5e":  false,
		"0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5é":   false,
		"'; DROP TABLE sessions; --aaaaaaaaaaaa": false,
		"":                                       false,
	} {
		if got := session.IsUUID(id); got != want {
			t.Errorf("IsUUID(%q) = %v, want %v", id, got, want)
		}
	}
}

// principalOf answers the principal as JSON, or "-" without one.
var principalOf = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := session.PrincipalFrom(r.Context())
	if !ok {
		_, _ = w.Write([]byte("-"))
		return
	}
	_ = json.NewEncoder(w).Encode(p)
})

// stubBearer verifies every token as its user.
type stubBearer struct{ user string }

func (s stubBearer) VerifyUserToken(context.Context, string) (string, string, []string, error) {
	return s.user, "00000000-0000-0000-0000-000000000009", []string{"account"}, nil
}

// errBearer fails every token with err.
type errBearer struct{ err error }

func (b errBearer) VerifyUserToken(context.Context, string) (string, string, []string, error) {
	return "", "", nil, b.err
}

func serveWith(m *session.Manager, h http.Handler, c call) *httptest.ResponseRecorder {
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
	m.Middleware(h).ServeHTTP(w, r)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Description == "" {
		t.Fatalf("not an error body: %s (%v)", w.Body, err)
	}
	return body.Error
}

// What the middleware refuses, and what it lets through without a
// principal, beyond TestMiddleware's cases: bearer failures, erased users,
// Origin checks before any credential, methods that are unsafe.
func TestMiddlewareRefusals(t *testing.T) {
	db := newDB(t)
	alice := newUser(t, db, "alice@example.test")
	erased := newUser(t, db, "erased@example.test")
	noBearer := newManager(t, db, nil)
	a, err := noBearer.CreateBrowserSession(ctx(t), alice, "", "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := noBearer.CreateBrowserSession(ctx(t), erased, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx(t), `UPDATE users SET erased_at = now(), email = NULL WHERE id = $1`, erased); err != nil {
		t.Fatal(err)
	}
	managers := map[string]*session.Manager{
		"none":    noBearer,
		"alice":   newManager(t, db, stubBearer{user: alice}),
		"erased":  newManager(t, db, stubBearer{user: erased}),
		"unknown": newManager(t, db, stubBearer{user: "00000000-0000-0000-0000-0000000000aa"}),
		"garbage": newManager(t, db, stubBearer{user: "alice"}),
	}
	for _, tc := range []struct {
		name, bearer string
		call         call
		code         int
		errCode      string
		who          string // the principal's user id; "-" none
	}{
		{"bearer without a verifier", "none", call{method: "GET", auth: "Bearer good-token"}, 401, webapi.CodeUnauthorized, ""},
		{"empty bearer", "alice", call{method: "GET", auth: "Bearer "}, 401, webapi.CodeUnauthorized, ""},
		{"scheme only", "alice", call{method: "GET", auth: "Bearer"}, 401, webapi.CodeUnauthorized, ""},
		{"lower-case scheme", "alice", call{method: "GET", auth: "bearer tok"}, 200, "", alice},
		{"token scheme", "alice", call{method: "GET", auth: "Token tok"}, 401, webapi.CodeUnauthorized, ""},
		{"bearer of an erased user", "erased", call{method: "GET", auth: "Bearer tok"}, 401, webapi.CodeUnauthorized, ""},
		{"bearer of an unknown user", "unknown", call{method: "GET", auth: "Bearer tok"}, 401, webapi.CodeUnauthorized, ""},
		{"bearer naming no uuid", "garbage", call{method: "GET", auth: "Bearer tok"}, 401, webapi.CodeUnauthorized, ""},
		{"bad bearer beside a good cookie", "none", call{method: "GET", auth: "Bearer x", cookie: a.Secret}, 401, webapi.CodeUnauthorized, ""},
		{"bearer change from a foreign origin", "alice", call{method: "POST", auth: "Bearer tok", origin: "https://evil.example"}, 403, webapi.CodeCSRF, ""},
		{"change from a foreign origin without credentials", "none", call{method: "DELETE", origin: "https://evil.example"}, 403, webapi.CodeCSRF, ""},
		{"origin null", "alice", call{method: "POST", auth: "Bearer tok", origin: "null"}, 403, webapi.CodeCSRF, ""},
		{"origin with a path", "alice", call{method: "POST", auth: "Bearer tok", origin: origin + "/"}, 403, webapi.CodeCSRF, ""},
		{"our origin in capitals", "alice", call{method: "POST", auth: "Bearer tok", origin: strings.ToUpper(origin)}, 200, "", alice},
		{"another port of our host", "none", call{method: "POST", cookie: a.Secret, csrf: a.CSRFToken, origin: origin + ":8443"}, 403, webapi.CodeCSRF, ""},
		{"a read from a foreign origin", "none", call{method: "GET", cookie: a.Secret, origin: "https://evil.example"}, 200, "", alice},
		{"HEAD needs no token", "none", call{method: "HEAD", cookie: a.Secret}, 200, "", alice},
		{"OPTIONS needs no token", "none", call{method: "OPTIONS", cookie: a.Secret}, 200, "", alice},
		{"PUT needs the token", "none", call{method: "PUT", cookie: a.Secret}, 403, webapi.CodeCSRF, ""},
		{"an unknown method needs the token", "none", call{method: "PURGE", cookie: a.Secret}, 403, webapi.CodeCSRF, ""},
		{"a token with a character changed", "none", call{method: "POST", cookie: a.Secret, csrf: a.CSRFToken[:42] + "A"}, 403, webapi.CodeCSRF, ""},
		{"a token cut short", "none", call{method: "POST", cookie: a.Secret, csrf: a.CSRFToken[:20]}, 403, webapi.CodeCSRF, ""},
		{"cookie of an erased user", "none", call{method: "GET", cookie: e.Secret}, 200, "", "-"},
		{"cookie of an erased user, with its token", "none", call{method: "POST", cookie: e.Secret, csrf: e.CSRFToken}, 200, "", "-"},
		{"cookie one character short", "none", call{method: "GET", cookie: a.Secret[:42]}, 200, "", "-"},
		{"cookie one character long", "none", call{method: "GET", cookie: a.Secret + "A"}, 200, "", "-"},
		{"cookie in standard base64", "none", call{method: "GET", cookie: strings.Repeat("+", 43)}, 200, "", "-"},
		{"empty cookie", "none", call{method: "GET", cookie: ""}, 200, "", "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serveWith(managers[tc.bearer], principalOf, tc.call)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			if tc.errCode != "" {
				if got := errorCode(t, w); got != tc.errCode {
					t.Errorf("error %q, want %q", got, tc.errCode)
				}
				return
			}
			if tc.who == "-" {
				if w.Body.String() != "-" {
					t.Errorf("a principal: %s", w.Body)
				}
				return
			}
			var p session.Principal
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.UserID != tc.who {
				t.Errorf("principal %s, want user %s", w.Body, tc.who)
			}
		})
	}
}

// PlatformAdmin is read at every request, for cookies and bearers alike:
// a flag granted or taken away counts at once.
func TestPlatformAdminReadPerRequest(t *testing.T) {
	db := newDB(t)
	u := newUser(t, db, "admin@example.test")
	m := newManager(t, db, stubBearer{user: u})
	c, err := m.CreateBrowserSession(ctx(t), u, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, admin := range []bool{true, false, true} {
		if _, err := db.Exec(ctx(t), `UPDATE users SET platform_admin = $2 WHERE id = $1`, u, admin); err != nil {
			t.Fatal(err)
		}
		for name, cl := range map[string]call{"cookie": {method: "GET", cookie: c.Secret}, "bearer": {method: "GET", auth: "Bearer t"}} {
			var p session.Principal
			w := serveWith(m, principalOf, cl)
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.PlatformAdmin != admin {
				t.Errorf("%s with platform_admin=%v: %s", name, admin, w.Body)
			}
		}
	}
}

// With the database down the middleware fails closed: a request that
// presents a credential gets 503 temporarily_unavailable, never an
// anonymous pass (a handler could serve it as signed out) nor a principal.
// A request with no credential, or one that cannot be a credential, needs
// no database and goes on without a principal.
func TestUnavailableFailsClosed(t *testing.T) {
	secret, err := session.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, deadPool(t), stubBearer{user: "0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e"})
	reached := false
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
		principalOf(w, r)
	})
	for _, tc := range []struct {
		name string
		call call
		code int
	}{
		{"cookie", call{method: "GET", cookie: secret}, 503},
		{"cookie change", call{method: "POST", cookie: secret, csrf: "x"}, 503},
		{"bearer", call{method: "GET", auth: "Bearer t"}, 503},
		{"nothing", call{method: "GET"}, 200},
		{"malformed cookie", call{method: "GET", cookie: "short"}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reached = false
			w := serveWith(m, next, tc.call)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			if tc.code == 503 {
				if reached {
					t.Error("the handler ran without the caller being known")
				}
				if got := errorCode(t, w); got != webapi.CodeUnavailable {
					t.Errorf("error %q, want %q", got, webapi.CodeUnavailable)
				}
			} else if w.Body.String() != "-" {
				t.Errorf("a principal without a database: %s", w.Body)
			}
		})
	}
	// A verifier that cannot judge the token (its stores are down) gets
	// the same 503; one that refuses it, 401.
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("oauth: token session: %w", session.ErrUnavailable), 503},
		{errors.New("oauth: invalid token: session ended"), 401},
	} {
		m := newManager(t, deadPool(t), errBearer{tc.err})
		reached = false
		if w := serveWith(m, next, call{method: "GET", auth: "Bearer t"}); w.Code != tc.code || reached {
			t.Errorf("verifier error %v: %d (handler ran: %v), want %d", tc.err, w.Code, reached, tc.code)
		}
	}
	// The store's calls report the failure; none says yes.
	const id = "0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e"
	r := httptest.NewRequest("POST", "/api/v1/login", nil)
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: secret})
	for name, call := range map[string]func() error{
		"CreateBrowserSession": func() error { _, err := m.CreateBrowserSession(ctx(t), id, "", ""); return err },
		"CreateTokenSession":   func() error { _, err := m.CreateTokenSession(ctx(t), id, "helixctl", "", ""); return err },
		"Live": func() error {
			uid, ok, err := m.Live(ctx(t), id)
			if ok || uid != "" {
				return errors.New("live without a database")
			}
			return err
		},
		"End":          func() error { return m.End(ctx(t), id) },
		"EndOwn":       func() error { return m.EndOwn(ctx(t), id, id) },
		"EndAll":       func() error { return m.EndAll(ctx(t), id, "") },
		"EndPresented": func() error { return m.EndPresented(ctx(t), r) },
		"List": func() error {
			l, err := m.List(ctx(t), id, "")
			if l != nil {
				return errors.New("a list without a database")
			}
			return err
		},
	} {
		if err := call(); err == nil || !strings.HasPrefix(err.Error(), "session: ") || errors.Is(err, session.ErrNotFound) {
			t.Errorf("%s: %v, want the database's failure", name, err)
		}
	}
}

// What a session row keeps: hashes of the secret and the CSRF token only,
// the lifetimes of the configuration, source and user agent cut to their
// columns and made valid UTF-8 (a header may carry any byte; a login must
// not fail on it).
func TestCreatedRows(t *testing.T) {
	db := newDB(t)
	m, err := session.New(session.Config{DB: db, PublicOrigin: origin, IdleTimeout: 5 * time.Minute,
		Lifetime: 2 * time.Hour, TokenLifetime: 3 * time.Hour, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	u := newUser(t, db, "u@example.test")
	longAgent := strings.Repeat("a", 511) + "é" + strings.Repeat("b", 100)
	c, err := m.CreateBrowserSession(ctx(t), u, "2001:db8::1", longAgent)
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(c.ExpiresAt) < 2*time.Hour-time.Minute || time.Until(c.ExpiresAt) > 2*time.Hour+time.Minute {
		t.Errorf("a browser session expires at %s, want in 2h", c.ExpiresAt)
	}
	var secretHash []byte
	var agent, kind string
	var inText int
	err = db.QueryRow(ctx(t), `SELECT secret_hash, user_agent, kind,
		(SELECT count(*) FROM sessions t WHERE strpos(t::text, $2) > 0 OR strpos(t::text, $3) > 0)
		FROM sessions s WHERE id = $1`, c.ID, c.Secret, c.CSRFToken).Scan(&secretHash, &agent, &kind, &inText)
	if err != nil {
		t.Fatal(err)
	}
	if string(secretHash) != string(session.Hash(c.Secret)) || inText != 0 || kind != session.KindBrowser {
		t.Errorf("the row keeps more than hashes (or the wrong ones): %d rows hold a secret in clear", inText)
	}
	if agent != strings.Repeat("a", 511) {
		t.Errorf("user agent stored as %d bytes %q..., want cut at 511 (é would straddle 512)", len(agent), agent[:10])
	}
	tok, err := m.CreateTokenSession(ctx(t), u, "helixctl", "192.0.2.1", "helixctl/1")
	if err != nil {
		t.Fatal(err)
	}
	var left time.Duration
	var clientID string
	if err := db.QueryRow(ctx(t), `SELECT expires_at - now(), kind, client_id FROM sessions WHERE id = $1`, tok).Scan(&left, &kind, &clientID); err != nil {
		t.Fatal(err)
	}
	if left < 3*time.Hour-time.Minute || left > 3*time.Hour || kind != session.KindToken || clientID != "helixctl" {
		t.Errorf("token session: %s left, kind %q, client %q", left, kind, clientID)
	}
	// Bytes that are no UTF-8: the session is made all the same.
	for agent, prefix := range map[string]string{
		"agent \xff\xfe":                  "agent ",
		"\xc3":                            "",
		strings.Repeat("é", 300) + "\xff": strings.Repeat("é", 200),
		"\xff" + strings.Repeat("é", 300): "",
	} {
		for name, create := range map[string]func() (string, error){
			"browser": func() (string, error) {
				c, err := m.CreateBrowserSession(ctx(t), u, "192.0.2.1", agent)
				return c.ID, err
			},
			"token": func() (string, error) { return m.CreateTokenSession(ctx(t), u, "helixctl", "192.0.2.1", agent) },
		} {
			id, err := create()
			if err != nil {
				t.Errorf("%s session with user agent %q: %v", name, agent, err)
				continue
			}
			var got string
			if err := db.QueryRow(ctx(t), `SELECT user_agent FROM sessions WHERE id = $1`, id).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if !utf8.ValidString(got) || len(got) > 512 || !strings.HasPrefix(got, prefix) {
				t.Errorf("%s session: user agent %q stored as %q", name, agent, got)
			}
		}
	}
	// No session for someone who does not exist.
	if _, err := m.CreateBrowserSession(ctx(t), "0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e", "", ""); err == nil {
		t.Error("a browser session for an unknown user")
	}
	if _, err := m.CreateTokenSession(ctx(t), "0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e", "helixctl", "", ""); err == nil {
		t.Error("a token session for an unknown user")
	}
}

// Using a browser session moves its idle timeout; its absolute lifetime
// stays. Live refuses malformed ids without asking, sessions of erased
// users, and unknown ones.
func TestLive(t *testing.T) {
	db := newDB(t)
	m := newManager(t, db, nil)
	u := newUser(t, db, "u@example.test")
	c, err := m.CreateBrowserSession(ctx(t), u, "", "")
	if err != nil {
		t.Fatal(err)
	}
	set := func(id, assignment string) {
		t.Helper()
		if _, err := db.Exec(ctx(t), `UPDATE sessions SET `+assignment+` WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
	}
	// 29 minutes idle: still live, and using it starts the 30 anew.
	set(c.ID, `last_seen_at = now() - interval '29 minutes'`)
	if uid, ok, err := m.Live(ctx(t), c.ID); err != nil || !ok || uid != u {
		t.Fatalf("Live after 29 idle minutes = %q, %v, %v", uid, ok, err)
	}
	var idle time.Duration
	if err := db.QueryRow(ctx(t), `SELECT now() - last_seen_at FROM sessions WHERE id = $1`, c.ID).Scan(&idle); err != nil || idle > time.Minute {
		t.Fatalf("Live did not touch last_seen_at: idle %s, %v", idle, err)
	}
	// Through the cookie as well.
	set(c.ID, `last_seen_at = now() - interval '29 minutes'`)
	if w := serve(m, call{method: "GET", cookie: c.Secret}); w.Body.String() == "-" {
		t.Fatal("a session 29 minutes idle does not resolve")
	}
	set(c.ID, `last_seen_at = last_seen_at - interval '2 minutes'`)
	if w := serve(m, call{method: "GET", cookie: c.Secret}); w.Body.String() == "-" {
		t.Fatal("resolving the cookie did not move the idle timeout")
	}
	// Use does not extend the absolute lifetime.
	set(c.ID, `expires_at = now() - interval '1 second'`)
	if _, ok, _ := m.Live(ctx(t), c.ID); ok {
		t.Fatal("a session past its lifetime is live")
	}
	for _, id := range []string{"", "not-a-uuid", c.ID + "x", "0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e"} {
		if uid, ok, err := m.Live(ctx(t), id); uid != "" || ok || err != nil {
			t.Errorf("Live(%q) = %q, %v, %v; want not live, no error", id, uid, ok, err)
		}
	}
	tok, err := m.CreateTokenSession(ctx(t), u, "helixctl", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx(t), `UPDATE users SET erased_at = now(), email = NULL WHERE id = $1`, u); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := m.Live(ctx(t), tok); ok || err != nil {
		t.Errorf("the token session of an erased user: live %v, %v", ok, err)
	}
}

// Which sessions List shows, and in what order; which EndOwn, EndAll and
// EndPresented end.
func TestListAndEndEdges(t *testing.T) {
	db := newDB(t)
	m := newManager(t, db, nil)
	u := newUser(t, db, "u@example.test")
	other := newUser(t, db, "o@example.test")
	mk := func(user string, created string) session.Created {
		t.Helper()
		c, err := m.CreateBrowserSession(ctx(t), user, "192.0.2.7", "agent/"+created)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx(t), `UPDATE sessions SET created_at = now() - $2::interval WHERE id = $1`, c.ID, created); err != nil {
			t.Fatal(err)
		}
		return c
	}
	oldest, middle, newest := mk(u, "3 minutes"), mk(u, "2 minutes"), mk(u, "1 minute")
	ended, idle, expired := mk(u, "4 minutes"), mk(u, "5 minutes"), mk(u, "6 minutes")
	theirs := mk(other, "1 second")
	if err := m.End(ctx(t), ended.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx(t), `UPDATE sessions SET last_seen_at = now() - interval '31 minutes' WHERE id = $1`, idle.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx(t), `UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, expired.ID); err != nil {
		t.Fatal(err)
	}
	list, err := m.List(ctx(t), u, middle.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range list {
		got = append(got, fmt.Sprintf("%s:%v", i.ID, i.Current))
		if i.Kind != session.KindBrowser || i.Source != "192.0.2.7" || !strings.HasPrefix(i.UserAgent, "agent/") || i.ClientID != "" ||
			i.CreatedAt.IsZero() || i.LastSeenAt.IsZero() || !i.ExpiresAt.After(time.Now()) {
			t.Errorf("info %+v", i)
		}
	}
	want := []string{newest.ID + ":false", middle.ID + ":true", oldest.ID + ":false"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("List = %v, want the live ones newest first %v", got, want)
	}
	for _, id := range []string{"", "nobody", "0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e"} {
		if l, err := m.List(ctx(t), id, ""); err != nil || len(l) != 0 {
			t.Errorf("List(%q) = %v, %v", id, l, err)
		}
	}

	// EndOwn: malformed ids and others' sessions are not found.
	for _, tc := range []struct{ user, id string }{
		{u, "not-a-uuid"},
		{"not-a-uuid", newest.ID},
		{u, "0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e"},
		{u, theirs.ID},
		{other, newest.ID},
	} {
		if err := m.EndOwn(ctx(t), tc.user, tc.id); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("EndOwn(%q, %q) = %v, want ErrNotFound", tc.user, tc.id, err)
		}
	}
	if _, ok, _ := m.Live(ctx(t), theirs.ID); !ok {
		t.Fatal("EndOwn ended another user's session")
	}
	// One's own ended session: ending it again is fine.
	if err := m.EndOwn(ctx(t), u, ended.ID); err != nil {
		t.Errorf("EndOwn of an ended own session: %v", err)
	}

	// EndAll with a malformed user ends nothing; with an except that is no
	// session id it ends every one.
	if err := m.EndAll(ctx(t), "not-a-uuid", ""); err != nil {
		t.Fatal(err)
	}
	if l, _ := m.List(ctx(t), u, ""); len(l) != 3 {
		t.Fatalf("EndAll of a malformed user ended sessions: %d left", len(l))
	}
	if err := m.EndAll(ctx(t), u, "'; --"); err != nil {
		t.Fatal(err)
	}
	if l, _ := m.List(ctx(t), u, ""); len(l) != 0 {
		t.Errorf("EndAll left %d sessions", len(l))
	}
	for _, c := range []session.Created{oldest, middle, newest} {
		if !revoked(t, db, c.ID) {
			t.Errorf("EndAll did not revoke %s", c.ID)
		}
	}
	if _, ok, _ := m.Live(ctx(t), theirs.ID); !ok {
		t.Fatal("EndAll ended another user's session")
	}

	// EndPresented ends the session of the cookie a login is handed, and
	// only that one.
	presented, kept := mk(u, "1 second"), mk(u, "2 seconds")
	for name, cookie := range map[string]string{"no cookie": "", "malformed": "x", "unknown": strings.Repeat("A", 43)} {
		r := httptest.NewRequest("POST", "/api/v1/login", nil)
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: session.CookieName, Value: cookie})
		}
		if err := m.EndPresented(ctx(t), r); err != nil {
			t.Errorf("EndPresented with %s: %v", name, err)
		}
	}
	if l, _ := m.List(ctx(t), u, ""); len(l) != 2 {
		t.Fatalf("EndPresented without a live cookie ended sessions: %d left", len(l))
	}
	r := httptest.NewRequest("POST", "/api/v1/login", nil)
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: presented.Secret})
	if err := m.EndPresented(ctx(t), r); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := m.Live(ctx(t), presented.ID); ok || !revoked(t, db, presented.ID) {
		t.Error("EndPresented left the presented session")
	}
	if _, ok, _ := m.Live(ctx(t), kept.ID); !ok {
		t.Error("EndPresented ended another session")
	}
}

// EndAllTx ends the user's sessions with the caller's transaction: they end
// when it commits, and not at all when it rolls back.
func TestEndAllTx(t *testing.T) {
	db := newDB(t)
	m := newManager(t, db, nil)
	u := newUser(t, db, "u@example.test")
	other := newUser(t, db, "o@example.test")
	c, err := m.CreateBrowserSession(ctx(t), u, "", "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := m.CreateTokenSession(ctx(t), u, "helixctl", "", "")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := m.CreateBrowserSession(ctx(t), other, "", "")
	if err != nil {
		t.Fatal(err)
	}
	inTx := func(user string, commit bool) {
		t.Helper()
		tx, err := db.Begin(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(context.Background()) }()
		if err := session.EndAllTx(ctx(t), tx, user); err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := tx.Commit(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
	inTx(u, false)
	if _, ok, _ := m.Live(ctx(t), c.ID); !ok || revoked(t, db, c.ID) {
		t.Fatal("a rolled-back EndAllTx ended a session")
	}
	inTx("not-a-uuid", true)
	inTx(u, true)
	for _, id := range []string{c.ID, tok} {
		if _, ok, _ := m.Live(ctx(t), id); ok || !revoked(t, db, id) {
			t.Errorf("EndAllTx left %s", id)
		}
	}
	if _, ok, _ := m.Live(ctx(t), theirs.ID); !ok {
		t.Error("EndAllTx ended another user's session")
	}
	// A failed transaction reports the failure.
	tx, err := db.Begin(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx(t), `SELECT 1/0`); err == nil {
		t.Fatal("1/0 succeeded")
	}
	if err := session.EndAllTx(ctx(t), tx, other); err == nil {
		t.Error("EndAllTx in an aborted transaction succeeded")
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
