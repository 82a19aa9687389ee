package accounts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/accounts"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/mail"
	"github.com/helixflow/helixflow/extauthz/password"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/mailtest"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/sourcelimit"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is the throttles' clock, moved by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is helix-authz's accounts on a real Postgres and a real mailpit,
// behind an HTTPS test server.
type env struct {
	t        *testing.T
	srv      *httptest.Server
	svc      *accounts.Service
	sessions *session.Manager
	db       *pgxpool.Pool
	mailpit  *mailtest.Server
	audit    *peopletest.Recorder
	clock    *clock
	gdpr     *fakeGDPR
}

type options struct {
	mailSourceBurst int
	password        password.Params // zero: the minimum
}

func newEnv(t *testing.T, opt options) *env {
	t.Helper()
	db := pgtest.Pool(t, pgtest.Migrated(t))

	mp := mailtest.Start(t, mailtest.Options{})
	smtp, err := mail.NewSMTP(mail.SMTPConfig{Address: mp.SMTP, TLS: mail.TLSNone, From: "helixflow@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	queue, err := mail.NewQueue(mail.QueueConfig{Sender: smtp})
	if err != nil {
		t.Fatal(err)
	}
	qctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { queue.Run(qctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })

	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	sessions, err := session.New(session.Config{DB: db, PublicOrigin: srv.URL, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.New(password.Config{Params: opt.password})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, db: db, mailpit: mp, audit: &peopletest.Recorder{}, sessions: sessions,
		clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, gdpr: &fakeGDPR{}}
	burst := opt.mailSourceBurst
	if burst == 0 {
		burst = 1000
	}
	e.svc, err = accounts.New(accounts.Config{
		DB: db, Sessions: sessions, Passwords: hasher, Mail: queue, Audit: e.audit,
		Eraser: e.gdpr, Exporter: e.gdpr,
		// Loopback is the trusted proxy: X-Forwarded-For names each
		// test caller's address.
		Sources:   sourcelimit.Sources{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		PublicURL: srv.URL, MailSourceRate: 0.1, MailSourceBurst: burst,
		Now: e.clock.Now, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.svc.Wait)
	e.svc.Mount(mux)
	return e
}

type fakeGDPR struct {
	mu     sync.Mutex
	erased []string
	by     []audit.Event
}

func (f *fakeGDPR) Erase(_ context.Context, userID string, by audit.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.erased = append(f.erased, userID)
	f.by = append(f.by, by)
	return nil
}

func (f *fakeGDPR) Export(_ context.Context, userID string) ([]byte, error) {
	return json.Marshal(map[string]string{"user": userID})
}

// browser is one client with its cookies, calling from one address.
type browser struct {
	e    *env
	c    *http.Client
	from string // X-Forwarded-For
	csrf string // the session's CSRF token once logged in
}

func (e *env) browser(from string) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c := *e.srv.Client() // a copy: each browser has its own jar
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{e: e, c: &c, from: from}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("answer %d is not JSON: %q", a.status, a.body)
	}
	return v
}

func (a answer) code() string {
	var v struct{ Error string }
	_ = json.Unmarshal(a.body, &v)
	return v.Error
}

// raw sends body as it is (a string or []byte) or as JSON.
func (b *browser) call(method, path string, body any, hdr ...string) answer {
	b.e.t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		j, err := json.Marshal(v)
		if err != nil {
			b.e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, rd)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.from != "" {
		req.Header.Set("X-Forwarded-For", b.from)
	}
	if b.csrf != "" {
		req.Header.Set(session.CSRFHeader, b.csrf)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return b.do(req)
}

// form posts an HTML form.
func (b *browser) form(path string, v url.Values, hdr ...string) answer {
	b.e.t.Helper()
	req, err := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(v.Encode()))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if b.from != "" {
		req.Header.Set("X-Forwarded-For", b.from)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

// do sends req with the browser's cookies.
func (b *browser) do(req *http.Request) answer {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *browser) setCookie(name, value string) {
	u, _ := url.Parse(b.e.srv.URL)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/", Secure: true}})
}

func expect(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.status != status || (code != "" && a.code() != code) {
		t.Fatalf("answer %d %s, want %d %s: %s", a.status, a.code(), status, code, a.body)
	}
}

// link waits for a mail to addr whose subject has subject, and returns
// the token of its link to path.
func (e *env) link(addr, subject, path string) string {
	e.t.Helper()
	return e.nthLink(addr, subject, path, 1)
}

// nthLink is link from the n-th such mail (waiting for it).
func (e *env) nthLink(addr, subject, path string, n int) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var m mailtest.Mail
	for {
		list, err := e.mailpit.API.Messages(ctx, addr)
		var matching []mailtest.Mail
		for _, l := range list {
			if strings.Contains(l.Subject, subject) {
				matching = append(matching, l)
			}
		}
		if err == nil && len(matching) >= n {
			m = matching[len(matching)-n] // newest first
			break
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("no mail %d %q to %s: %v", n, subject, addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	l := mailtest.Link(m, path)
	u, err := url.Parse(l)
	if err != nil || l == "" {
		e.t.Fatalf("mail %q has no link to %s: %q", subject, path, m.Text)
	}
	return u.Query().Get("token")
}

// mails waits for a mail to addr whose subject has subject (delivery is
// asynchronous), then counts those mails.
func (e *env) mails(addr, subject string) int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := e.mailpit.API.WaitFor(ctx, addr, subject); err != nil {
		return 0
	}
	list, err := e.mailpit.API.Messages(ctx, addr)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, m := range list {
		if strings.Contains(m.Subject, subject) {
			n++
		}
	}
	return n
}

const goodPassword = "correct horse battery staple"

// signedUp makes a verified account and returns a browser logged in to it.
func (e *env) signedUp(email, from string) *browser {
	e.t.Helper()
	b := e.browser(from)
	expect(e.t, b.call("POST", "/api/v1/signup", map[string]string{"email": email, "password": goodPassword}), 202, "")
	tok := e.link(email, "Confirm your email", "/verify-email")
	expect(e.t, b.call("POST", "/api/v1/verify-email", map[string]string{"token": tok}), 200, "")
	b.login(email, goodPassword)
	return b
}

func (b *browser) login(email, pw string) map[string]any {
	b.e.t.Helper()
	a := b.call("POST", "/api/v1/login", map[string]string{"email": email, "password": pw})
	expect(b.e.t, a, 200, "")
	v := a.json(b.e.t)
	b.csrf, _ = v["csrf_token"].(string)
	return v
}
