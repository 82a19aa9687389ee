package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/token"
)

// maxClientIDBytes bounds client ids before they reach the database.
const maxClientIDBytes = 256

// client adapts store.Client to fosite.Client.
type client struct {
	c *store.Client
	// audience: the client's audiences and the default audience, which
	// every client may name explicitly since it gets it anyway.
	audience []string
}

var (
	_ fosite.Client             = (*client)(nil)
	_ fosite.ResponseModeClient = (*client)(nil)
)

func (c *client) GetID() string               { return c.c.ID }
func (c *client) GetHashedSecret() []byte     { return c.c.SecretHash }
func (c *client) GetRedirectURIs() []string   { return c.c.RedirectURIs }
func (c *client) GetScopes() fosite.Arguments { return c.c.Scopes }
func (c *client) IsPublic() bool              { return c.c.Public }
func (c *client) GetAudience() fosite.Arguments {
	return c.audience
}

// GetGrantTypes: a row without grant types (none written yet) is a
// client-credentials client.
func (c *client) GetGrantTypes() fosite.Arguments {
	if len(c.c.GrantTypes) == 0 {
		return fosite.Arguments{grantClientCredentials}
	}
	return c.c.GrantTypes
}

// GetResponseTypes: "code" for clients of the authorization-code grant.
func (c *client) GetResponseTypes() fosite.Arguments {
	if slices.Contains(c.c.GrantTypes, store.GrantAuthorizationCode) {
		return fosite.Arguments{"code"}
	}
	return nil
}

// GetResponseModes: the code comes back in the redirect URI's query only.
func (c *client) GetResponseModes() []fosite.ResponseModeType {
	return []fosite.ResponseModeType{fosite.ResponseModeDefault, fosite.ResponseModeQuery}
}

// session carries a grant through fosite: a token's claims (filled by
// GenerateAccessToken when issuing and by GetAccessTokenSession when
// introspecting) and, for a person's grant, who and which token session.
type session struct {
	claims    token.Claims
	expiresAt time.Time
	// A person's grant: the user, the token session (sid) once the code is
	// exchanged, whether the user is a platform admin now, and when the
	// code and the refresh token expire.
	userID           string
	sessionID        string
	platformAdmin    bool
	codeExpiresAt    time.Time
	refreshExpiresAt time.Time
}

var _ fosite.Session = (*session)(nil)

func (s *session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	switch key {
	case fosite.AccessToken:
		s.expiresAt = exp
	case fosite.AuthorizeCode:
		s.codeExpiresAt = exp
	case fosite.RefreshToken:
		s.refreshExpiresAt = exp
	}
}

func (s *session) GetExpiresAt(key fosite.TokenType) time.Time {
	switch key {
	case fosite.AccessToken:
		return s.expiresAt
	case fosite.AuthorizeCode:
		return s.codeExpiresAt
	case fosite.RefreshToken:
		return s.refreshExpiresAt
	}
	return time.Time{}
}

func (s *session) GetUsername() string { return "" }

func (s *session) GetSubject() string {
	if s.userID != "" {
		return s.userID
	}
	return s.claims.Subject
}

func (s *session) Clone() fosite.Session {
	c := *s
	c.claims.Audience = slices.Clone(s.claims.Audience)
	c.claims.Scopes = slices.Clone(s.claims.Scopes)
	c.claims.Models = slices.Clone(s.claims.Models)
	return &c
}

// authenticateClient narrows fosite's client authentication to
// client_secret_basic and client_secret_post, one method per request
// (RFC 6749 2.3), and answers invalid_client when no credentials came.
func (s *Server) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	id, _, basic := r.BasicAuth()
	switch {
	case form.Has("client_assertion") || form.Has("client_assertion_type"):
		return nil, rfcError(fosite.ErrInvalidClient, "Client assertions (private_key_jwt) are not supported; use client_secret_basic or client_secret_post.")
	case r.Header.Get("Authorization") != "" && !basic:
		return nil, rfcError(fosite.ErrInvalidClient, "The Authorization header is not valid HTTP Basic authentication.")
	case basic && form.Has("client_secret"):
		return nil, rfcError(fosite.ErrInvalidRequest, "The request uses more than one client authentication method.")
	case basic && form.Has("client_id"):
		if uid, err := url.QueryUnescape(id); err != nil || uid != form.Get("client_id") {
			return nil, rfcError(fosite.ErrInvalidRequest, "The client_id parameter differs from the client authenticated by HTTP Basic.")
		}
	case !basic && form.Get("client_id") == "":
		return nil, rfcError(fosite.ErrInvalidClient, "No client authentication included.")
	}
	return s.provider.DefaultClientAuthenticationStrategy(ctx, r, form)
}

// storage is fosite's storage: clients come from the ClientStore; issued
// access tokens are not stored (the JWT carries its state), so looking one
// up means verifying it and checking the revocation list. Authorization
// codes and refresh tokens of people's grants are (grants.go).
type storage struct{ s *Server }

