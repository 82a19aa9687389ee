package portal

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/accounts"
	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/extauthz/mail"
	"github.com/helixflow/helixflow/extauthz/orgs"
	"github.com/helixflow/helixflow/extauthz/password"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/usage"
	"github.com/helixflow/helixflow/internal/mailtest"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// dataEnv is helix-authz's public API as the server wires it (accounts,
// organizations, the usage reports, the admin API) on a real Postgres,
// and the model catalogue's JSON API over a stand-in for helix-xds, with
// the portal mounted, behind an HTTPS test server.
type dataEnv struct {
	t        *testing.T
	srv      *httptest.Server
	db       *pgxpool.Pool
	st       *store.Store
	sessions *session.Manager
	trail    *audit.Store
	usage    *usage.Store
	portal   *Portal
	catalog  *catalogue
	admin    http.Handler
	tap      *apiTap
	mail     *mailtest.Server // with dataOptions.mail
}

type dataOptions struct {
	noAdmin bool // helix-authz without an admin token
	// mail sends the accounts' mails to a private mailpit (dataEnv.mail)
	// instead of nowhere.
	mail bool
	// config changes the portal's Config before New.
	config func(*Config)
}

// noMail is the accounts' mail sender when a test reads no mail.
type noMail struct{}

func (noMail) Send(context.Context, mail.Message) error { return nil }

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func newDataEnv(t *testing.T, opt dataOptions) *dataEnv {
	t.Helper()
	dsn := pgtest.Migrated(t)
	db := pgtest.Pool(t, dsn)
	st := peopletest.Store(t, dsn)
	trail, privacy := peopletest.Privacy(t, db)
	var mailer mail.Sender = noMail{}
	var mp *mailtest.Server
	if opt.mail {
		mp = mailtest.Start(t, mailtest.Options{})
		smtp, err := mail.NewSMTP(mail.SMTPConfig{Address: mp.SMTP, TLS: mail.TLSNone, From: "helix@example.test"})
		if err != nil {
			t.Fatal(err)
		}
		mailer = smtp
	}
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	sessions, err := session.New(session.Config{DB: db, PublicOrigin: srv.URL, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.New(password.Config{Params: password.Minimum})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := accounts.New(accounts.Config{DB: db, Sessions: sessions, Passwords: hasher, Mail: mailer, Audit: trail,
		Eraser: privacy, Exporter: privacy, PublicURL: srv.URL, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(acc.Wait)
	acc.Mount(mux)
	plans := admin.NewPlans([]string{"free", "pro"}, "free")
	orgsAPI, err := orgs.New(orgs.Config{Store: st, Hasher: secret.NewHasher(nil), Plans: plans, Audit: trail, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	people := func(h http.Handler) http.Handler { return sessions.Middleware(sessions.Require(h)) }
	mux.Handle("/api/v1/orgs", people(orgsAPI))
	mux.Handle("/api/v1/orgs/", people(orgsAPI))
	e := &dataEnv{t: t, srv: srv, db: db, st: st, sessions: sessions, trail: trail, usage: usage.NewStore(db), catalog: &catalogue{},
		tap: &apiTap{next: mux}, mail: mp}
	usage.NewAPI(usage.APIConfig{Store: e.usage, Members: st, Logger: quietLog}).Mount(mux, people)
	catalog.NewHandler(catalog.HandlerConfig{Source: e.catalog, Cookies: sessions, People: catalog.PeopleDB{Pool: db},
		Logger: quietLog}).Mount(mux)
	if !opt.noAdmin {
		if e.admin, err = admin.Handler(admin.Config{Store: st, Hasher: secret.NewHasher(nil), Plans: plans,
			Token: strings.Repeat("t", 40), People: st, Audit: trail, Trail: trail, PersonalData: privacy, Logger: quietLog}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{API: e.tap, Admin: e.admin, Sessions: sessions, PublicOrigin: srv.URL, Logger: quietLog,
		Plans: func() []Plan { return []Plan{{Name: "free", Default: true}, {Name: "pro"}} }}
	if opt.config != nil {
		opt.config(&cfg)
	}
	e.portal, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.portal.Mount(mux)
	return e
}

// apiTap stands between the portal and helix-authz's API (the portal's
// Config.API): it records every in-process sub-request the portal makes,
// and answers those a test overrides in the API's place, to see what the
// portal renders for answers the real API gives rarely (a 5xx, a body
// that is not JSON, an oversized one).
type apiTap struct {
	next  http.Handler
	mu    sync.Mutex
	calls []apiCall
	over  map[string]http.HandlerFunc // by "METHOD /path"
}

// apiCall is one sub-request as the API got it.
type apiCall struct {
	Method, Path string // Path with its query
	Header       http.Header
	Body         string
}

func (a *apiTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	a.mu.Lock()
	a.calls = append(a.calls, apiCall{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: string(body)})
	h := a.over[r.Method+" "+r.URL.Path]
	a.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	a.next.ServeHTTP(w, r)
}

// override answers "METHOD /path" with h until the test ends (nil: the
// real API again).
func (a *apiTap) override(t *testing.T, route string, h http.HandlerFunc) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.over == nil {
		a.over = map[string]http.HandlerFunc{}
	}
	a.over[route] = h
	t.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.over, route)
	})
}

// answer is an override that answers status with body as contentType.
func answer(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// last is the latest sub-request "METHOD /path" (the path without its
// query); it fails the test when there was none.
func (a *apiTap) last(t *testing.T, route string) apiCall {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.calls) - 1; i >= 0; i-- {
		c := a.calls[i]
		if p, _, _ := strings.Cut(c.Path, "?"); c.Method+" "+p == route {
			return c
		}
	}
	t.Fatalf("the portal did not call %s", route)
	return apiCall{}
}

// list is every sub-request so far.
func (a *apiTap) list() []apiCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// count is how many sub-requests "METHOD /path" there were.
func (a *apiTap) count(route string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if p, _, _ := strings.Cut(c.Path, "?"); c.Method+" "+p == route {
			n++
		}
	}
	return n
}

// json decodes the call's body into a map of its fields.
func (c apiCall) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(c.Body), &m); err != nil {
		t.Fatalf("%s %s sent %q: %v", c.Method, c.Path, c.Body, err)
	}
	return m
}

// catalogue stands in for helix-xds's Catalog (the source behind
// extauthz/catalog's real JSON API): the models it lists, or down.
type catalogue struct {
	mu     sync.Mutex
	models []Model
	down   bool
}

func (c *catalogue) set(down bool, models ...Model) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down, c.models = down, models
}

