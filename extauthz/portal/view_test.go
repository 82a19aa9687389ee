package portal

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// TestPageOriginAndCSRF: a POST runs only from this site (Origin, else
// Referer) with the CSRF field equal to the cookie; a refused one changes
// nothing (the API is not called, the session lives on).
func TestPageOriginAndCSRF(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	uid := e.person("csrf@example.test")
	b := e.browser(uid)
	tok := b.csrf()
	post := func(b *dataBrowser, origin, referer, body string) page {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/portal/signout", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if referer != "" {
			req.Header.Set("Referer", referer)
		}
		return b.send(req)
	}
	const (
		notHere = "This form was not sent from this site. Reload the page and try again."
		expired = "This form has expired or was not sent from this site. Reload the page and try again."
	)
	for _, tc := range []struct {
		name, origin, referer, body string
		status                      int
		msg                         string
	}{
		{"another site's Origin", "https://evil.example", "", "csrf=" + tok, http.StatusForbidden, notHere},
		{"this site's Referer, another's Origin", "https://evil.example", e.srv.URL + "/portal/", "csrf=" + tok, http.StatusForbidden, notHere},
		{"no Origin, another site's Referer", "", "https://evil.example/portal/", "csrf=" + tok, http.StatusForbidden, notHere},
		{"no Origin, a relative Referer", "", "/portal/", "csrf=" + tok, http.StatusForbidden, notHere},
		{"no Origin, no Referer", "", "", "csrf=" + tok, http.StatusForbidden, notHere},
		{"a form that cannot be read", e.srv.URL, "", "csrf=%zz", http.StatusBadRequest, "The form could not be read: "},
		{"no CSRF field", e.srv.URL, "", "other=1", http.StatusForbidden, expired},
		{"a wrong CSRF field", e.srv.URL, "", "csrf=" + strings.Repeat("A", 43), http.StatusForbidden, expired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := post(b, tc.origin, tc.referer, tc.body)
			p.expect(t, tc.status, `role="alert">`+tc.msg)
			if p.header.Get("Content-Security-Policy") != ContentSecurityPolicy || p.header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("a refusal without the security headers: %v", p.header)
			}
		})
	}
	// A browser without the CSRF cookie gets one, and the form fails.
	fresh := e.browser("")
	p := post(fresh, e.srv.URL, "", "csrf="+tok)
	p.expect(t, http.StatusForbidden, expired)
	if !strings.Contains(strings.Join(p.header.Values("Set-Cookie"), "\n"), csrfCookie+"=") {
		t.Errorf("no CSRF cookie set: %v", p.header.Values("Set-Cookie"))
	}
	if n := e.tap.count("POST /api/v1/logout"); n != 0 {
		t.Fatalf("a refused form reached the API (%d sign-outs)", n)
	}
	b.get("/portal/profile").expect(t, http.StatusOK, "csrf@example.test")

	// Accepted: the origin in another case, or this site's Referer alone.
	anon := e.browser("")
	anonTok := anon.csrf()
	post(anon, strings.ToUpper(e.srv.URL), "", "csrf="+anonTok).redirect(t, "/portal/?done=signed-out")
	post(anon, "", e.srv.URL+"/portal/profile", "csrf="+anonTok).redirect(t, "/portal/?done=signed-out")
}