var (
	_ fosite.Storage            = (*storage)(nil)
	_ oauth2.CoreStorage        = (*storage)(nil)
	_ oauth2.AccessTokenStorage = (*storage)(nil)
)

// errNotSupported answers storage calls for flows this server lacks.
var errNotSupported = errors.New("oauth: not supported")

func validClientID(id string) bool {
	if id == "" || len(id) > maxClientIDBytes || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// GetClient returns an enabled client; unknown, disabled and malformed ids
// are all fosite.ErrNotFound, which fosite turns into invalid_client.
func (st *storage) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := st.s.client(ctx, id)
	if err != nil {
		return nil, err
	}
	aud := make([]string, 0, len(c.Audience)+1)
	aud = append(aud, c.Audience...)
	if !slices.Contains(aud, st.s.audience) {
		aud = append(aud, st.s.audience)
	}
	return &client{c: c, audience: aud}, nil
}

// client returns an enabled client: unknown, disabled and malformed ids
// are fosite.ErrNotFound; a store failure is errUnavailable.
func (s *Server) client(ctx context.Context, id string) (*store.Client, error) {
	if !validClientID(id) {
		return nil, fosite.ErrNotFound
	}
	c, err := s.clients.GetClient(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fosite.ErrNotFound
	case err != nil:
		return nil, unavailable("client store", err)
	case c == nil || c.ID != id:
		return nil, fosite.ErrNotFound
	case !c.Enabled:
		s.log.DebugContext(ctx, "oauth: disabled client refused", "client_id", id)
		return nil, fosite.ErrNotFound
	}
	return c, nil
}

// Client assertions are refused before these could be reached.
func (st *storage) ClientAssertionJWTValid(context.Context, string) error {
	return fosite.ErrJTIKnown
}

func (st *storage) SetClientAssertionJWT(context.Context, string, time.Time) error {
	return errNotSupported
}

// CreateAccessTokenSession keeps nothing: the token is self-contained.
func (st *storage) CreateAccessTokenSession(context.Context, string, fosite.Requester) error {
	return nil
}

// GetAccessTokenSession is handed the whole token (see
// strategy.AccessTokenSignature); it returns the token's grant when the
// token verifies and its jti was not revoked.
func (st *storage) GetAccessTokenSession(ctx context.Context, raw string, sess fosite.Session) (fosite.Requester, error) {
	claims, err := st.s.verify.verify(ctx, raw)
	if err != nil {
		if isUnavailable(err) {
			return nil, err
		}
		return nil, fosite.ErrNotFound.WithWrap(err)
	}
	revoked, err := st.s.isRevoked(ctx, claims)
	if err != nil {
		return nil, err
	}
	if revoked {
		return nil, fosite.ErrInactiveToken.WithHint("The token was revoked, or the session it was issued under ended.")
	}
	// A disabled or deleted client's tokens are dead, and so are those
	// issued before its secret was rotated or it was disabled, as Check
	// holds.
	c, err := st.s.client(ctx, claims.ClientID)
	switch {
	case isUnavailable(err):
		return nil, err
	case err != nil:
		return nil, fosite.ErrInactiveToken.WithHint("The token's client is disabled or gone.")
	case !token.IssuedAfter(claims.IssuedAt, c.TokensValidAfter):
		return nil, fosite.ErrInactiveToken.WithHint("The token was issued before its client's secret rotation or disabling.")
	}
	ss, ok := sess.(*session)
	if !ok || ss == nil {
		ss = &session{}
	}
	ss.claims = *claims
	ss.expiresAt = claims.ExpiresAt
	req := fosite.NewRequest()
	req.ID = claims.JTI
	req.RequestedAt = claims.IssuedAt
	req.Client = &fosite.DefaultClient{ID: claims.ClientID}
	req.GrantedScope = fosite.Arguments(claims.Scopes)
	req.GrantedAudience = fosite.Arguments(claims.Audience)
	req.Session = ss
	return req, nil
}

func (st *storage) DeleteAccessTokenSession(context.Context, string) error { return nil }

// isRevoked reports whether any of the token's revocation entries (its
// jti, and its session's for a person's token) is on the list, as Check
// asks.
func (s *Server) isRevoked(ctx context.Context, c *token.Claims) (bool, error) {
	for _, id := range []string{c.JTI, c.SessionRevocationID()} {
		if id == "" {
			continue
		}
		revoked, err := s.revoked.IsRevoked(ctx, id)
		if err != nil {
			return false, unavailable("revocation store", err)
		}
		if revoked {
			return true, nil
		}
	}
	return false, nil
}

// strategy issues RFC 9068 access tokens with token.Sign, and random
// authorization codes and refresh tokens (grants.go).
type strategy struct{ s *Server }

var _ oauth2.CoreStrategy = (*strategy)(nil)

// jtiBytes of randomness make a token id.
const jtiBytes = 16

