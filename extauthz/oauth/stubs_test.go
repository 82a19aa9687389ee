package oauth

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/helixflow/helixflow/extauthz/store"
)

// Only access tokens exist: every storage and strategy method of the other
// flows refuses, so that no fosite handler added later could make a
// refresh token or an authorization code work by accident.
func TestOtherFlowsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	st, g := &storage{s: e.srv}, &strategy{s: e.srv}
	req := fosite.NewRequest()
	errs := map[string]error{
		"SetClientAssertionJWT":          st.SetClientAssertionJWT(ctx, "jti", time.Now()),
		"ClientAssertionJWTValid":        st.ClientAssertionJWTValid(ctx, "jti"),
		"CreateAuthorizeCodeSession":     st.CreateAuthorizeCodeSession(ctx, "c", req),
		"InvalidateAuthorizeCodeSession": st.InvalidateAuthorizeCodeSession(ctx, "c"),
		"CreateRefreshTokenSession":      st.CreateRefreshTokenSession(ctx, "r", "a", req),
		"DeleteRefreshTokenSession":      st.DeleteRefreshTokenSession(ctx, "r"),
		"RotateRefreshToken":             st.RotateRefreshToken(ctx, "id", "r"),
		"ValidateRefreshToken":           g.ValidateRefreshToken(ctx, req, "r"),
		"ValidateAuthorizeCode":          g.ValidateAuthorizeCode(ctx, req, "c"),
	}
	_, err := st.GetAuthorizeCodeSession(ctx, "c", &session{})
	errs["GetAuthorizeCodeSession"] = err
	_, err = st.GetRefreshTokenSession(ctx, "r", &session{})
	errs["GetRefreshTokenSession"] = err
	_, _, err = g.GenerateRefreshToken(ctx, req)
	errs["GenerateRefreshToken"] = err
	_, _, err = g.GenerateAuthorizeCode(ctx, req)
	errs["GenerateAuthorizeCode"] = err
	for name, err := range errs {
		if err == nil {
			t.Errorf("%s succeeded", name)
		}
	}
	if g.RefreshTokenSignature(ctx, "r") != "" || g.AuthorizeCodeSignature(ctx, "c") != "" {
		t.Error("signatures of tokens that do not exist")
	}
	// Nothing is stored per token, so there is nothing to delete.
	if err := st.DeleteAccessTokenSession(ctx, "x"); err != nil {
		t.Error(err)
	}
	// Issuing needs our own client and session types.
	if _, _, err := g.GenerateAccessToken(ctx, req); err == nil {
		t.Error("issued for a foreign client type")
	}
	req.Client = &client{c: &store.Client{ID: "alpha"}}
	if _, _, err := g.GenerateAccessToken(ctx, req); err == nil {
		t.Error("issued without a session")
	}
}

// The fosite.Client and fosite.Session adapters say what fosite must know:
// a confidential client-credentials client without redirects, and a
// session whose clone shares nothing.
func TestAdapters(t *testing.T) {
	c := &client{c: &store.Client{ID: "a", Scopes: []string{"models:read"}}, audience: []string{"x"}}
	if c.GetRedirectURIs() != nil || c.GetResponseTypes() != nil || c.IsPublic() ||
		!c.GetGrantTypes().Has("client_credentials") || c.GetID() != "a" {
		t.Fatalf("client adapter: %+v", c)
	}
	exp := time.Unix(1000, 0)
	s := &session{}
	s.SetExpiresAt(fosite.AccessToken, exp)
	s.SetExpiresAt(fosite.RefreshToken, time.Unix(5, 0))
	s.claims.Subject = "a"
	s.claims.Scopes = []string{"models:read"}
	if !s.GetExpiresAt(fosite.AccessToken).Equal(exp) || !s.GetExpiresAt(fosite.RefreshToken).IsZero() ||
		s.GetSubject() != "a" || s.GetUsername() != "" {
		t.Fatalf("session: %+v", s)
	}
	cl := s.Clone().(*session)
	cl.claims.Scopes[0] = "changed"
	if s.claims.Scopes[0] != "models:read" || !cl.expiresAt.Equal(exp) {
		t.Fatal("clone shares its slices or lost the expiry")
	}
}

// The introspecting caller is looked up again when the token is another
// client's: a database failure there is 503, not an answer.
func TestIntrospectCallerLookupUnavailable(t *testing.T) {
	e := newEnv(t)
	tok := e.issue(t, "alpha", nil).AccessToken
	e.clients.unavailableAfter(t, "beta", 1)
	w := e.do(t, request{path: PathIntrospect, form: url.Values{"token": {tok}}, basic: e.basic("beta")})
	if w.Code != http.StatusServiceUnavailable || decodeError(t, w).Error != codeUnavailable {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

func TestRevokeRequests(t *testing.T) {
	e := newEnv(t)
	for name, rq := range map[string]request{
		"no token":    {path: PathRevoke, form: url.Values{"x": {"y"}}, basic: e.basic("alpha")},
		"query":       {path: PathRevoke + "?token=x", form: url.Values{"token": {"x"}}, basic: e.basic("alpha")},
		"wrong media": {path: PathRevoke, body: "token=x", ctype: "text/plain", basic: e.basic("alpha")},
	} {
		t.Run(name, func(t *testing.T) {
			if w := e.do(t, rq); w.Code != http.StatusBadRequest || decodeError(t, w).Error != codeInvalidRequest {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
		})
	}
	if w := e.do(t, request{method: http.MethodGet, path: PathRevoke}); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", w.Code)
	}
}

func TestQuoteParam(t *testing.T) {
	for in, want := range map[string]string{
		"scope": "'scope'", "a'b": "(a name with odd characters)", "a b": "(a name with odd characters)",
		"x012345678901234567890123456789012345678901234567890": "(a long name)",
	} {
		if got := quoteParam(in); got != want {
			t.Errorf("quoteParam(%q) = %q, want %q", in, got, want)
		}
	}
}
