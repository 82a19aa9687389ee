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

// Without People only access tokens exist: every storage and strategy
// method of the other flows refuses, so that no fosite handler could make
// a refresh token or an authorization code work by accident.
func TestOtherFlowsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	st, g := &storage{s: e.srv}, &strategy{s: e.srv}
	req := fosite.NewRequest()
	sig := g.RefreshTokenSignature(ctx, "hxr_x")
	tx, err := st.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errs := map[string]error{
		"SetClientAssertionJWT":          st.SetClientAssertionJWT(ctx, "jti", time.Now()),
		"ClientAssertionJWTValid":        st.ClientAssertionJWTValid(ctx, "jti"),
		"CreateAuthorizeCodeSession":     st.CreateAuthorizeCodeSession(ctx, sig, req),
		"InvalidateAuthorizeCodeSession": st.InvalidateAuthorizeCodeSession(ctx, sig),
		"CreateRefreshTokenSession":      st.CreateRefreshTokenSession(tx, sig, "a", req),
		"RotateRefreshToken":             st.RotateRefreshToken(ctx, "id", sig),
		"ValidateRefreshToken":           g.ValidateRefreshToken(ctx, req, "r"),
		"ValidateAuthorizeCode":          g.ValidateAuthorizeCode(ctx, req, "c"),
	}
	_, err = st.GetAuthorizeCodeSession(ctx, sig, &session{})
	errs["GetAuthorizeCodeSession"] = err
	_, err = st.GetRefreshTokenSession(ctx, sig, &session{})
	errs["GetRefreshTokenSession"] = err
	for name, err := range errs {
		if err == nil {
			t.Errorf("%s succeeded", name)
		}
	}
	// Signatures are HMACs: never the token, different per token.
	if sig == "hxr_x" || sig == g.AuthorizeCodeSignature(ctx, "hxc_x") || len(sig) != 64 {
		t.Errorf("signature %q", sig)
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
	app := &client{c: &store.Client{ID: "app", Public: true, RedirectURIs: []string{"http://127.0.0.1/cb"},
		GrantTypes: []string{store.GrantAuthorizationCode, store.GrantRefreshToken}}}
	if !app.IsPublic() || !app.GetResponseTypes().ExactOne("code") || app.GetGrantTypes().Has("client_credentials") ||
		len(app.GetRedirectURIs()) != 1 {
		t.Fatalf("public client adapter: %+v", app)
	}
	exp := time.Unix(1000, 0)
	s := &session{}
	s.SetExpiresAt(fosite.AccessToken, exp)
	s.SetExpiresAt(fosite.RefreshToken, time.Unix(5, 0))
	s.SetExpiresAt(fosite.IDToken, time.Unix(7, 0))
	s.claims.Subject = "a"
	s.claims.Scopes = []string{"models:read"}
	if !s.GetExpiresAt(fosite.AccessToken).Equal(exp) || !s.GetExpiresAt(fosite.RefreshToken).Equal(time.Unix(5, 0)) ||
		!s.GetExpiresAt(fosite.IDToken).IsZero() || s.GetSubject() != "a" || s.GetUsername() != "" {
		t.Fatalf("session: %+v", s)
	}
	if (&session{userID: "u", claims: s.claims}).GetSubject() != "u" {
		t.Fatal("a person's session is not about the person")
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
