package accounts_test

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/session"
)

// Session fixation: a cookie presented at login is ended, never adopted,
// even when it names a live session (the attacker's own).
func TestLoginReplacesAPresentedSession(t *testing.T) {
	e := newEnv(t, options{})
	attacker := e.signedUp("mallory@example.test", "203.0.113.1")
	planted := attacker.cookie(session.CookieName)
	e.signedUp("victim@example.test", "203.0.113.2")

	victim := e.browser("203.0.113.3")
	victim.setCookie(session.CookieName, planted)
	victim.login("victim@example.test", goodPassword)
	got := victim.cookie(session.CookieName)
	if got == "" || got == planted {
		t.Fatalf("login kept the planted cookie")
	}
	// The planted session is over: the attacker cannot ride it.
	expect(t, attacker.call("GET", "/api/v1/account", nil), 401, "unauthorized")
	a := victim.call("GET", "/api/v1/account", nil)
	expect(t, a, 200, "")
	if a.json(t)["email"] != "victim@example.test" {
		t.Errorf("the new session is not the victim's: %s", a.body)
	}
}

// CSRF: a cookie-authenticated change without the session's token, with
// another session's, or from another origin is refused; so is a login
// posted from another origin.
func TestCSRF(t *testing.T) {
	e := newEnv(t, options{})
	a := e.signedUp("a@example.test", "203.0.113.10")
	b := e.signedUp("b@example.test", "203.0.113.11")
	own := a.csrf
	patch := map[string]string{"display_name": "changed"}
	for _, tc := range []struct {
		name string
		hdr  []string
	}{
		{"missing", []string{session.CSRFHeader, ""}},
		{"foreign", []string{session.CSRFHeader, b.csrf}},
		{"garbage", []string{session.CSRFHeader, "x' OR '1'='1"}},
		{"other origin", []string{"Origin", "https://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/account", "/api/v1/logout", "/api/v1/account/password", "/api/v1/account/sessions/00000000-0000-0000-0000-000000000000"} {
				method := map[string]string{"/api/v1/account": "PATCH"}[path]
				if method == "" {
					method = "POST"
				}
				if strings.Contains(path, "sessions/") {
					method = "DELETE"
				}
				expect(t, a.call(method, path, patch, tc.hdr...), 403, "csrf_failed")
			}
		})
	}
	a.csrf = own
	if v := a.call("GET", "/api/v1/account", nil).json(t); v["display_name"] == "changed" {
		t.Fatal("a refused change happened")
	}
	expect(t, a.call("PATCH", "/api/v1/account", patch, "Origin", e.srv.URL), 200, "")
	login := e.browser("203.0.113.12")
	expect(t, login.call("POST", "/api/v1/login", map[string]string{"email": "a@example.test", "password": goodPassword}, "Origin", "https://evil.example"), 403, "csrf_failed")
}

// Brute force: failures from one source are answered 429 with
// Retry-After before any hash is computed, while another account from
// another source keeps working; the victim's own wait is capped at a
// minute.
func TestBruteForce(t *testing.T) {
	e := newEnv(t, options{})
	e.signedUp("victim@example.test", "203.0.113.20")
	e.signedUp("bystander@example.test", "203.0.113.21")
	attacker := e.browser("203.0.113.66")
	guess := func(pw string) answer {
		return attacker.call("POST", "/api/v1/login", map[string]string{"email": "victim@example.test", "password": pw})
	}
	expect(t, guess("guess number 1"), 401, "invalid_credentials")
	a := guess("guess number 2")
	expect(t, a, 429, "too_many_requests")
	if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", a.header.Get("Retry-After"))
	}
	// Even the right password waits: the attacker learns nothing.
	expect(t, guess(goodPassword), 429, "too_many_requests")
	// Doubling: after n failures the wait is 2^(n-1) s.
	for i := range 6 {
		e.clock.Add(time.Duration(1<<i) * time.Second)
		expect(t, guess("guess again"), 401, "invalid_credentials")
	}
	a = guess("guess again")
	if ra, _ := strconv.Atoi(a.header.Get("Retry-After")); a.status != 429 || ra < 60 {
		t.Errorf("after 7 failures: %d, Retry-After %q; want 429 and over a minute for the source", a.status, a.header.Get("Retry-After"))
	}
	// Others are served meanwhile.
	e.browser("203.0.113.22").login("bystander@example.test", goodPassword)
	// The victim, from elsewhere, waits at most a minute (the account
	// alone is capped there), then gets in.
	victim := e.browser("203.0.113.23")
	e.clock.Add(time.Minute)
	victim.login("victim@example.test", goodPassword)
	// The attacker still waits.
	expect(t, guess("guess again"), 429, "too_many_requests")
	if len(e.audit.Find("account.login", audit.ResultDenied)) == 0 {
		t.Error("throttled attempts are not audited")
	}
}

// Sign-up and reset requests are limited per source.
func TestMailRequestsLimitedPerSource(t *testing.T) {
	e := newEnv(t, options{mailSourceBurst: 2})
	b := e.browser("203.0.113.30")
	for i := range 2 {
		expect(t, b.call("POST", "/api/v1/password-reset", map[string]string{"email": "x" + strconv.Itoa(i) + "@example.test"}), 202, "")
	}
	a := b.call("POST", "/api/v1/signup", map[string]string{"email": "y@example.test", "password": goodPassword})
	expect(t, a, 429, "too_many_requests")
	if a.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	expect(t, e.browser("203.0.113.31").call("POST", "/api/v1/password-reset", map[string]string{"email": "z@example.test"}), 202, "")
}

