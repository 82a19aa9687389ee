package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/helixflow/helixflow/extauthz/mail"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/mailtest"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// browser is a portal visitor on a replica's public port: its cookies
// (set by hand: the test server is plain http and the portal's cookies
// are __Host-/Secure), redirects not followed, the public origin sent on
// POSTs as a browser sends it.
type browser struct {
	t       *testing.T
	base    string
	origin  string
	cookies map[string]string
}

func newBrowser(t *testing.T, r *replica) *browser {
	return &browser{t: t, base: r.public.URL, origin: "http://127.0.0.1", cookies: map[string]string{}}
}

// page is an answer: its status, body, Location and headers.
type page struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	var cs []string
	for k, v := range b.cookies {
		cs = append(cs, k+"="+v)
	}
	if len(cs) > 0 {
		req.Header.Set("Cookie", strings.Join(cs, "; "))
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 || c.Value == "" {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	return page{status: resp.StatusCode, body: string(data), location: resp.Header.Get("Location"), header: resp.Header}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	return b.do(req)
}

// post sends form from the public origin, with the CSRF cookie's token
// in the csrf field unless form has one (a GET first gets the cookie).
func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	if _, ok := b.cookies["__Host-helix_portal_csrf"]; !ok {
		b.get("/portal/")
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.cookies["__Host-helix_portal_csrf"])
	}
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	return b.do(req)
}

// postPastThrottle is post, again while the answer is 429: a wrong
// password throttles the account's password checks for a moment.
func (b *browser) postPastThrottle(path string, form url.Values) page {
	b.t.Helper()
	var p page
	waitFor(b.t, func() bool {
		p = b.post(path, form)
		return p.status != http.StatusTooManyRequests
	})
	return p
}

func (p page) must(t *testing.T, what string, status int, contains ...string) page {
	t.Helper()
	if p.status != status {
		t.Fatalf("%s: status %d, want %d; Location %q; body %.2000s", what, p.status, status, p.location, p.body)
	}
	for _, c := range contains {
		if !strings.Contains(p.body, c) {
			t.Fatalf("%s: the page lacks %q; body %.3000s", what, c, p.body)
		}
	}
	return p
}

func (p page) redirect(t *testing.T, what, to string) {
	t.Helper()
	if p.status != http.StatusSeeOther || p.location != to {
		t.Fatalf("%s: %d to %q, want 303 to %q; body %.1500s", what, p.status, p.location, to, p.body)
	}
}

// portalEnv is a replica with the people's API (mail to a mailpit) and the
// portal, on a fresh database.
type portalEnv struct {
	r   *replica
	dsn string
	mp  *mailtest.Server
}

