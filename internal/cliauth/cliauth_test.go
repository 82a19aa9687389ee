package cliauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/helixflow/helixflow/extauthz/oauth"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/cliauth"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// keys is a fixed signing key.
type keys struct {
	key  *ecdsa.PrivateKey
	jwks []byte
}

func newKeys(t *testing.T) *keys {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &keys{key: k, jwks: b}
}

func (k *keys) SigningKey(context.Context) (string, string, crypto.Signer, error) {
	return "k1", "ES256", k.key, nil
}
func (k *keys) JWKS(context.Context) ([]byte, error) { return k.jwks, nil }

// authz is helix-authz's OAuth server with people on a real Postgres, a
// person signed in in a browser (cookie), and the helixctl client.
type authz struct {
	issuer string
	cookie string
	srv    *httptest.Server
}

func startAuthz(t *testing.T) *authz {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.Start(t)
	pgtest.Migrate(t, dsn)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := peopletest.Store(t, dsn)
	pool := pgtest.Pool(t, dsn)
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String()
	mgr, err := session.New(session.Config{DB: pool, PublicOrigin: issuer, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.EnsureClient(ctx, oauth.HelixctlClient("free")); err != nil {
		t.Fatal(err)
	}
	userID := peopletest.AddUser(t, pool, peopletest.User{Email: "ada@example.test", Verified: true})
	browser, err := mgr.CreateBrowserSession(ctx, userID, "127.0.0.1", "test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := oauth.New(oauth.Config{
		Issuer: issuer, DefaultAudience: "helixflow", Clients: db, Revocations: db, Keys: newKeys(t),
		Hasher: secret.NewHasher([]byte("pepper-for-tests-0123456789abcdef")), Logger: quiet,
		People: &oauth.People{Grants: db, Sessions: mgr, Resolve: mgr.Middleware},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv.Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	return &authz{issuer: issuer, cookie: browser.Secret, srv: ts}
}

// browse is the person's browser: it opens the authorization URL with
// its session cookie and follows the redirect to the loopback callback.
// first, when set, is called with the callback URL before it is followed.
func (a *authz) browse(t *testing.T, first func(callback string)) func(string) error {
	return func(u string) error {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			req.AddCookie(&http.Cookie{Name: session.CookieName, Value: a.cookie})
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noFollow.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if first != nil {
				first(loc)
			}
			resp, err = http.Get(loc)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}()
		return nil
	}
}

func refreshRefused(t *testing.T, a *authz, rt string) bool {
	t.Helper()
	resp, err := http.PostForm(a.issuer+oauth.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {cliauth.ClientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusBadRequest
}

func TestLoginRefreshLogout(t *testing.T) {
	a := startAuthz(t)
	ctx := context.Background()
	var strays atomic.Int32
	l := &cliauth.Login{
		Issuer: a.issuer + "/", HTTP: http.DefaultClient, Prompt: io.Discard, Timeout: 20 * time.Second,
		// A request to the callback without our state does not end the wait.
		Open: a.browse(t, func(callback string) {
			u, _ := url.Parse(callback)
			q := u.Query()
			q.Set("state", "not-ours")
			u.RawQuery = q.Encode()
			if resp, err := http.Get(u.String()); err == nil {
				if resp.StatusCode == http.StatusBadRequest {
					strays.Add(1)
				}
				resp.Body.Close()
			}
		}),
	}
	c, err := l.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strays.Load() != 1 || c.Issuer != a.issuer || c.AccessToken == "" || c.RefreshToken == "" || c.ClientID != cliauth.ClientID ||
		c.Scope != "account models:infer models:read" || time.Until(c.ExpiresAt) < time.Minute {
		t.Fatalf("credentials %+v (strays %d)", c, strays.Load())
	}
	path := filepath.Join(t.TempDir(), "cfg", "helixflow", "credentials.json")
	if err := cliauth.Save(path, c); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Fatalf("%s: %v %v, want %v", p, st.Mode(), err, want)
		}
	}

	// Fresh: no refresh. Expired: one refresh, even with two processes
	// asking at once (a second refresh with the same token would be reuse
	// and end the session).
	fresh := &cliauth.Session{Path: path}
	if got, err := fresh.Current(ctx); err != nil || got.RefreshToken != c.RefreshToken {
		t.Fatalf("fresh: %v %v", got, err)
	}
	later := &cliauth.Session{Path: path, Now: func() time.Time { return time.Now().Add(time.Hour) }}
	var wg sync.WaitGroup
	got := make([]*cliauth.Credentials, 2)
	errs := make([]error, 2)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i], errs[i] = later.Current(ctx) }()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i].RefreshToken == c.RefreshToken {
			t.Fatalf("refresh %d: %v", i, errs[i])
		}
	}
	stored, err := cliauth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].RefreshToken != got[1].RefreshToken || stored.RefreshToken != got[0].RefreshToken {
		t.Fatal("two processes refreshed with one refresh token")
	}
	// Reuse of the rotated token (a thief's copy): refused, and the
	// session ends with it.
	if !refreshRefused(t, a, c.RefreshToken) {
		t.Fatal("the first refresh token still works after rotation")
	}
	// helixctl learns at its next refresh that it must log in again.
	expired := *stored
	expired.ExpiresAt = time.Now().Add(-time.Minute)
	if err := cliauth.Save(path, &expired); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Current(ctx); !errors.Is(err, cliauth.ErrNotLoggedIn) {
		t.Fatalf("refresh after the session ended: %v", err)
	}
}

func TestLogout(t *testing.T) {
	a := startAuthz(t)
	ctx := context.Background()
	c, err := (&cliauth.Login{Issuer: a.issuer, HTTP: http.DefaultClient, Open: a.browse(t, nil), Timeout: 20 * time.Second}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "credentials.json")
	if err := cliauth.Save(path, c); err != nil {
		t.Fatal(err)
	}
	s := &cliauth.Session{Path: path}
	if err := s.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("credentials left behind: %v", err)
	}
	if !refreshRefused(t, a, c.RefreshToken) {
		t.Fatal("the refresh token outlived the logout")
	}
	if err := s.Logout(ctx); !errors.Is(err, cliauth.ErrNotLoggedIn) {
		t.Fatalf("second logout: %v", err)
	}
}

func TestLoginRefusals(t *testing.T) {
	for _, issuer := range []string{"http://authz.example", "ftp://127.0.0.1", "https://a.example/?x=1", "https://u@a.example", "/relative"} {
		if _, err := cliauth.CheckIssuer(issuer); err == nil {
			t.Errorf("issuer %q accepted", issuer)
		}
	}
	a := startAuthz(t)
	// The browser comes back with an error: login says so.
	deny := func(u string) error {
		go func() {
			v, _ := url.Parse(u)
			cb, _ := url.Parse(v.Query().Get("redirect_uri"))
			cb.RawQuery = url.Values{"state": {v.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"no"}}.Encode()
			if resp, err := http.Get(cb.String()); err == nil {
				resp.Body.Close()
			}
		}()
		return nil
	}
	_, err := (&cliauth.Login{Issuer: a.issuer, HTTP: http.DefaultClient, Open: deny, Timeout: 20 * time.Second}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("denied sign-in: %v", err)
	}
	// Nobody comes back: the wait ends.
	_, err = (&cliauth.Login{Issuer: a.issuer, HTTP: http.DefaultClient, Timeout: 200 * time.Millisecond}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no sign-in") {
		t.Fatalf("abandoned sign-in: %v", err)
	}
}