// Models implements catalog.Source: the portal's models, which have the
// JSON API's shape, as the catalogue's.
func (c *catalogue) Models(context.Context) ([]catalog.Model, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, catalog.ErrUnavailable
	}
	b, err := json.Marshal(c.models)
	if err != nil {
		return nil, err
	}
	var out []catalog.Model
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// user adds a verified person (a platform admin when admin) with an
// organization of their own, and returns their id and the org's.
func (e *dataEnv) user(email string, isAdmin bool, orgName string, scopes ...string) (userID, orgID string) {
	e.t.Helper()
	userID = peopletest.AddUser(e.t, e.db, peopletest.User{Email: email, Verified: true, Admin: isAdmin, DisplayName: "Tester"})
	if len(scopes) == 0 {
		scopes = []string{"models:infer"}
	}
	if orgName != "" {
		orgID = peopletest.AddOrg(e.t, e.st, userID, store.Org{Name: orgName, AllowedScopes: scopes})
	}
	return userID, orgID
}

// testPassword is the password of the people person adds.
const testPassword = "a long enough passphrase for tests"

// person adds a verified person with testPassword and no organization.
func (e *dataEnv) person(email string) string {
	e.t.Helper()
	return peopletest.AddUser(e.t, e.db, peopletest.User{Email: email, Verified: true, Password: testPassword})
}

// dataBrowser is one browser: its cookies, signed in as a person or not.
type dataBrowser struct {
	e *dataEnv
	c *http.Client
}

func (e *dataEnv) browser(userID string) *dataBrowser {
	e.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c := *e.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if userID != "" {
		created, err := e.sessions.CreateBrowserSession(context.Background(), userID, "127.0.0.1", "test")
		if err != nil {
			e.t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		e.sessions.SetCookie(rec, created)
		u, _ := url.Parse(e.srv.URL)
		jar.SetCookies(u, rec.Result().Cookies())
	}
	return &dataBrowser{e: e, c: &c}
}

type page struct {
	status int
	header http.Header
	body   string
}

// redirect fails unless p is a 303 to location.
func (p page) redirect(t *testing.T, location string) {
	t.Helper()
	if p.status != http.StatusSeeOther || p.header.Get("Location") != location {
		t.Fatalf("%d to %q, want 303 to %q; body:\n%s", p.status, p.header.Get("Location"), location, p.body)
	}
}

func (b *dataBrowser) get(path string) page {
	b.e.t.Helper()
	return b.do(http.MethodGet, path, nil, "")
}

// post sends form from this site with the browser's portal CSRF token
// (csrf "" in form: the cookie's; set it to send another).
func (b *dataBrowser) post(path string, form url.Values) page {
	b.e.t.Helper()
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf())
	}
	return b.do(http.MethodPost, path, strings.NewReader(form.Encode()), b.e.srv.URL)
}

func (b *dataBrowser) csrf() string {
	b.e.t.Helper()
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == csrfCookie {
			return c.Value
		}
	}
	b.get("/portal/models") // sets it
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == csrfCookie {
			return c.Value
		}
	}
	b.e.t.Fatal("no CSRF cookie")
	return ""
}

func (b *dataBrowser) do(method, path string, body io.Reader, origin string) page {
	b.e.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, b.e.srv.URL+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return b.send(req)
}

// send sends req as it is, with the browser's cookies.
func (b *dataBrowser) send(req *http.Request) page {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

// expect fails unless p has status and contains every want.
func (p page) expect(t *testing.T, status int, want ...string) page {
	t.Helper()
	if p.status != status {
		t.Fatalf("status %d, want %d; body:\n%s", p.status, status, p.body)
	}
	for _, w := range want {
		if !strings.Contains(p.body, w) {
			t.Errorf("the page lacks %q; body:\n%s", w, p.body)
		}
	}
	return p
}

// lacks fails when p contains any of bad.
func (p page) lacks(t *testing.T, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(p.body, b) {
			t.Errorf("the page contains %q", b)
		}
	}
}

// jsonOf re-marshals v (for checks on decoded JSON).
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var _ = time.Second
