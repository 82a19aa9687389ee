package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/helixflow/helixflow/extauthz/oauth"
	"github.com/helixflow/helixflow/extauthz/session"
)

// helixctlLogin runs helixctl's code grant for a signed-in person on r's
// public port and returns the access and refresh tokens.
func helixctlLogin(t *testing.T, r *replica, p *person) (access, refresh string) {
	t.Helper()
	verifier := strings.Repeat("v", 64)
	sum := sha256.Sum256([]byte(verifier))
	redirect := "http://127.0.0.1:43117/callback"
	q := url.Values{"response_type": {"code"}, "client_id": {oauth.HelixctlClientID}, "redirect_uri": {redirect},
		"scope": {"account models:infer"}, "state": {"state-0123456789"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	req, _ := http.NewRequest(http.MethodGet, r.public.URL+oauth.PathAuthorize+"?"+q.Encode(), nil)
	req.Header.Set("Cookie", session.CookieName+"="+p.cookie)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	tr := tokenCall(t, r, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {redirect}, "code_verifier": {verifier}})
	return tr["access_token"], tr["refresh_token"]
}

func tokenCall(t *testing.T, r *replica, form url.Values) map[string]string {
	t.Helper()
	form.Set("client_id", oauth.HelixctlClientID)
	resp, err := http.PostForm(r.public.URL+oauth.PathToken, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	m := map[string]string{"status": http.StatusText(resp.StatusCode)}
	for k, v := range out {
		if s, ok := v.(string); ok {
			m[k] = s
		}
	}
	return m
}

// TestPeopleTokensAtCheck: helixctl's grant on one replica gives a token
// Check accepts on both; reusing a rotated refresh token on the other
// replica ends the session, and both Checks refuse the session's access
// tokens within the notification delay (goal: 1 s; measured by polling).
// Logout (revoking the refresh token) does the same.
func TestPeopleTokensAtCheck(t *testing.T) {
	a, b, p := peopleReplicas(t, "ada@example.test")

	access, refresh := helixctlLogin(t, a, p)
	if access == "" || refresh == "" {
		t.Fatal("no tokens")
	}
	for name, r := range map[string]*replica{"a": a, "b": b} {
		waitCode(t, r, "a person's new token on "+name, access, "simple", codes.OK)
	}
	next := tokenCall(t, a, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if next["access_token"] == "" {
		t.Fatalf("refresh: %v", next)
	}
	start := time.Now()
	if again := tokenCall(t, b, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); again["error"] != "invalid_grant" {
		t.Fatalf("reuse on the other replica: %v", again)
	}
	for name, r := range map[string]*replica{"a": a, "b": b} {
		for _, tok := range []string{access, next["access_token"]} {
			waitCode(t, r, "a person's token after refresh-token reuse on "+name, tok, "simple", codes.Unauthenticated)
		}
	}
	t.Logf("refresh-token reuse to refusal at both replicas' Check: %s (goal 1 s)", time.Since(start))

	access, refresh = helixctlLogin(t, b, p)
	waitCode(t, a, "a second sign-in's token", access, "simple", codes.OK)
	start = time.Now()
	resp, err := http.PostForm(b.public.URL+oauth.PathRevoke, url.Values{"token": {refresh}, "client_id": {oauth.HelixctlClientID}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %v %v", resp, err)
	}
	resp.Body.Close()
	waitCode(t, a, "a person's token after logout", access, "simple", codes.Unauthenticated)
	t.Logf("logout to refusal at the other replica's Check: %s (goal 1 s)", time.Since(start))
}
