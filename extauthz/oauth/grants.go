package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/pkce"
	fositestorage "github.com/ory/fosite/storage"

	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/token"
)

// Authorization codes and refresh tokens: a prefix (so a refresh token is
// told from a JWT without a lookup) and 256 random bits, base64url. The
// signature fosite stores them by is the hex of their HMAC (secret.Hasher);
// only that reaches the database.
const (
	codePrefix    = "hxc_"
	refreshPrefix = "hxr_"
	grantBytes    = 32
	// grantTokenLen is the length of a code or refresh token.
	grantTokenLen = 4 + 43
)

var (
	_ oauth2.CoreStorage            = (*storage)(nil)
	_ oauth2.TokenRevocationStorage = (*storage)(nil)
	_ pkce.PKCERequestStorage       = (*storage)(nil)
	_ fositestorage.Transactional   = (*storage)(nil)
	_ oauth2.CoreStrategy           = (*strategy)(nil)
)

func isRefreshToken(raw string) bool { return strings.HasPrefix(raw, refreshPrefix) }

func newGrantToken(prefix string) (string, error) {
	b := make([]byte, grantBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("oauth: random: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// signature is what fosite knows a code or refresh token by.
func (s *Server) signature(raw string) string { return hex.EncodeToString(s.hasher.Hash(raw)) }

// sigBytes decodes a signature; anything else is no signature of ours.
func sigBytes(sig string) ([]byte, bool) {
	b, err := hex.DecodeString(sig)
	return b, err == nil && len(b) == 32
}

func (g *strategy) AuthorizeCodeSignature(_ context.Context, raw string) string {
	return g.s.signature(raw)
}

func (g *strategy) RefreshTokenSignature(_ context.Context, raw string) string {
	return g.s.signature(raw)
}

func (g *strategy) GenerateAuthorizeCode(context.Context, fosite.Requester) (string, string, error) {
	raw, err := newGrantToken(codePrefix)
	if err != nil {
		return "", "", err
	}
	return raw, g.s.signature(raw), nil
}

func (g *strategy) GenerateRefreshToken(context.Context, fosite.Requester) (string, string, error) {
	raw, err := newGrantToken(refreshPrefix)
	if err != nil {
		return "", "", err
	}
	return raw, g.s.signature(raw), nil
}

// ValidateAuthorizeCode checks the code's expiry (storage found it by its
// signature, so it is genuine).
func (g *strategy) ValidateAuthorizeCode(_ context.Context, req fosite.Requester, raw string) error {
	return g.validateGrantToken(req, raw, codePrefix, fosite.AuthorizeCode)
}

// ValidateRefreshToken checks the refresh token's idle expiry.
func (g *strategy) ValidateRefreshToken(_ context.Context, req fosite.Requester, raw string) error {
	return g.validateGrantToken(req, raw, refreshPrefix, fosite.RefreshToken)
}

func (g *strategy) validateGrantToken(req fosite.Requester, raw, prefix string, tt fosite.TokenType) error {
	if !strings.HasPrefix(raw, prefix) || len(raw) != grantTokenLen {
		return fosite.ErrInvalidTokenFormat
	}
	exp := req.GetSession().GetExpiresAt(tt)
	if exp.IsZero() || !g.s.now().Before(exp) {
		return fosite.ErrTokenExpired.WithHintf("The %s expired.", strings.ReplaceAll(string(tt), "_", " "))
	}
	return nil
}

// pending collects the writes of one token response, which fosite makes
// in a "transaction" (BeginTX ... Commit): the code's use or the old
// refresh token's rotation and the new refresh token, stored by Commit in
// one statement, so that two requests racing with one code or one refresh
// token cannot both succeed.
type pending struct {
	code    []byte              // the code exchanged
	rotated []byte              // the refresh token rotated
	refresh *store.RefreshToken // the new refresh token
}

type pendingKey struct{}

func (st *storage) BeginTX(ctx context.Context) (context.Context, error) {
	return context.WithValue(ctx, pendingKey{}, &pending{}), nil
}

func pendingOf(ctx context.Context) (*pending, error) {
	p, ok := ctx.Value(pendingKey{}).(*pending)
	if !ok {
		return nil, errors.New("oauth: grant write outside a transaction")
	}
	return p, nil
}

// errGrantRaced: a code or refresh token was used by another request
// between its lookup and the commit.
var errGrantRaced = errors.New("oauth: the code or refresh token was used concurrently")

// grants is the grant store; without People there is none.
func (st *storage) grants() (GrantStore, error) {
	if st.s.people == nil {
		return nil, errNotSupported
	}
	return st.s.people.Grants, nil
}

func (st *storage) Commit(ctx context.Context) error {
	p, err := pendingOf(ctx)
	if err != nil {
		return err
	}
	if p.code == nil && p.rotated == nil {
		return nil
	}
	g, err := st.grants()
	if err != nil {
		return err
	}
	switch {
	case p.code != nil:
		err = g.RedeemAuthCode(ctx, p.code, p.refresh)
	case p.rotated != nil && p.refresh != nil:
		err = g.RotateRefreshToken(ctx, p.rotated, p.refresh)
	default:
		return nil
	}
	if errors.Is(err, store.ErrConflict) {
		return errGrantRaced
	}
	if err != nil {
		return unavailable("grant store", err)
	}
	return nil
}

func (st *storage) Rollback(ctx context.Context) error {
	if p, err := pendingOf(ctx); err == nil {
		*p = pending{}
	}
	return nil
}

// grantRequest rebuilds the fosite request of a stored grant.
func (st *storage) grantRequest(ctx context.Context, id, clientID string, requestedAt time.Time, scopes, audience []string, form url.Values, sess *session) (*fosite.Request, error) {
	cl, err := st.GetClient(ctx, clientID)
	if err != nil {
		return nil, err
	}
	// A grant begun before the client was disabled or re-enabled ends,
	// as the client's tokens do.
	if !token.IssuedAfter(requestedAt, cl.(*client).c.TokensValidAfter) {
		return nil, fosite.ErrNotFound
	}
	req := fosite.NewRequest()
	req.ID = id
	req.RequestedAt = requestedAt
	req.Client = cl
	req.RequestedScope = fosite.Arguments(scopes)
	req.GrantedScope = fosite.Arguments(grantable(scopes, sess.platformAdmin))
	req.RequestedAudience = fosite.Arguments(audience)
	req.GrantedAudience = fosite.Arguments(audience)
	req.Form = form
	req.Session = sess
	return req, nil
}

func asSession(s fosite.Session) *session {
	if ss, ok := s.(*session); ok && ss != nil {
		return ss
	}
	return &session{}
}

// CreateAuthorizeCodeSession stores the code of an authorization request
// that the authorize endpoint judged (see handleAuthorize).
func (st *storage) CreateAuthorizeCodeSession(ctx context.Context, sig string, req fosite.Requester) error {
	g, err := st.grants()
	if err != nil {
		return err
	}
	b, ok := sigBytes(sig)
	sess, sok := req.GetSession().(*session)
	if !ok || !sok || sess.userID == "" {
		return errors.New("oauth: authorization code without a person")
	}
	// The form fosite hands over keeps what People.configure's
	// SanitationWhiteList names.
	err = g.CreateAuthCode(ctx, &store.AuthCode{
		Signature:     b,
		RequestID:     req.GetID(),
		ClientID:      req.GetClient().GetID(),
		UserID:        sess.userID,
		Scopes:        req.GetGrantedScopes(),
		Audience:      req.GetGrantedAudience(),
		RedirectURI:   req.GetRequestForm().Get("redirect_uri"),
		CodeChallenge: req.GetRequestForm().Get("code_challenge"),
		RequestedAt:   req.GetRequestedAt(),
		ExpiresAt:     sess.codeExpiresAt,
	})
	if err != nil {
		return unavailable("grant store", err)
	}
	return nil
}

// GetAuthorizeCodeSession returns the code's request; a used code comes
// with fosite.ErrInvalidatedAuthorizeCode (and its request, whose tokens
// fosite then revokes).
func (st *storage) GetAuthorizeCodeSession(ctx context.Context, sig string, s fosite.Session) (fosite.Requester, error) {
	g, err := st.grants()
	b, ok := sigBytes(sig)
	if err != nil || !ok {
		return nil, fosite.ErrNotFound
	}
	c, err := g.GetAuthCode(ctx, b)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fosite.ErrNotFound
	case err != nil:
		return nil, unavailable("grant store", err)
	}
	sess := asSession(s)
	sess.userID, sess.platformAdmin, sess.codeExpiresAt = c.UserID, c.PlatformAdmin, c.ExpiresAt
	form := url.Values{
		"redirect_uri":          {c.RedirectURI},
		"code_challenge":        {c.CodeChallenge},
		"code_challenge_method": {"S256"},
	}
	req, err := st.grantRequest(ctx, c.RequestID, c.ClientID, c.RequestedAt, c.Scopes, c.Audience, form, sess)
	if err != nil {
		return nil, err
	}
	if c.UsedAt != nil {
		return req, fosite.ErrInvalidatedAuthorizeCode
	}
	return req, nil
}

// InvalidateAuthorizeCodeSession marks the code used at Commit.
func (st *storage) InvalidateAuthorizeCodeSession(ctx context.Context, sig string) error {
	p, b, err := st.pendingUse(ctx, sig)
	if err != nil {
		return err
	}
	p.code = b
	return nil
}

// pendingUse returns the request's pending change and the decoded sig of
// the code or refresh token that Commit is to mark used.
func (st *storage) pendingUse(ctx context.Context, sig string) (*pending, []byte, error) {
	if _, err := st.grants(); err != nil {
		return nil, nil, err
	}
	p, err := pendingOf(ctx)
	if err != nil {
		return nil, nil, err
	}
	b, ok := sigBytes(sig)
	if !ok {
		return nil, nil, fosite.ErrNotFound
	}
	return p, b, nil
}

// The PKCE challenge is stored with its code (checkPKCE made sure there is
// one): creating the PKCE session adds nothing, and deleting it is the
// code's use.
func (st *storage) CreatePKCERequestSession(context.Context, string, fosite.Requester) error {
	return nil
}

func (st *storage) GetPKCERequestSession(ctx context.Context, sig string, s fosite.Session) (fosite.Requester, error) {
	req, err := st.GetAuthorizeCodeSession(ctx, sig, s)
	if errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		return req, nil
	}
	return req, err
}

func (st *storage) DeletePKCERequestSession(context.Context, string) error { return nil }

// CreateRefreshTokenSession stores the new refresh token at Commit.
func (st *storage) CreateRefreshTokenSession(ctx context.Context, sig, _ string, req fosite.Requester) error {
	if _, err := st.grants(); err != nil {
		return err
	}
	p, err := pendingOf(ctx)
	if err != nil {
		return err
	}
	b, ok := sigBytes(sig)
	sess, sok := req.GetSession().(*session)
	if !ok || !sok || sess.userID == "" || sess.sessionID == "" {
		return errors.New("oauth: refresh token without a person's session")
	}
	p.refresh = &store.RefreshToken{
		Signature:   b,
		FamilyID:    req.GetID(),
		ClientID:    req.GetClient().GetID(),
		UserID:      sess.userID,
		SessionID:   sess.sessionID,
		Scopes:      req.GetGrantedScopes(),
		Audience:    req.GetGrantedAudience(),
		RequestedAt: req.GetRequestedAt(),
		ExpiresAt:   sess.refreshExpiresAt,
	}
	return nil
}

// GetRefreshTokenSession returns the refresh token's request. A used or
// revoked token comes with fosite.ErrInactiveToken (and its request):
// fosite then revokes its family (reuse, RFC 9700 4.14). A token whose
// session ended, or whose user is gone, is not found.
func (st *storage) GetRefreshTokenSession(ctx context.Context, sig string, s fosite.Session) (fosite.Requester, error) {
	g, err := st.grants()
	b, ok := sigBytes(sig)
	if err != nil || !ok {
		return nil, fosite.ErrNotFound
	}
	t, err := g.GetRefreshToken(ctx, b)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fosite.ErrNotFound
	case err != nil:
		return nil, unavailable("grant store", err)
	case !t.SessionLive && t.UsedAt == nil && t.RevokedAt == nil:
		return nil, fosite.ErrNotFound
	}
	sess := asSession(s)
	sess.userID, sess.sessionID, sess.platformAdmin = t.UserID, t.SessionID, t.PlatformAdmin
	sess.refreshExpiresAt = t.ExpiresAt
	req, err := st.grantRequest(ctx, t.FamilyID, t.ClientID, t.RequestedAt, t.Scopes, t.Audience, url.Values{}, sess)
	if err != nil {
		return nil, err
	}
	if t.UsedAt != nil || t.RevokedAt != nil {
		return req, fosite.ErrInactiveToken
	}
	return req, nil
}

