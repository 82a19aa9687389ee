package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	psession "github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/token"
)

// faults makes chosen calls of the real stores fail as a database outage
// does, until healed: the wrappers below sit between the Server and the
// Postgres stores of a peopleEnv.
type faults struct {
	mu   sync.Mutex
	down map[string]bool
}

func (f *faults) fail(calls ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = map[string]bool{}
	for _, c := range calls {
		f.down[c] = true
	}
}

func (f *faults) heal() { f.fail() }

func (f *faults) err(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[call] {
		return fmt.Errorf("fault: %s: connection refused: %w", call, store.ErrUnavailable)
	}
	return nil
}

type faultyGrants struct {
	GrantStore
	f *faults
}

func (g faultyGrants) CreateAuthCode(ctx context.Context, c *store.AuthCode) error {
	if err := g.f.err("CreateAuthCode"); err != nil {
		return err
	}
	return g.GrantStore.CreateAuthCode(ctx, c)
}

func (g faultyGrants) GetAuthCode(ctx context.Context, sig []byte) (*store.AuthCode, error) {
	if err := g.f.err("GetAuthCode"); err != nil {
		return nil, err
	}
	return g.GrantStore.GetAuthCode(ctx, sig)
}

func (g faultyGrants) RedeemAuthCode(ctx context.Context, sig []byte, rt *store.RefreshToken) error {
	if err := g.f.err("RedeemAuthCode"); err != nil {
		return err
	}
	return g.GrantStore.RedeemAuthCode(ctx, sig, rt)
}

func (g faultyGrants) GetRefreshToken(ctx context.Context, sig []byte) (*store.RefreshToken, error) {
	if err := g.f.err("GetRefreshToken"); err != nil {
		return nil, err
	}
	return g.GrantStore.GetRefreshToken(ctx, sig)
}

func (g faultyGrants) RotateRefreshToken(ctx context.Context, old []byte, next *store.RefreshToken) error {
	if err := g.f.err("RotateRefreshToken"); err != nil {
		return err
	}
	return g.GrantStore.RotateRefreshToken(ctx, old, next)
}

func (g faultyGrants) RevokeRefreshFamily(ctx context.Context, familyID string) ([]store.RevokedGrant, error) {
	if err := g.f.err("RevokeRefreshFamily"); err != nil {
		return nil, err
	}
	return g.GrantStore.RevokeRefreshFamily(ctx, familyID)
}

type faultySessions struct {
	TokenSessions
	f *faults
}

func (s faultySessions) CreateTokenSession(ctx context.Context, userID, clientID, source, userAgent string) (string, error) {
	if err := s.f.err("CreateTokenSession"); err != nil {
		return "", err
	}
	return s.TokenSessions.CreateTokenSession(ctx, userID, clientID, source, userAgent)
}

func (s faultySessions) Live(ctx context.Context, id string) (string, bool, error) {
	if err := s.f.err("Live"); err != nil {
		return "", false, err
	}
	return s.TokenSessions.Live(ctx, id)
}

func (s faultySessions) End(ctx context.Context, id string) error {
	if err := s.f.err("End"); err != nil {
		return err
	}
	return s.TokenSessions.End(ctx, id)
}

type faultyRevocations struct {
	RevocationStore
	f *faults
}

func (r faultyRevocations) IsRevoked(ctx context.Context, jti string) (bool, error) {
	if err := r.f.err("IsRevoked"); err != nil {
		return false, err
	}
	return r.RevocationStore.IsRevoked(ctx, jti)
}

type faultyClients struct {
	ClientStore
	f *faults
}

func (c faultyClients) GetClient(ctx context.Context, id string) (*store.Client, error) {
	if err := c.f.err("GetClient"); err != nil {
		return nil, err
	}
	return c.ClientStore.GetClient(ctx, id)
}

// withFaults puts f between the Server and its stores.
func withFaults(f *faults) func(*Config) {
	return func(c *Config) {
		c.Clients = faultyClients{c.Clients, f}
		c.Revocations = faultyRevocations{c.Revocations, f}
		p := *c.People
		p.Grants = faultyGrants{p.Grants, f}
		p.Sessions = faultySessions{p.Sessions, f}
		c.People = &p
	}
}

// wantUnavailable fails t unless w is 503 temporarily_unavailable with
// Retry-After and no token.
func wantUnavailable(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" ||
		decodeError(t, w).Error != codeUnavailable || strings.Contains(w.Body.String(), "token\"") {
		t.Fatalf("want 503 %s: %d %s", codeUnavailable, w.Code, w.Body)
	}
}

