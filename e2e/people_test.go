package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/wire"
)

// personToken signs a verified person in the way helixctl login does,
// against the stack's helix-authz: a browser session (POST /api/v1/login),
// then /oauth2/authorize with PKCE S256 for the helixctl client and the
// code exchanged for an access and a refresh token.
func (s *stack) personToken(t *testing.T, https *http.Client, email string) (access, refresh string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pw = "a long enough passphrase of the e2e test"
	pool, err := pgxpool.New(ctx, s.st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	peopletest.AddUser(t, pool, peopletest.User{Email: email, Verified: true, Password: pw})
	pool.Close()

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Transport: https.Transport, Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	body, _ := json.Marshal(map[string]string{"email": email, "password": pw})
	resp, err := browser.Post(s.issuer+"/api/v1/login", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}

	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	verifier := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(verifier))
	redirect := "http://127.0.0.1:1" + wire.HelixctlCallbackPath
	q := url.Values{"response_type": {"code"}, "client_id": {wire.HelixctlClientID}, "redirect_uri": {redirect},
		"scope": {"account models:infer models:read"}, "state": {"e2e-state"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	resp, err = browser.Get(s.issuer + "/oauth2/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	s.oauthPost(t, https, "/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {redirect}, "client_id": {wire.HelixctlClientID}, "code_verifier": {verifier}}, &tok)
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("code exchange gave %+v", tok)
	}
	return tok.AccessToken, tok.RefreshToken
}

// oauthPost posts a form to helix-authz and decodes a 200 answer into out.
func (s *stack) oauthPost(t *testing.T, https *http.Client, path string, form url.Values, out any) {
	t.Helper()
	resp, err := https.PostForm(s.issuer+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d", path, resp.StatusCode)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
	}
}

// checkPersonThroughGateway: a person's access token (helixctl login's)
// infers through Envoy, and once the person logs out (the refresh token
// revoked, which ends its session) Envoy's ext_authz refuses it within the
// issue's 1 s.
func (s *stack) checkPersonThroughGateway(t *testing.T, https *http.Client) {
	access, refresh := s.personToken(t, https, "ada@e2e.test")
	ctx := context.Background()
	if code, body, err := s.restInfer(ctx, https, sampleModel, access, nil); err != nil || code != http.StatusOK {
		t.Fatalf("infer with a person's token = %d %s (%v)", code, body, err)
	}
	s.oauthPost(t, https, "/oauth2/revoke", url.Values{"token": {refresh}, "token_type_hint": {"refresh_token"},
		"client_id": {wire.HelixctlClientID}}, nil)
	loggedOut := time.Now()
	for {
		code, body, err := s.restInfer(ctx, https, sampleModel, access, nil)
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusUnauthorized {
			t.Logf("refused %s after logout", time.Since(loggedOut).Round(time.Millisecond))
			return
		}
		if code != http.StatusOK {
			t.Fatalf("infer after logout = %d %s, want 200 until refused with 401", code, body)
		}
		if time.Since(loggedOut) > time.Second {
			t.Fatalf("a logged-out person's token still infers %s after logout (goal: refused within 1 s)", time.Since(loggedOut).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