// RotateRefreshToken marks the presented token used at Commit.
func (st *storage) RotateRefreshToken(ctx context.Context, _ string, sig string) error {
	p, b, err := st.pendingUse(ctx, sig)
	if err != nil {
		return err
	}
	p.rotated = b
	return nil
}

// DeleteRefreshTokenSession keeps the row: a reused token stays known as
// used (its family is revoked by RevokeRefreshToken).
func (st *storage) DeleteRefreshTokenSession(context.Context, string) error { return nil }

// RevokeRefreshToken revokes the family requestID (a reused refresh token
// or a code used twice) and ends its session.
func (st *storage) RevokeRefreshToken(ctx context.Context, requestID string) error {
	if st.s.people == nil {
		return nil
	}
	return st.s.revokeFamily(ctx, requestID, ActionReuse)
}

// RevokeAccessToken: a grant's access tokens end with its token session,
// which RevokeRefreshToken ends (sid).
func (st *storage) RevokeAccessToken(context.Context, string) error { return nil }

// revokeRefreshToken is RFC 7009 for a refresh token: its family is
// revoked and its session ended (helixctl logout). Unknown tokens are
// nothing to revoke (200).
func (s *Server) revokeRefreshToken(ctx context.Context, raw string, c fosite.Client) error {
	if s.people == nil {
		return nil
	}
	b, _ := sigBytes(s.signature(raw))
	t, err := s.people.Grants.GetRefreshToken(ctx, b)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return unavailable("grant store", err)
	case t.ClientID != c.GetID():
		return rfcError(fosite.ErrUnauthorizedClient, "The token was not issued to this client.")
	}
	return s.revokeFamily(ctx, t.FamilyID, ActionLogout)
}