func newJTI() (string, error) {
	b := make([]byte, jtiBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("oauth: token id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// GenerateAccessToken signs the token for a request fosite has
// authenticated and whose scopes and audience the token endpoint granted.
func (g *strategy) GenerateAccessToken(ctx context.Context, req fosite.Requester) (string, string, error) {
	c, ok := req.GetClient().(*client)
	if !ok {
		return "", "", errors.New("oauth: issue: unexpected client type")
	}
	sess, ok := req.GetSession().(*session)
	if !ok {
		return "", "", errors.New("oauth: issue: unexpected session type")
	}
	kid, alg, key, err := g.s.keys.SigningKey(ctx)
	if err != nil {
		return "", "", unavailable("signing key", err)
	}
	jti, err := newJTI()
	if err != nil {
		return "", "", err
	}
	if err := waitPastCutoff(ctx, g.s.now, c.c.TokensValidAfter); err != nil {
		return "", "", err
	}
	// Whole seconds, as the token carries them, so that the session and
	// the token agree.
	now := g.s.now().Truncate(time.Second)
	claims := token.Claims{
		Issuer:    g.s.issuer,
		Subject:   c.c.ID,
		Audience:  slices.Clone(req.GetGrantedAudience()),
		ClientID:  c.c.ID,
		Scopes:    slices.Clone(req.GetGrantedScopes()),
		JTI:       jti,
		IssuedAt:  now,
		NotBefore: now,
		ExpiresAt: now.Add(g.s.lifetime),
		Plan:      c.c.Plan,
		Models:    slices.Clone(c.c.Models),
	}
	if sess.userID != "" {
		// A person's token: the person is the subject, the app the
		// client (whose plan and models it gets), the token session sid.
		if sess.sessionID == "" {
			return "", "", errors.New("oauth: issue: a person's token without a session")
		}
		claims.Subject, claims.SessionID = sess.userID, sess.sessionID
	}
	raw, err := token.Sign(claims, key, kid, alg)
	if err != nil {
		return "", "", fmt.Errorf("oauth: issue: %w", err)
	}
	sess.claims = claims
	sess.expiresAt = claims.ExpiresAt
	return raw, raw, nil
}

// AccessTokenSignature returns the token itself: with nothing stored, the
// storage needs the whole token to find out what it grants.
func (g *strategy) AccessTokenSignature(_ context.Context, raw string) string { return raw }

// ValidateAccessToken checks the lifetime, strictly, by this server's clock
// (the signature was checked when the storage looked the token up).
func (g *strategy) ValidateAccessToken(_ context.Context, req fosite.Requester, _ string) error {
	now := g.s.now()
	sess := req.GetSession()
	exp := sess.GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() || !now.Before(exp) {
		return fosite.ErrTokenExpired.WithHint("The access token expired.")
	}
	if ss, ok := sess.(*session); ok && now.Before(ss.claims.NotBefore) {
		return fosite.ErrInactiveToken.WithHint("The access token is not valid yet.")
	}
	return nil
}

// revocationHandler revokes access tokens (RFC 7009) by recording their
// jti until their exp.
type revocationHandler struct{ s *Server }

var _ fosite.RevocationHandler = (*revocationHandler)(nil)

// RevokeToken: tokens that do not verify (garbage, expired, foreign) are
// nothing to revoke, and RFC 7009 2.2 wants 200 for them; a token of
// another client is refused. A refresh token revokes its family and ends
// its session (logout).
func (h *revocationHandler) RevokeToken(ctx context.Context, raw string, _ fosite.TokenType, c fosite.Client) error {
	if isRefreshToken(raw) {
		return h.s.revokeRefreshToken(ctx, raw, c)
	}
	claims, err := h.s.verify.verify(ctx, raw)
	if err != nil {
		if isUnavailable(err) {
			return err
		}
		return nil
	}
	if claims.ClientID != c.GetID() {
		return rfcError(fosite.ErrUnauthorizedClient, "The token was not issued to this client.")
	}
	if err := h.s.revoked.RevokeToken(ctx, claims.JTI, claims.ExpiresAt); err != nil {
		return unavailable("revocation store", err)
	}
	h.s.log.InfoContext(ctx, "oauth: token revoked", "client_id", claims.ClientID, "jti", claims.JTI)
	return nil
}

// maxCutoffWait bounds how long issuance waits for a client's cutoff second
// to pass; a cutoff further ahead means this replica's clock is behind the
// database's.
const maxCutoffWait = 2 * time.Second

// waitPastCutoff waits until a token issued now would count against the
// client's cutoff (token.IssuedAfter). iat has whole seconds, so a token
// issued in the same second as a rotate-secret or enable would be refused
// for its whole life: the caller who just rotated gets a working token a
// fraction of a second later instead.
func waitPastCutoff(ctx context.Context, now func() time.Time, cutoff time.Time) error {
	if token.IssuedAfter(now(), cutoff) {
		return nil
	}
	wait := time.Unix(cutoff.Unix()+1, 0).Sub(now())
	if wait > maxCutoffWait {
		return unavailable("client cutoff", fmt.Errorf("the client's tokens count from %s, %s ahead of this replica's clock", cutoff.UTC().Format(time.RFC3339), wait.Round(time.Millisecond)))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("oauth: issue: %w", ctx.Err())
	}
}