// liveTokenSessions counts the person's token sessions that are not ended.
func (e *peopleEnv) liveTokenSessions(t testing.TB) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM sessions
		WHERE user_id = $1 AND kind = 'token' AND ended_at IS NULL`, e.userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// When a store fails in the middle of a grant, the answer is 503 and
// nothing is half done: the code or refresh token presented still works
// once the store is back (it was not spent), no token session is left
// behind, and a reuse is still caught as reuse.
func TestPeopleStoreDown(t *testing.T) {
	const redirect = "http://127.0.0.1:5000/callback"
	exchange := func(code, verifier string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
	}
	// name: the flow; down: the store calls that fail during it.
	for _, tc := range []struct{ name, down string }{
		{"authorize", "CreateAuthCode"},
		{"code exchange", "GetAuthCode"},
		{"code exchange", "CreateTokenSession"},
		{"code exchange", "RedeemAuthCode"},
		{"code exchange", "GetClient"},
		{"refresh", "GetRefreshToken"},
		{"refresh", "RotateRefreshToken"},
		{"refresh", "GetClient"},
		{"reuse", "RevokeRefreshFamily"},
		{"reuse", "End"},
		{"logout", "GetRefreshToken"},
		{"logout", "RevokeRefreshFamily"},
		{"logout", "End"},
	} {
		t.Run(tc.name+"/"+tc.down, func(t *testing.T) {
			f := &faults{}
			e := newPeopleEnv(t, withFaults(f))
			verifier, challenge := pkcePair("v")
			switch tc.name {
			case "authorize":
				f.fail(tc.down)
				w := e.authorize(t, authorizeQuery(redirect, challenge), e.cookie)
				if w.Header().Get("Location") != "" {
					t.Fatalf("redirected while the store is down: %q", w.Header().Get("Location"))
				}
				wantUnavailable(t, w)
				f.heal()
				e.code(t, authorizeQuery(redirect, challenge))
			case "code exchange":
				code := e.code(t, authorizeQuery(redirect, challenge))
				f.fail(tc.down)
				w, _ := e.token(t, exchange(code, verifier))
				wantUnavailable(t, w)
				if n := e.liveTokenSessions(t); n != 0 {
					t.Fatalf("%d token sessions left behind by a failed exchange", n)
				}
				f.heal()
				w, tr := e.token(t, exchange(code, verifier))
				if w.Code != http.StatusOK || tr.RefreshToken == "" {
					t.Fatalf("the code after the outage: %d %s", w.Code, w.Body)
				}
				if n := e.liveTokenSessions(t); n != 1 {
					t.Fatalf("%d token sessions after one exchange", n)
				}
			case "refresh":
				first := e.login(t)
				f.fail(tc.down)
				w, _ := e.refresh(t, first.RefreshToken)
				wantUnavailable(t, w)
				f.heal()
				w, next := e.refresh(t, first.RefreshToken)
				if w.Code != http.StatusOK {
					t.Fatalf("the refresh token after the outage: %d %s", w.Code, w.Body)
				}
				if w, _ := e.refresh(t, next.RefreshToken); w.Code != http.StatusOK {
					t.Fatalf("its successor: %d %s", w.Code, w.Body)
				}
			case "reuse":
				first := e.login(t)
				sid := e.claims(t, first.AccessToken).SessionID
				w, second := e.refresh(t, first.RefreshToken)
				if w.Code != http.StatusOK {
					t.Fatalf("rotation: %d %s", w.Code, w.Body)
				}
				f.fail(tc.down)
				w, _ = e.refresh(t, first.RefreshToken)
				wantUnavailable(t, w)
				f.heal()
				// The reuse is caught again, and this time ends the family.
				if w, _ := e.refresh(t, first.RefreshToken); w.Code != http.StatusBadRequest || decodeError(t, w).Error != codeInvalidGrant {
					t.Fatalf("reuse after the outage: %d %s", w.Code, w.Body)
				}
				if w, _ := e.refresh(t, second.RefreshToken); w.Code != http.StatusBadRequest {
					t.Fatalf("the family outlived the reuse: %d %s", w.Code, w.Body)
				}
				if !e.sidRevoked(t, sid) {
					t.Fatal("the session outlived the reuse")
				}
			case "logout":
				tr := e.login(t)
				sid := e.claims(t, tr.AccessToken).SessionID
				revoke := func() *httptest.ResponseRecorder {
					form := url.Values{"token": {tr.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {HelixctlClientID}}
					r := httptest.NewRequest(http.MethodPost, PathRevoke, strings.NewReader(form.Encode()))
					r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					w := httptest.NewRecorder()
					e.h.ServeHTTP(w, r)
					return w
				}
				f.fail(tc.down)
				wantUnavailable(t, revoke())
				if e.sidRevoked(t, sid) {
					t.Fatal("a failed logout says 503 but ended the session")
				}
				f.heal()
				if w := revoke(); w.Code != http.StatusOK || !e.sidRevoked(t, sid) {
					t.Fatalf("logout after the outage: %d %s", w.Code, w.Body)
				}
			}
		})
	}
}

// forge signs claims with the env's signing key: a token this server could
// have issued, to reach the checks that follow the signature.
func (e *peopleEnv) forge(t testing.TB, c token.Claims) string {
	t.Helper()
	kid, alg, key, err := e.keys.SigningKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := token.Sign(c, key, kid, alg)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// VerifyUserToken (the people's API's bearer check) refuses every token
// that is not a live person's account token, each with ErrInvalidToken;
// a store it cannot ask makes it answer unavailable, which the session
// middleware turns into 503 (not 401: the token may well be good).
func TestVerifyUserTokenRefusals(t *testing.T) {
	f := &faults{}
	e := newPeopleEnv(t, withFaults(f))
	ctx := context.Background()
	tr := e.login(t)
	good := *e.claims(t, tr.AccessToken)
	with := func(change func(*token.Claims)) string {
		c := good
		c.JTI = "forged-" + fmt.Sprint(time.Now().UnixNano())
		change(&c)
		return e.forge(t, c)
	}
	other := e.newUser(t, "eve@example.test", false)
	expiredSession, err := e.sessions.CreateTokenSession(ctx, e.userID, HelixctlClientID, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, expiredSession); err != nil {
		t.Fatal(err)
	}
	revokedJTI := with(func(c *token.Claims) { c.JTI = "revoked-jti" })
	if err := e.db.RevokeToken(ctx, "revoked-jti", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	machine := url.Values{"grant_type": {"client_credentials"}, "client_id": {"machine"}, "client_secret": {e.secrets["machine"]}}
	_, mt := e.token(t, machine)
	for name, raw := range map[string]string{
		"garbage":                   "not.a.token",
		"empty":                     "",
		"a machine's token":         mt.AccessToken,
		"another audience":          with(func(c *token.Claims) { c.Audience = []string{"https://api.helix.test"} }),
		"no sid":                    with(func(c *token.Claims) { c.SessionID = "" }),
		"no account scope":          with(func(c *token.Claims) { c.Scopes = []string{"models:read"} }),
		"revoked jti":               revokedJTI,
		"an unknown client":         with(func(c *token.Claims) { c.ClientID = "nobody" }),
		"a session past its expiry": with(func(c *token.Claims) { c.SessionID = expiredSession }),
		"an unknown session":        with(func(c *token.Claims) { c.SessionID = "0b4c2f1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e" }),
		"another user's session":    with(func(c *token.Claims) { c.Subject = other }),
		"expired past the leeway":   with(func(c *token.Claims) { c.ExpiresAt = time.Now().Add(-token.DefaultLeeway - time.Second) }),
		"another issuer":            with(func(c *token.Claims) { c.Issuer = "https://evil.test" }),
	} {
		uid, sid, scopes, err := e.srv.VerifyUserToken(ctx, raw)
		if !errors.Is(err, token.ErrInvalidToken) || uid != "" || sid != "" || scopes != nil || isUnavailable(err) {
			t.Errorf("%s: %q %q %v %v; want ErrInvalidToken", name, uid, sid, scopes, err)
		}
	}
	if _, _, _, err := e.srv.VerifyUserToken(ctx, tr.AccessToken); err != nil {
		t.Fatalf("the good token: %v", err)
	}

	// Stores down: unavailable, never valid, never invalid.
	bearer, err := psession.New(psession.Config{DB: e.pool, PublicOrigin: testIssuer, Bearer: e.srv, Logger: e.srv.log})
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range []string{"IsRevoked", "GetClient", "Live"} {
		f.fail(call)
		uid, _, _, err := e.srv.VerifyUserToken(ctx, tr.AccessToken)
		if !isUnavailable(err) || !errors.Is(err, psession.ErrUnavailable) || errors.Is(err, token.ErrInvalidToken) || uid != "" {
			t.Errorf("%s down: %q %v; want unavailable", call, uid, err)
		}
		r := httptest.NewRequest(http.MethodGet, "/api/v1/account", nil)
		r.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		w := httptest.NewRecorder()
		reached := false
		bearer.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true })).ServeHTTP(w, r)
		if w.Code != http.StatusServiceUnavailable || reached {
			t.Errorf("%s down: the people's API answered %d (handler ran: %v), want 503", call, w.Code, reached)
		}
		f.heal()
	}

	// The app's client disabled, then enabled again: its tokens from
	// before stay dead (the cutoff).
	for _, enabled := range []bool{false, true} {
		c, err := e.db.GetClient(ctx, HelixctlClientID)
		if err != nil {
			t.Fatal(err)
		}
		c.Enabled = enabled
		if err := e.db.UpdateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := e.clients.Load(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := e.srv.VerifyUserToken(ctx, tr.AccessToken); !errors.Is(err, token.ErrInvalidToken) {
			t.Errorf("client enabled=%v: %v, want ErrInvalidToken", enabled, err)
		}
	}

	// Without OAuth for people there are no people's tokens.
	if _, _, _, err := newEnv(t).srv.VerifyUserToken(ctx, tr.AccessToken); !errors.Is(err, token.ErrInvalidToken) {
		t.Errorf("people off: %v", err)
	}
}