func newPortalEnv(t *testing.T, opts ...func(*Config)) *portalEnv {
	t.Helper()
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	mp := mailtest.Start(t, mailtest.Options{})
	smtp, err := mail.NewSMTP(mail.SMTPConfig{Address: mp.SMTP, TLS: mail.TLSNone, From: "helix@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]func(*Config){func(c *Config) { c.Mail = smtp; c.PortalDemoModel = "simple" }}, opts...)
	return &portalEnv{r: startReplica(t, dsn, opts...), dsn: dsn, mp: mp}
}

func (e *portalEnv) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pgtest.Pool(t, e.dsn).QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// signedIn is a browser signed in (through the portal) as a new verified
// person.
func (e *portalEnv) signedIn(t *testing.T, email string) *browser {
	t.Helper()
	const pw = "a long enough passphrase for tests"
	peopletest.AddUser(t, pgtest.Pool(t, e.dsn), peopletest.User{Email: email, Verified: true, Password: pw})
	b := newBrowser(t, e.r)
	b.post("/portal/signin", url.Values{"email": {email}, "password": {pw}, "next": {"/portal/profile"}}).
		redirect(t, "sign in", "/portal/profile")
	if b.cookies[session.CookieName] == "" {
		t.Fatal("sign-in set no session cookie")
	}
	return b
}

const hostile = `<script>alert(1)</script>'; DROP TABLE users;--`

// TestPortalHome: the home page lists the gateway's plans, offers the
// demo, is served with the strict CSP, and its script is served.
func TestPortalHome(t *testing.T) {
	e := newPortalEnv(t)
	b := newBrowser(t, e.r)
	if p := b.get("/"); p.status != http.StatusFound || p.location != "/portal/" {
		t.Errorf("the root: %d to %q", p.status, p.location)
	}
	p := b.get("/portal/").must(t, "home", http.StatusOK, "<h1 id=\"home-title\">HelixFlow</h1>", ">free", "default</span>", ">gold",
		"<td>100</td>", `data-infer="/v2/models/simple/infer"`, "assets/home.js", "Create an account")
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(p.body, "style=") || strings.Contains(p.body, "<script>") || strings.Contains(p.body, " on") && strings.Contains(p.body, "onclick") {
		t.Error("the home page has inline script or style")
	}
	b.get("/portal/assets/home.js").must(t, "home.js", http.StatusOK, "demo/token")
}

// TestPortalSignupVerifySignin: sign-up, the mailed link, verification and
// sign-in through the portal's forms, without script; refused forms say
// why and change nothing.
func TestPortalSignupVerifySignin(t *testing.T) {
	e := newPortalEnv(t)
	b := newBrowser(t, e.r)
	b.get("/portal/signup").must(t, "sign-up page", http.StatusOK, `<label for="email">`, `autocomplete="new-password"`)

	const email, pw = "new@example.test", "correct horse battery staple"
	users := func() int { return e.count(t, "SELECT count(*) FROM users") }
	for _, c := range []struct {
		name string
		form url.Values
		want int
		msg  string
	}{
		{"missing email", url.Values{"password": {pw}, "password_confirm": {pw}}, http.StatusBadRequest, "Enter an email address and a password."},
		{"passwords differ", url.Values{"email": {email}, "password": {pw}, "password_confirm": {pw + "x"}}, http.StatusBadRequest, "The two passwords differ"},
		{"hostile email", url.Values{"email": {hostile}, "password": {pw}, "password_confirm": {pw}}, http.StatusBadRequest, "mail"},
		{"oversized name", url.Values{"email": {email}, "password": {pw}, "password_confirm": {pw}, "display_name": {strings.Repeat("n", 201)}}, http.StatusBadRequest, "Display_name"},
		{"short password", url.Values{"email": {email}, "password": {"short"}, "password_confirm": {"short"}}, http.StatusBadRequest, "assword"},
	} {
		p := b.post("/portal/signup", c.form).must(t, c.name, c.want, c.msg, `role="alert"`)
		if strings.Contains(p.body, "<script>alert") {
			t.Errorf("%s: the page shows the value unescaped", c.name)
		}
		if strings.Contains(p.body, pw) {
			t.Errorf("%s: the page shows the password", c.name)
		}
	}
	if n := users(); n != 0 {
		t.Fatalf("refused sign-ups made %d users", n)
	}

	b.post("/portal/signup", url.Values{"email": {email}, "password": {pw}, "password_confirm": {pw}, "display_name": {hostile}}).
		redirect(t, "sign up", "/portal/signin?done=signup")
	b.get("/portal/signin?done=signup").must(t, "after sign-up", http.StatusOK, "Check your inbox", `role="status"`)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := e.mp.API.WaitFor(ctx, email, "Confirm your email")
	if err != nil {
		t.Fatal(err)
	}
	link, err := url.Parse(mailtest.Link(m, "/verify-email"))
	if err != nil || link.Query().Get("token") == "" {
		t.Fatalf("verification link %q: %v", mailtest.Link(m, "/verify-email"), err)
	}
	tok := link.Query().Get("token")
	// Not verified yet: sign-in says so.
	b.post("/portal/signin", url.Values{"email": {email}, "password": {pw}}).must(t, "unverified sign-in", http.StatusForbidden, "not verified yet")
	b.get("/portal/verify?token="+url.QueryEscape(tok)).must(t, "verify page", http.StatusOK, "Verify my address")
	b.post("/portal/verify", url.Values{"token": {"not-a-token"}}).must(t, "bad token", http.StatusBadRequest, `role="alert"`)
	b.post("/portal/verify", url.Values{"token": {tok}}).redirect(t, "verify", "/portal/signin?done=verified")

	b.post("/portal/signin", url.Values{"email": {email}, "password": {"wrong password here"}}).must(t, "wrong password", http.StatusUnauthorized, `role="alert"`)
	b.post("/portal/signin", url.Values{"email": {hostile}, "password": {hostile}}).must(t, "hostile sign-in", http.StatusBadRequest, "Email is not an email address")
	b.postPastThrottle("/portal/signin", url.Values{"email": {email}, "password": {pw}, "next": {"https://evil.example/portal/"}}).
		redirect(t, "sign in with a foreign next", "/portal/")
	p := b.get("/portal/profile").must(t, "profile", http.StatusOK, email, "&lt;script&gt;")
	if strings.Contains(p.body, "<script>alert") {
		t.Error("the profile shows the display name unescaped")
	}
	// Signed in, the sign-in page goes on.
	b.get("/portal/signin?next=/portal/sessions").redirect(t, "sign-in page when signed in", "/portal/sessions")

	b.post("/portal/signout", url.Values{}).redirect(t, "sign out", "/portal/?done=signed-out")
	b.get("/portal/profile").redirect(t, "profile after sign-out", "/portal/signin?next=%2Fportal%2Fprofile")
}

func TestPortalSafeNext(t *testing.T) {
	e := newPortalEnv(t)
	for next, want := range map[string]string{
		"/portal/usage?org=x":          "/portal/usage?org=x",
		"//evil.example/portal/":       "/portal/",
		"https://evil.example/portal/": "/portal/",
		"/\\evil.example":              "/portal/",
		"/api/v1/account":              "/portal/",
		"/portal/../api/v1/account":    "/portal/",
		"javascript:alert(1)":          "/portal/",
		"":                             "/portal/",
	} {
		b := newBrowser(t, e.r)
		p := b.get("/portal/signin?next="+url.QueryEscape(next)).must(t, "sign-in page", http.StatusOK)
		if !strings.Contains(p.body, `name="next" value="`+strings.ReplaceAll(want, "&", "&amp;")+`"`) {
			t.Errorf("next %q: the form goes on to something else than %q", next, want)
		}
	}
}

// TestPortalCSRF: a POST without the CSRF field, with another token, from
// another origin, or with no origin at all is refused and changes nothing.
func TestPortalCSRF(t *testing.T) {
	e := newPortalEnv(t)
	b := e.signedIn(t, "csrf@example.test")
	form := func() url.Values { return url.Values{"display_name": {"Changed"}, "organization": {""}} }

	b.post("/portal/profile", url.Values{"display_name": {"Changed"}, "csrf": {""}}).must(t, "no token", http.StatusForbidden, "expired")
	b.post("/portal/profile", url.Values{"display_name": {"Changed"}, "csrf": {strings.Repeat("A", 43)}}).must(t, "another token", http.StatusForbidden)
	b.origin = "https://evil.example"
	b.post("/portal/profile", form()).must(t, "another origin", http.StatusForbidden, "not sent from this site")
	b.origin = ""
	b.post("/portal/profile", form()).must(t, "no origin nor referer", http.StatusForbidden)
	if n := e.count(t, "SELECT count(*) FROM users WHERE display_name = 'Changed'"); n != 0 {
		t.Fatal("a refused form changed the profile")
	}
	b.origin = "http://127.0.0.1"
	b.post("/portal/profile", form()).redirect(t, "the same form from the portal", "/portal/profile?done=profile-saved")
	// The demo token needs the CSRF field too.
	anon := newBrowser(t, e.r)
	anon.post("/portal/demo/token", url.Values{"csrf": {"x"}}).must(t, "demo token without CSRF", http.StatusForbidden)
}

// TestPortalProfileAndSessions: the profile's forms, the export, the
// sessions page and account deletion.
func TestPortalProfileAndSessions(t *testing.T) {
	e := newPortalEnv(t)
	const email, pw = "me@example.test", "a long enough passphrase for tests"
	b := e.signedIn(t, email)
	b.get("/portal/profile").must(t, "profile", http.StatusOK, "<h1>Your profile</h1>", `<label for="display_name">`, "Download everything")

	b.post("/portal/profile", url.Values{"display_name": {"Ada"}, "organization": {"Engines"}}).redirect(t, "save", "/portal/profile?done=profile-saved")
	b.get("/portal/profile?done=profile-saved").must(t, "saved", http.StatusOK, "Your profile is saved.", `value="Ada"`, `value="Engines"`)
	p := b.post("/portal/profile", url.Values{"display_name": {strings.Repeat("x", 201)}, "organization": {hostile}}).
		must(t, "oversized name", http.StatusBadRequest, "Display_name", `role="alert"`)
	if strings.Contains(p.body, "<script>alert") {
		t.Error("a refused value is shown unescaped")
	}
	if n := e.count(t, "SELECT count(*) FROM users WHERE display_name = 'Ada' AND organization = 'Engines'"); n != 1 {
		t.Fatal("a refused profile change changed something")
	}

	b.post("/portal/profile/email", url.Values{"new_email": {hostile}, "password": {pw}}).must(t, "hostile new address", http.StatusBadRequest, `role="alert"`)
	b.post("/portal/profile/email", url.Values{"new_email": {"me2@example.test"}, "password": {pw}}).redirect(t, "email change", "/portal/profile?done=email-sent")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.mp.API.WaitFor(ctx, "me2@example.test", "Confirm your new email"); err != nil {
		t.Fatal(err)
	}

	b.post("/portal/profile/password", url.Values{"current_password": {"wrong one, surely"}, "new_password": {"another long passphrase"}, "new_password_confirm": {"another long passphrase"}}).
		must(t, "wrong current password", http.StatusUnauthorized, `role="alert"`)
	b.post("/portal/profile/password", url.Values{"current_password": {pw}, "new_password": {"another long passphrase"}, "new_password_confirm": {"different"}}).
		must(t, "new passwords differ", http.StatusBadRequest, "differ")

	exp := b.get("/portal/profile/export").must(t, "export", http.StatusOK, email)
	if !strings.Contains(exp.header.Get("Content-Disposition"), "attachment") || !json.Valid([]byte(exp.body)) {
		t.Errorf("export: %q %.200s", exp.header.Get("Content-Disposition"), exp.body)
	}

	// A second browser: the first ends it on the sessions page.
	other := newBrowser(t, e.r)
	other.postPastThrottle("/portal/signin", url.Values{"email": {email}, "password": {pw}}).redirect(t, "second sign-in", "/portal/")
	sp := b.get("/portal/sessions").must(t, "sessions", http.StatusOK, "this one", "Sign out")
	var otherID string
	if err := pgtest.Pool(t, e.dsn).QueryRow(context.Background(),
		"SELECT id::text FROM sessions ORDER BY created_at DESC LIMIT 1").Scan(&otherID); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sp.body, otherID) {
		t.Fatalf("the sessions page lacks the second session %s", otherID)
	}
	b.post("/portal/sessions/end", url.Values{"id": {"not-a-session"}}).must(t, "bad session id", http.StatusNotFound, `role="alert"`)
	b.post("/portal/sessions/end", url.Values{"id": {otherID}}).redirect(t, "end the other session", "/portal/sessions?done=session-ended")
	other.get("/portal/profile").redirect(t, "the ended session", "/portal/signin?next=%2Fportal%2Fprofile")

	b.post("/portal/profile/delete", url.Values{"password": {pw}}).must(t, "delete without the box", http.StatusBadRequest, "tick the box")
	b.post("/portal/profile/delete", url.Values{"password": {"wrong one, surely"}, "confirm": {"yes"}}).must(t, "delete with a wrong password", http.StatusUnauthorized)
	if n := e.count(t, "SELECT count(*) FROM users WHERE email = $1", email); n != 1 {
		t.Fatal("a refused deletion deleted")
	}
	b.postPastThrottle("/portal/profile/delete", url.Values{"password": {pw}, "confirm": {"yes"}}).redirect(t, "delete", "/portal/?done=deleted")
	if n := e.count(t, "SELECT count(*) FROM users WHERE email = $1", email); n != 0 {
		t.Fatal("the account is still there")
	}
	b.get("/portal/profile").redirect(t, "profile after deletion", "/portal/signin?next=%2Fportal%2Fprofile")
}

// TestPortalCredentials: an organization, a client and an API key made on
// the credentials page work at Check; secrets are shown once; policy
// refusals say why; rotate and revoke work.
func TestPortalCredentials(t *testing.T) {
	e := newPortalEnv(t)
	b := e.signedIn(t, "dev@example.test")
	b.get("/portal/credentials").must(t, "no organization", http.StatusOK, "you are not a member of one yet", "Create organization")
	b.post("/portal/credentials/clients", url.Values{"name": {"x"}, "scopes": {"models:infer"}}).must(t, "client without an organization", http.StatusBadRequest, "create one first")
	b.post("/portal/credentials/org", url.Values{"name": {""}}).must(t, "org without a name", http.StatusBadRequest, "Enter a name")
	p := b.post("/portal/credentials/org", url.Values{"name": {"Acme"}})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/portal/credentials?") {
		t.Fatalf("create org: %d %q", p.status, p.location)
	}
	var orgID string
	if err := pgtest.Pool(t, e.dsn).QueryRow(context.Background(), "SELECT id::text FROM organizations").Scan(&orgID); err != nil {
		t.Fatal(err)
	}
	q := "?org=" + orgID
	b.get("/portal/credentials"+q).must(t, "credentials", http.StatusOK, "Acme", "No clients yet", `name="scopes"`, "Create client")
	clients := func() int { return e.count(t, "SELECT count(*) FROM clients WHERE org_id IS NOT NULL") }

	for _, c := range []struct {
		name string
		form url.Values
		want int
		msg  string
	}{
		{"no name", url.Values{"scopes": {"models:infer"}}, http.StatusBadRequest, "Enter a name"},
		{"no scope", url.Values{"name": {"app"}}, http.StatusBadRequest, "at least one scope"},
		{"plan outside the policy", url.Values{"name": {"app"}, "scopes": {"models:infer"}, "plan": {"gold"}}, http.StatusForbidden, "outside the organization"},
		{"scope outside the policy", url.Values{"name": {"app"}, "scopes": {"helix:admin"}}, http.StatusForbidden, "outside the organization"},
		{"unknown scope", url.Values{"name": {"app"}, "scopes": {hostile}}, http.StatusBadRequest, "is not a scope"},
		{"hostile model", url.Values{"name": {"app"}, "scopes": {"models:infer"}, "models": {hostile}}, http.StatusBadRequest, `role="alert"`},
	} {
		p := b.post("/portal/credentials/clients"+q, c.form).must(t, c.name, c.want, c.msg)
		if strings.Contains(p.body, "<script>alert") {
			t.Errorf("%s: a value is shown unescaped", c.name)
		}
	}
	if n := clients(); n != 0 {
		t.Fatalf("refused forms made %d clients", n)
	}

	p = b.post("/portal/credentials/clients"+q, url.Values{"name": {"app " + hostile}, "scopes": {"models:infer"}, "models": {"simple, mlp"}}).
		must(t, "create client", http.StatusCreated, "Client secret", "shown only this once", `data-copy="#secret-value"`, "&lt;script&gt;")
	secret := between(p.body, `<code id="secret-value" class="secret">`, "</code>")
	var clientID string
	if err := pgtest.Pool(t, e.dsn).QueryRow(context.Background(), "SELECT id FROM clients WHERE org_id IS NOT NULL").Scan(&clientID); err != nil {
		t.Fatal(err)
	}
	if secret == "" {
		t.Fatal("no secret shown")
	}
	if tok, code := e.r.token(t, clientCreds{ClientID: clientID, ClientSecret: secret}, ""); code != http.StatusOK || tok == "" {
		t.Fatalf("the shown secret gets no token: %d", code)
	}
	if again := b.get("/portal/credentials" + q); strings.Contains(again.body, secret) {
		t.Fatal("the secret is shown again")
	}

	b.post("/portal/credentials/keys"+q, url.Values{"client_id": {clientID}}).must(t, "key without a name", http.StatusBadRequest, "Enter a name")
	b.post("/portal/credentials/keys"+q, url.Values{"client_id": {clientID}, "name": {"ci"}, "expires_in": {"forever"}}).must(t, "bad lifetime", http.StatusBadRequest, `role="alert"`)
	p = b.post("/portal/credentials/keys"+q, url.Values{"client_id": {clientID}, "name": {"ci"}, "expires_in": {"720h"}}).
		must(t, "create key", http.StatusCreated, "API key", "shown only this once")
	key := between(p.body, `<code id="secret-value" class="secret">`, "</code>")
	if code, _ := checkCode(t, e.r, inferCheck(t, key, "simple")); code != codes.OK {
		t.Fatalf("the new key at Check: %v", code)
	}
	var keyID string
	if err := pgtest.Pool(t, e.dsn).QueryRow(context.Background(), "SELECT id FROM api_keys").Scan(&keyID); err != nil {
		t.Fatal(err)
	}
	p = b.post("/portal/credentials/keys/rotate"+q, url.Values{"id": {keyID}}).must(t, "rotate key", http.StatusCreated, "is rotated")
	if next := between(p.body, `<code id="secret-value" class="secret">`, "</code>"); next == "" || next == key {
		t.Fatal("rotation showed no new key")
	}
	b.post("/portal/credentials/keys/revoke"+q, url.Values{"id": {keyID}}).redirect(t, "revoke", "/portal/credentials?done=key-revoked&org="+orgID)
	waitFor(t, func() bool {
		code, _ := checkCode(t, e.r, inferCheck(t, key, "simple"))
		return code == codes.Unauthenticated
	})
	b.post("/portal/credentials/keys/revoke"+q, url.Values{"id": {""}}).must(t, "revoke nothing", http.StatusBadRequest, "Choose")

	p = b.post("/portal/credentials/clients/rotate"+q, url.Values{"id": {clientID}}).must(t, "rotate secret", http.StatusOK, "new secret")
	if s2 := between(p.body, `<code id="secret-value" class="secret">`, "</code>"); s2 == "" || s2 == secret {
		t.Fatal("rotation showed no new secret")
	}
	if _, code := e.r.token(t, clientCreds{ClientID: clientID, ClientSecret: secret}, ""); code == http.StatusOK {
		t.Fatal("the old secret still works")
	}
	b.post("/portal/credentials/clients/delete"+q, url.Values{"id": {"someone-elses"}}).must(t, "delete an unknown client", http.StatusNotFound)
	b.post("/portal/credentials/clients/delete"+q, url.Values{"id": {clientID}}).redirect(t, "delete client", "/portal/credentials?done=client-deleted&org="+orgID)
	if n := clients(); n != 0 {
		t.Fatal("the client is still there")
	}
}