// TestCSRFCookie: a GET sets the double-submit cookie (Secure, HttpOnly,
// SameSite=Strict) once, puts it in the page's forms, and replaces a
// malformed one.
func TestCSRFCookie(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	b := e.browser("")
	p := b.get("/portal/signin")
	set := strings.Join(p.header.Values("Set-Cookie"), "\n")
	for _, want := range []string{csrfCookie + "=", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(set, want) {
			t.Fatalf("Set-Cookie %q lacks %s", set, want)
		}
	}
	tok := b.csrf()
	p.expect(t, http.StatusOK, `name="csrf" value="`+tok+`"`)
	if again := b.get("/portal/signin"); len(again.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("a browser with the cookie got another: %v", again.header.Values("Set-Cookie"))
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/portal/signin", nil)
	req.Header.Set("Cookie", csrfCookie+"=too-short")
	if p := e.browser("").send(req); !strings.Contains(strings.Join(p.header.Values("Set-Cookie"), "\n"), csrfCookie+"=") ||
		strings.Contains(p.body, `value="too-short"`) {
		t.Fatalf("a malformed CSRF cookie was kept: %v", p.header.Values("Set-Cookie"))
	}
}

// TestPageSessionsDown: when sessions cannot be resolved, a page says so
// (503) rather than treating the person as signed out.
func TestPageSessionsDown(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	pool := pgtest.Pool(t, e.db.Config().ConnString())
	broken, err := session.New(session.Config{DB: pool, PublicOrigin: e.srv.URL, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	p, err := New(Config{API: e.tap, Sessions: broken, PublicOrigin: e.srv.URL, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Mount(mux)
	secret, err := session.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, e.srv.URL+"/portal/credentials", nil)
	req.AddCookie(&http.Cookie{Name: session.CookieName, Value: secret})
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Sessions cannot be checked right now; try again shortly.") {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
}

// TestPageAPIAnswers: what a page shows when the API behind the signed-in
// person's account or organizations answers an error, a body that is not
// JSON, or too much.
func TestPageAPIAnswers(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	uid, _ := e.user("answers@example.test", false, "Acme")
	b := e.browser(uid)
	const ours = "Something went wrong on our side; try again shortly."
	for _, tc := range []struct {
		name, route string
		h           http.HandlerFunc
		status      int
		msg         string
	}{
		{"an error that is not JSON", "GET /api/v1/account", answer(http.StatusBadGateway, "text/plain", "  the upstream broke\n"),
			http.StatusBadGateway, `role="alert">the upstream broke</p>`},
		{"an error without a body", "GET /api/v1/account", answer(http.StatusInternalServerError, "", ""),
			http.StatusInternalServerError, `role="alert">Internal Server Error</p>`},
		{"a JSON error without a code", "GET /api/v1/orgs", answer(http.StatusForbidden, "application/json", `{"error_description":"x"}`),
			http.StatusForbidden, `{&#34;error_description&#34;:&#34;x&#34;}`},
		{"a JSON error", "GET /api/v1/orgs", answer(http.StatusForbidden, "application/json",
			`{"error":"forbidden","error_description":"no organizations for you"}`), http.StatusForbidden, "no organizations for you"},
		{"the first status written counts", "GET /api/v1/account", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusTeapot)
			w.WriteHeader(http.StatusOK)
		}, http.StatusTeapot, `role="alert">I&#39;m a teapot</p>`},
		{"a success that is not JSON", "GET /api/v1/account", answer(http.StatusOK, "application/json", "<html>"),
			http.StatusInternalServerError, ours},
		{"an answer over the bound", "GET /api/v1/orgs", func(w http.ResponseWriter, _ *http.Request) {
			chunk := []byte(`{"orgs":[` + strings.Repeat(" ", 1<<20))
			for range maxAnswerBytes>>20 + 1 {
				_, _ = w.Write(chunk)
			}
		}, http.StatusInternalServerError, ours},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.tap.override(t, tc.route, tc.h)
			b.get("/portal/profile").expect(t, tc.status, tc.msg).lacks(t, "answers@example.test")
		})
	}
	b.get("/portal/profile").expect(t, http.StatusOK, "answers@example.test")
}

