package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/audit"
)

// setClientEnabled disables or enables helixctl in the store and reloads
// the server's clients, as a notification would.
func (e *peopleEnv) setClientEnabled(t testing.TB, enabled bool) {
	t.Helper()
	ctx := context.Background()
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
}

func (e *peopleEnv) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// A refresh token dies with its grant's session, its user, its idle
// lifetime and its client's cutoff: each is invalid_grant (no reuse alarm,
// no token). The grant's access tokens die too, but for an idle refresh
// token's: its session lives, and they run out at their own exp.
func TestPeopleRefreshRefusals(t *testing.T) {
	for name, tc := range map[string]struct {
		kill func(t *testing.T, e *peopleEnv, sid string)
		code int
		err  string
		// accessLives: the grant's access token still works.
		accessLives bool
	}{
		"the session ended (password change, sessions page)": {
			kill: func(t *testing.T, e *peopleEnv, _ string) {
				if err := e.sessions.EndAll(context.Background(), e.userID, ""); err != nil {
					t.Fatal(err)
				}
			},
			code: 400, err: codeInvalidGrant,
		},
		"the session past its lifetime": {
			kill: func(t *testing.T, e *peopleEnv, sid string) {
				e.exec(t, `UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, sid)
			},
			code: 400, err: codeInvalidGrant,
		},
		"the user erased": {
			kill: func(t *testing.T, e *peopleEnv, _ string) {
				e.exec(t, `UPDATE users SET erased_at = now(), email = NULL WHERE id = $1`, e.userID)
			},
			code: 400, err: codeInvalidGrant,
		},
		"the refresh token idle too long": {
			kill: func(t *testing.T, e *peopleEnv, sid string) {
				e.exec(t, `UPDATE oauth_refresh_tokens SET expires_at = now() - interval '1 second' WHERE session_id = $1`, sid)
			},
			code: 400, err: codeInvalidGrant, accessLives: true,
		},
		"the client disabled and enabled again": {
			kill: func(t *testing.T, e *peopleEnv, _ string) {
				e.setClientEnabled(t, false)
				e.setClientEnabled(t, true)
			},
			code: 400, err: codeInvalidGrant,
		},
		"the client disabled": {
			kill: func(t *testing.T, e *peopleEnv, _ string) { e.setClientEnabled(t, false) },
			code: 401, err: codeInvalidClient,
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newPeopleEnv(t)
			tr := e.login(t)
			sid := e.claims(t, tr.AccessToken).SessionID
			tc.kill(t, e, sid)
			w, got := e.refresh(t, tr.RefreshToken)
			if w.Code != tc.code || decodeError(t, w).Error != tc.err || got.AccessToken != "" {
				t.Fatalf("refresh: %d %s; want %d %s", w.Code, w.Body, tc.code, tc.err)
			}
			if _, _, _, err := e.srv.VerifyUserToken(context.Background(), tr.AccessToken); (err == nil) != tc.accessLives {
				t.Errorf("the grant's access token at the people's API: %v, want it to work: %v", err, tc.accessLives)
			}
			// Not mistaken for reuse: nothing was revoked by the refusal.
			var revoked int
			if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM oauth_refresh_tokens WHERE revoked_at IS NOT NULL`).Scan(&revoked); err != nil || revoked != 0 {
				t.Errorf("the refusal revoked %d refresh tokens (%v)", revoked, err)
			}
		})
	}
}

// A code dies after 60 s, with its user, and with its client's cutoff;
// each refusal leaves no token session behind.
func TestPeopleCodeRefusals(t *testing.T) {
	const redirect = "http://127.0.0.1:5000/callback"
	for name, kill := range map[string]func(t *testing.T, e *peopleEnv){
		"expired": func(t *testing.T, e *peopleEnv) {
			e.exec(t, `UPDATE oauth_codes SET expires_at = now() - interval '1 second'`)
		},
		"the user erased before the exchange": func(t *testing.T, e *peopleEnv) {
			e.exec(t, `UPDATE users SET erased_at = now(), email = NULL WHERE id = $1`, e.userID)
		},
		"the client disabled and enabled again": func(t *testing.T, e *peopleEnv) {
			e.setClientEnabled(t, false)
			e.setClientEnabled(t, true)
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newPeopleEnv(t)
			verifier, challenge := pkcePair("v")
			code := e.code(t, authorizeQuery(redirect, challenge))
			kill(t, e)
			w, tr := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {redirect}, "code_verifier": {verifier}})
			if w.Code != http.StatusBadRequest || decodeError(t, w).Error != codeInvalidGrant || tr.AccessToken != "" {
				t.Fatalf("exchange: %d %s", w.Code, w.Body)
			}
			if n := e.liveTokenSessions(t); n != 0 {
				t.Errorf("%d token sessions left by a refused exchange", n)
			}
		})
	}
}

// Without a scope parameter the app gets its client's scopes that the
// person may hold: helix:admin only for a platform admin.
func TestPeopleAuthorizeDefaultScopes(t *testing.T) {
	e := newPeopleEnv(t)
	const redirect = "http://127.0.0.1:5000/callback"
	verifier, challenge := pkcePair("v")
	q := authorizeQuery(redirect, challenge)
	q.Del("scope")
	code := e.code(t, q)
	w, tr := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "code_verifier": {verifier}})
	if w.Code != http.StatusOK || tr.Scope != "account models:infer models:read" {
		t.Fatalf("default scopes: %d %q %s", w.Code, tr.Scope, w.Body)
	}
}

// failingTrail is an audit trail that cannot write.
type failingTrail struct{ calls int }

func (f *failingTrail) Record(context.Context, audit.Event) error {
	f.calls++
	return errors.New("audit store down")
}

// An audit trail that cannot write does not undo or refuse the grant (it
// already happened; the failure is logged and counted by the store).
func TestPeopleGrantSurvivesAuditFailure(t *testing.T) {
	trail := &failingTrail{}
	e := newPeopleEnv(t, func(c *Config) {
		p := *c.People
		p.Audit = trail
		c.People = &p
	})
	tr := e.login(t)
	if _, _, _, err := e.srv.VerifyUserToken(context.Background(), tr.AccessToken); err != nil {
		t.Fatalf("the grant's token: %v", err)
	}
	if trail.calls == 0 {
		t.Fatal("the grant was not offered to the audit trail")
	}
}

// The token session keeps the app's user agent even when it is no UTF-8
// (a header may carry any byte): the exchange must not fail on it.
func TestPeopleExchangeOddUserAgent(t *testing.T) {
	e := newPeopleEnv(t)
	const redirect = "http://127.0.0.1:5000/callback"
	verifier, challenge := pkcePair("v")
	code := e.code(t, authorizeQuery(redirect, challenge))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"code_verifier": {verifier}, "client_id": {HelixctlClientID}}
	r := httptest.NewRequest(http.MethodPost, PathToken, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("User-Agent", "helixctl/1 \xff\xfe")
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("exchange with a User-Agent that is no UTF-8: %d %s", w.Code, w.Body)
	}
	var agent string
	if err := e.pool.QueryRow(context.Background(), `SELECT user_agent FROM sessions WHERE kind = 'token'`).Scan(&agent); err != nil ||
		agent != "helixctl/1 \ufffd" {
		t.Fatalf("stored user agent %q (%v)", agent, err)
	}
}
