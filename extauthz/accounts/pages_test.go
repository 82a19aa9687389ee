package accounts_test

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/session"
)

var hiddenCSRF = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// csrfOf is the form's CSRF token on a page.
func csrfOf(t *testing.T, a answer) string {
	t.Helper()
	m := hiddenCSRF.FindSubmatch(a.body)
	if m == nil {
		t.Fatalf("no CSRF token in the form: %s", a.body)
	}
	return string(m[1])
}

func TestPagesHeaders(t *testing.T) {
	e := newEnv(t, options{})
	b := e.browser("192.0.2.1")
	for _, path := range []string{"/login", "/login?return_to=%2Foauth2%2Fauthorize%3Fclient_id%3Dhelixctl", "/reset-password", "/verify-email?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		a := b.call("GET", path, nil)
		expect(t, a, 200, "")
		for h, want := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
			"X-Frame-Options":         "DENY",
			"Referrer-Policy":         "same-origin",
			"Content-Type":            "text/html; charset=utf-8",
			"Cache-Control":           "no-store",
		} {
			if got := a.header.Get(h); got != want {
				t.Errorf("%s: %s %q, want %q", path, h, got, want)
			}
		}
		body := string(a.body)
		if strings.Contains(body, "<script") || strings.Contains(body, "style=") || strings.Contains(body, "<style") {
			t.Errorf("%s has a script or inline style", path)
		}
		csrfOf(t, a)
	}
	css := b.call("GET", "/assets/helix.css", nil)
	if css.status != 200 || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") {
		t.Errorf("style sheet: %d %s", css.status, css.header.Get("Content-Type"))
	}
	for _, rt := range []string{"https://evil.example/", "//evil.example/oauth2/authorize?", "/oauth2/token?", "/oauth2/authorize"} {
		expect(t, b.call("GET", "/login?return_to="+url.QueryEscape(rt), nil), 400, "")
	}
}

// The sign-in form: CSRF missing or foreign is refused; a right login
// goes back to the authorize request it came from.
func TestLoginPage(t *testing.T) {
	e := newEnv(t, options{})
	e.signedUp("page@example.test", "192.0.2.10")
	b := e.browser("192.0.2.11")
	returnTo := "/oauth2/authorize?client_id=helixctl&response_type=code"
	page := b.call("GET", "/login?return_to="+url.QueryEscape(returnTo), nil)
	tok := csrfOf(t, page)
	form := url.Values{"email": {"page@example.test"}, "password": {goodPassword}, "return_to": {returnTo}}

	other := e.browser("192.0.2.12")
	foreign := csrfOf(t, other.call("GET", "/login", nil))
	for name, v := range map[string]string{"missing": "", "foreign": foreign} {
		f := url.Values{}
		for k, vs := range form {
			f[k] = vs
		}
		if v != "" {
			f.Set("csrf_token", v)
		}
		if a := b.form("/login", f); a.status != 403 || !strings.Contains(string(a.body), "csrf_failed") {
			t.Errorf("%s CSRF token: %d", name, a.status)
		}
	}
	form.Set("csrf_token", tok)
	if a := b.form("/login", form, "Origin", "https://evil.example"); a.status != 403 {
		t.Errorf("foreign origin: %d", a.status)
	}
	bad := url.Values{"email": {"page@example.test"}, "password": {"wrong password"}, "return_to": {returnTo}, "csrf_token": {tok}}
	if a := b.form("/login", bad); a.status != 401 || !strings.Contains(string(a.body), "wrong") {
		t.Errorf("wrong password: %d %s", a.status, a.body)
	}
	e.clock.Add(3600e9)
	bad.Set("return_to", "https://evil.example/")
	if a := b.form("/login", bad); a.status != 400 {
		t.Errorf("foreign return_to: %d", a.status)
	}
	a := b.form("/login", form)
	if a.status != 303 || a.header.Get("Location") != returnTo {
		t.Fatalf("login: %d to %q", a.status, a.header.Get("Location"))
	}
	if b.cookie(session.CookieName) == "" {
		t.Error("no session cookie after the form's login")
	}
	expect(t, b.call("GET", "/api/v1/account", nil), 200, "")
}

// The verification and reset pages: a GET shows a form and keeps the
// token; the form's POST uses it, once.
func TestLinkPages(t *testing.T) {
	e := newEnv(t, options{})
	b := e.browser("192.0.2.20")
	expect(t, b.call("POST", "/api/v1/signup", map[string]string{"email": "link@example.test", "password": goodPassword}), 202, "")
	tok := e.link("link@example.test", "Confirm your email", "/verify-email")
	for range 3 { // a mail scanner, a preview, the person
		expect(t, b.call("GET", "/verify-email?token="+tok, nil), 200, "")
	}
	page := b.call("GET", "/verify-email?token="+tok, nil)
	if !strings.Contains(string(page.body), `value="`+tok+`"`) {
		t.Fatal("the form does not carry the token")
	}
	f := url.Values{"token": {tok}, "csrf_token": {csrfOf(t, page)}}
	if a := b.form("/verify-email", url.Values{"token": {tok}}); a.status != 403 {
		t.Errorf("verify without CSRF: %d", a.status)
	}
	if a := b.form("/verify-email", f); a.status != 200 || !strings.Contains(string(a.body), "confirmed") {
		t.Fatalf("verify: %d %s", a.status, a.body)
	}
	if a := b.form("/verify-email", f); a.status != 400 {
		t.Errorf("verify again: %d", a.status)
	}

	e.clock.Add(3600e9)
	page = b.call("GET", "/reset-password", nil)
	f = url.Values{"email": {"link@example.test"}, "csrf_token": {csrfOf(t, page)}}
	if a := b.form("/reset-password", f); a.status != 200 || !strings.Contains(string(a.body), "Check your mail") {
		t.Fatalf("reset request: %d %s", a.status, a.body)
	}
	tok = e.link("link@example.test", "Reset your", "/reset-password")
	page = b.call("GET", "/reset-password?token="+tok, nil)
	expect(t, page, 200, "")
	f = url.Values{"token": {tok}, "csrf_token": {csrfOf(t, page)}, "new_password": {"a new passphrase"}, "new_password_again": {"a different one"}}
	if a := b.form("/reset-password", f); a.status != 400 {
		t.Errorf("differing passwords: %d", a.status)
	}
	f.Set("new_password_again", "a new passphrase")
	if a := b.form("/reset-password", f); a.status != 200 || !strings.Contains(string(a.body), "Password changed") {
		t.Fatalf("reset: %d %s", a.status, a.body)
	}
	if a := b.form("/reset-password", f); a.status != 400 {
		t.Errorf("reset again: %d", a.status)
	}
	b.login("link@example.test", "a new passphrase")
}