// TestAPISubRequest: the sub-request carries the browser's cookies, user
// agent and forwarding header, the public Origin, JSON headers, and for a
// signed-in person the session's CSRF token; an anonymous one has none.
func TestAPISubRequest(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	uid := e.person("sub@example.test")
	b := e.browser(uid)
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/portal/profile", nil)
	req.Header.Set("User-Agent", "PortalTest/1.0")
	req.Header.Set("X-Forwarded-For", "198.51.100.9")
	b.send(req).expect(t, http.StatusOK)
	got := e.tap.last(t, "GET /api/v1/account").Header
	for h, want := range map[string]string{"Origin": e.srv.URL, "Accept": "application/json", "User-Agent": "PortalTest/1.0",
		"X-Forwarded-For": "198.51.100.9", "Content-Type": ""} {
		if got.Get(h) != want {
			t.Errorf("%s: %q, want %q", h, got.Get(h), want)
		}
	}
	if !strings.Contains(got.Get("Cookie"), session.CookieName+"=") || got.Get(session.CSRFHeader) == "" {
		t.Errorf("the session's cookie or CSRF token is missing: %v", got)
	}
	b.post("/portal/profile", url.Values{"display_name": {"Sub"}}).redirect(t, "/portal/profile?done=profile-saved")
	if h := e.tap.last(t, "PATCH /api/v1/account").Header; h.Get("Content-Type") != "application/json" || h.Get(session.CSRFHeader) == "" {
		t.Errorf("a change was sent with %v", h)
	}
	e.browser("").post("/portal/reset", url.Values{"email": {"sub@example.test"}}).redirect(t, "/portal/reset?done=reset-sent")
	if h := e.tap.last(t, "POST /api/v1/password-reset").Header; h.Get(session.CSRFHeader) != "" || h.Get("Cookie") == "" {
		t.Errorf("an anonymous call was sent with %v", h)
	}
}

// TestAPIUnsendable: a call that cannot be made fails before the API.
func TestAPIUnsendable(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	r := httptest.NewRequest(http.MethodGet, "/portal/", nil)
	if err := e.portal.api(nil, r, nil, http.MethodPost, "/api/v1/orgs", map[string]any{"bad": make(chan int)}, nil); err == nil ||
		!strings.Contains(err.Error(), "encode POST /api/v1/orgs") {
		t.Errorf("an unencodable body: %v", err)
	}
	if err := e.portal.api(nil, r, nil, "BAD METHOD", "/api/v1/orgs", nil, nil); err == nil {
		t.Error("a bad method was sent")
	}
	if calls := e.tap.list(); len(calls) != 0 {
		t.Fatalf("the API was called: %+v", calls)
	}
	var apiErr *APIError
	err := error(&APIError{Status: http.StatusNotFound, Code: "not_found", Description: "no such organization"})
	if !errors.As(err, &apiErr) || err.Error() != "API answered 404 not_found: no such organization" {
		t.Fatalf("APIError: %v", err)
	}
}

// TestRenderUnknownPage: a handler naming a page that does not exist
// answers 500, not an empty page.
func TestRenderUnknownPage(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	rec := httptest.NewRecorder()
	e.portal.render(rec, http.StatusOK, "no-such-page", &View{})
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "page not found") {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
	v := &View{principal: session.Principal{UserID: "u-1"}}
	if v.Principal().UserID != "u-1" || v.OrgQuery() != "" {
		t.Fatalf("View %+v", v)
	}
}

// TestNewAndAssets: New's required fields; the site root goes to the
// portal; assets are cached briefly and never listed.
func TestNewAndAssets(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	for name, cfg := range map[string]Config{
		"no API":      {Sessions: e.sessions, PublicOrigin: e.srv.URL},
		"no sessions": {API: e.tap, PublicOrigin: e.srv.URL},
		"no origin":   {API: e.tap, Sessions: e.sessions},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if p, err := New(Config{API: e.tap, Sessions: e.sessions, PublicOrigin: e.srv.URL}); err != nil || p.log == nil {
		t.Fatalf("no logger: %v", err)
	}
	b := e.browser("")
	if p := b.get("/"); p.status != http.StatusFound || p.header.Get("Location") != "/portal/" {
		t.Fatalf("/: %d %q", p.status, p.header.Get("Location"))
	}
	js := b.get("/portal/assets/home.js")
	js.expect(t, http.StatusOK)
	if js.header.Get("Cache-Control") != "public, max-age=300" || js.header.Get("Content-Security-Policy") != ContentSecurityPolicy {
		t.Fatalf("asset headers %v", js.header)
	}
	b.get("/portal/assets/").expect(t, http.StatusNotFound)
	if ct := js.header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Errorf("home.js Content-Type %q", ct)
	}
	for _, missing := range []string{"/portal/assets/nope.js", "/portal/assets/x.html", "/portal/assets/sub/x.css"} {
		b.get(missing).expect(t, http.StatusNotFound)
	}
	// Whole files only: a Range header is not parsed (GO-2026-6609).
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/portal/assets/portal.css", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=0-1,2-3,4-5")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Errorf("ranged asset request: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