// Oversized, malformed and mistyped bodies get webapi's answers, and the
// server keeps serving.
func TestBadBodies(t *testing.T) {
	e := newEnv(t, options{})
	b := e.signedUp("body@example.test", "203.0.113.40")
	anon := e.browser("203.0.113.41")
	huge := `{"email":"` + strings.Repeat("a", 70<<10) + `@example.test","password":"x"}`
	for _, tc := range []struct {
		name, method, path string
		body               any
		hdr                []string
		status             int
		code               string
	}{
		{"oversized", "POST", "/api/v1/signup", huge, nil, 413, "request_too_large"},
		{"truncated", "POST", "/api/v1/login", `{"email":"a@example.test",`, nil, 400, "invalid_request"},
		{"not an object", "POST", "/api/v1/login", `["a"]`, nil, 400, "invalid_request"},
		{"unknown field", "POST", "/api/v1/login", `{"email":"a@example.test","password":"x","admin":true}`, nil, 400, "invalid_request"},
		{"two values", "POST", "/api/v1/password-reset", `{"email":"a@example.test"}{}`, nil, 400, "invalid_request"},
		{"empty", "POST", "/api/v1/verify-email", "", nil, 400, "invalid_request"},
		{"form type", "POST", "/api/v1/login", `email=a`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"wrong type", "POST", "/api/v1/login", `{"email":1,"password":2}`, nil, 400, "invalid_request"},
		{"bad email", "POST", "/api/v1/signup", map[string]string{"email": "not an address", "password": goodPassword}, nil, 400, "invalid_request"},
		{"named email", "POST", "/api/v1/signup", map[string]string{"email": "Ada <ada@example.test>", "password": goodPassword}, nil, 400, "invalid_request"},
		{"NUL in email", "POST", "/api/v1/login", map[string]string{"email": "a\x00@example.test", "password": "x"}, nil, 400, "invalid_request"},
		{"common password", "POST", "/api/v1/signup", map[string]string{"email": "new@example.test", "password": "password1"}, nil, 400, "invalid_request"},
		{"short password", "POST", "/api/v1/signup", map[string]string{"email": "new@example.test", "password": "abc"}, nil, 400, "invalid_request"},
		{"long name", "POST", "/api/v1/signup", map[string]string{"email": "new@example.test", "password": goodPassword, "display_name": strings.Repeat("n", 201)}, nil, 400, "invalid_request"},
		{"preferences not an object", "PATCH", "/api/v1/account", `{"preferences":[1,2]}`, nil, 400, "invalid_request"},
		{"preferences with NUL", "PATCH", "/api/v1/account", `{"preferences":{"a":"\u0000"}}`, nil, 400, "invalid_request"},
		{"control character in name", "PATCH", "/api/v1/account", `{"display_name":"a\u0007b"}`, nil, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := anon
			if tc.method == "PATCH" {
				c = b
			}
			a := c.call(tc.method, tc.path, tc.body, tc.hdr...)
			expect(t, a, tc.status, tc.code)
			if desc := a.json(t)["error_description"]; desc == "" || desc == nil {
				t.Errorf("no description: %s", a.body)
			}
		})
	}
	expect(t, b.call("GET", "/api/v1/account", nil), 200, "")
}

// SQL metacharacters in every field are data: they are stored and read
// back as sent, and nothing else happens.
func TestSQLMetacharacters(t *testing.T) {
	e := newEnv(t, options{})
	const meta = `'; DROP TABLE users; -- " \ % _ $1 ${x} /* */`
	email := `o'brien+%_x@example.test`
	pw := `pa'ss"word\; DROP--` + " x"
	b := e.browser("203.0.113.50")
	expect(t, b.call("POST", "/api/v1/signup", map[string]string{"email": email, "password": pw, "display_name": meta, "organization": meta}), 202, "")
	tok := e.link(email, "Confirm your email", "/verify-email")
	expect(t, b.call("POST", "/api/v1/verify-email", map[string]string{"token": tok}), 200, "")
	// A LIKE pattern or a quote in the address finds no one else.
	expect(t, b.call("POST", "/api/v1/login", map[string]string{"email": `%@example.test`, "password": pw}), 401, "invalid_credentials")
	e.clock.Add(time.Hour)
	b.login(email, pw)
	a := b.call("PATCH", "/api/v1/account", map[string]any{"preferences": map[string]any{meta: meta, "n": []any{meta, 1.5, nil}}})
	expect(t, a, 200, "")
	v := b.call("GET", "/api/v1/account", nil).json(t)
	if v["email"] != email || v["display_name"] != meta || v["organization"] != meta || v["preferences"].(map[string]any)[meta] != meta {
		t.Errorf("read back %v", v)
	}
	expect(t, b.call("DELETE", "/api/v1/account/sessions/"+url.PathEscape(meta), nil), 404, "not_found")
	expect(t, b.call("POST", "/api/v1/password-reset/confirm", map[string]string{"token": meta, "new_password": meta}), 400, "invalid_token")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var users int
	if err := e.db.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&users); err != nil || users != 1 {
		t.Errorf("users: %d, %v", users, err)
	}
}