func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, to)
	return v
}

// TestPortalDemo: the demo token passes Check for the demo model only,
// stops with its client disabled, and without --portal-demo-model there
// is no demo.
func TestPortalDemo(t *testing.T) {
	e := newPortalEnv(t)
	b := newBrowser(t, e.r)
	p := b.post("/portal/demo/token", url.Values{}).must(t, "demo token", http.StatusOK)
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		Model       string `json:"model"`
	}
	if err := json.Unmarshal([]byte(p.body), &tok); err != nil || tok.AccessToken == "" || tok.ExpiresIn != 300 || tok.Model != "simple" {
		t.Fatalf("demo token answer %s: %v", p.body, err)
	}
	if code, _ := checkCode(t, e.r, inferCheck(t, tok.AccessToken, "simple")); code != codes.OK {
		t.Fatalf("the demo token for the demo model: %v", code)
	}
	if code, _ := checkCode(t, e.r, inferCheck(t, tok.AccessToken, "mlp")); code != codes.PermissionDenied {
		t.Fatalf("the demo token for another model: %v", code)
	}
	// The token endpoint never gives the demo client a token.
	if _, code := e.r.token(t, clientCreds{ClientID: DemoClientID}, ""); code == http.StatusOK {
		t.Fatal("the token endpoint gave the demo client a token")
	}
	// An admin disables the demo client: no more tokens.
	if code := e.r.adminCall(t, http.MethodPatch, "/admin/v1/clients/"+DemoClientID, map[string]any{"enabled": false}, nil); code != http.StatusOK {
		t.Fatalf("disable the demo client: %d", code)
	}
	waitFor(t, func() bool { return b.post("/portal/demo/token", url.Values{}).status == http.StatusServiceUnavailable })

	off := newPortalEnv(t, func(c *Config) { c.PortalDemoModel = "" })
	ob := newBrowser(t, off.r)
	if p := ob.get("/portal/").must(t, "home without demo", http.StatusOK); strings.Contains(p.body, "home.js") {
		t.Error("the home page offers a demo that is off")
	}
	ob.post("/portal/demo/token", url.Values{}).must(t, "demo token when off", http.StatusNotFound)
}
