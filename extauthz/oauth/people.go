package oauth

// OAuth for people: the authorization-code grant with PKCE (RFC 7636, S256
// only) for first-party apps (helixctl, the portal), and refresh tokens.
//
//   - GET /oauth2/authorize needs a browser session (People.Resolve puts
//     the person in the request's context); without one the browser is sent
//     to People.LoginPath with return_to. First-party apps get no consent
//     screen: only admins register authorization-code clients.
//   - The code (60 s, single use) remembers the person, the scopes and the
//     PKCE challenge; exchanging it starts a token session
//     (People.Sessions), whose id every access token of the grant carries
//     as sid. Ending the session (logout, reuse, erasure) revokes "sid:"+id,
//     which Check honours within the notification delay.
//   - Refresh tokens rotate on every use; presenting a used one again
//     revokes the whole family and ends its session (RFC 9700 4.14). A code
//     used twice does the same to the tokens it gave (RFC 6749 4.1.2).
//   - Codes and refresh tokens are random 256-bit values; the database keeps
//     their HMAC only (secret.Hasher, keyed with the pepper).
//   - helix:admin is granted only to a platform admin, at the grant and at
//     every refresh (a refresh by someone who lost the flag loses it).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/pkce"

	"github.com/helixflow/helixflow/extauthz/audit"
	psession "github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/token"
	"github.com/helixflow/helixflow/internal/wire"
)

// Scopes of people's tokens.
const (
	// ScopeAccount lets a person's bearer token use the people's API
	// (/api/v1).
	ScopeAccount = "account"
	// ScopeAdmin lets a platform admin's token use the admin API.
	ScopeAdmin = "helix:admin"
)

// Lifetimes of people's grants.
const (
	// CodeLifetime: an authorization code is exchanged within it or never.
	CodeLifetime = 60 * time.Second
	// DefaultRefreshTokenLifetime is a refresh token's idle lifetime
	// (--refresh-token-lifetime): unused that long, it expires; the token
	// session bounds the whole chain.
	DefaultRefreshTokenLifetime = 7 * 24 * time.Hour
)

// DefaultLoginPath is where a browser without a session is sent.
const DefaultLoginPath = "/login"

// HelixctlClientID is the first-party public client of helixctl login.
const HelixctlClientID = wire.HelixctlClientID

// HelixctlClient is helixctl's client as helix-authz ensures it at start
// (store.EnsureClient), with the gateway's default plan: public, loopback
// redirect (any port, RFC 8252 7.3), every scope a person may hold.
func HelixctlClient(plan string) *store.Client {
	return &store.Client{
		ID:           HelixctlClientID,
		Name:         "helixctl (command line)",
		Public:       true,
		RedirectURIs: []string{"http://127.0.0.1" + wire.HelixctlCallbackPath},
		GrantTypes:   []string{store.GrantAuthorizationCode, store.GrantRefreshToken},
		Scopes:       []string{ScopeAccount, "models:infer", "models:read", ScopeAdmin},
		Models:       []string{"*"},
		Plan:         plan,
		Enabled:      true,
	}
}

// GrantStore keeps codes and refresh tokens (store.Store).
type GrantStore interface {
	CreateAuthCode(ctx context.Context, c *store.AuthCode) error
	GetAuthCode(ctx context.Context, sig []byte) (*store.AuthCode, error)
	RedeemAuthCode(ctx context.Context, sig []byte, rt *store.RefreshToken) error
	GetRefreshToken(ctx context.Context, sig []byte) (*store.RefreshToken, error)
	RotateRefreshToken(ctx context.Context, old []byte, next *store.RefreshToken) error
	RevokeRefreshFamily(ctx context.Context, familyID string) ([]store.RevokedGrant, error)
}

// TokenSessions keeps the sessions grants live in (session.Manager).
type TokenSessions interface {
	CreateTokenSession(ctx context.Context, userID, clientID, source, userAgent string) (string, error)
	Live(ctx context.Context, sessionID string) (userID string, ok bool, err error)
	End(ctx context.Context, sessionID string) error
}

// People configures OAuth for people.
type People struct {
	Grants   GrantStore
	Sessions TokenSessions
	// Resolve puts the caller's session.Principal in the request's
	// context (session.Manager.Middleware); /oauth2/authorize takes a
	// browser session (cookie) only.
	Resolve func(http.Handler) http.Handler
	// RefreshTokenLifetime is the idle lifetime of refresh tokens
	// (DefaultRefreshTokenLifetime when zero).
	RefreshTokenLifetime time.Duration
	// LoginPath is the login page (DefaultLoginPath when empty).
	LoginPath string
	// Source is the caller's address as the deployment sees it
	// (sourcelimit.Sources); the TCP peer when nil.
	Source func(*http.Request) string
	// Audit records grants, logouts and reuse (nil: none).
	Audit audit.Recorder
}

func (p *People) withDefaults() (*People, error) {
	c := *p
	switch {
	case c.Grants == nil:
		return nil, errors.New("oauth: people: no grant store")
	case c.Sessions == nil:
		return nil, errors.New("oauth: people: no session store")
	case c.Resolve == nil:
		return nil, errors.New("oauth: people: no session resolver")
	case c.RefreshTokenLifetime < 0:
		return nil, errors.New("oauth: people: negative refresh token lifetime")
	case c.RefreshTokenLifetime > 0 && c.RefreshTokenLifetime < time.Minute:
		return nil, errors.New("oauth: people: refresh token lifetime under 1m")
	}
	if c.RefreshTokenLifetime == 0 {
		c.RefreshTokenLifetime = DefaultRefreshTokenLifetime
	}
	if c.LoginPath == "" {
		c.LoginPath = DefaultLoginPath
	}
	if c.Source == nil {
		c.Source = func(r *http.Request) string { return r.RemoteAddr }
	}
	return &c, nil
}

// configure adds the authorization-code, refresh and PKCE handlers.
func (p *People) configure(fc *fosite.Config, st *storage, strategy *strategy) {
	fc.AuthorizeCodeLifespan = CodeLifetime
	fc.RefreshTokenLifespan = p.RefreshTokenLifetime
	// No scope is needed to get a refresh token (fosite's default asks
	// for "offline"): the client's grant types decide.
	fc.RefreshTokenScopes = []string{}
	fc.EnforcePKCE = true
	fc.EnablePKCEPlainChallengeMethod = false
	// https, or http on a loopback host only; no custom schemes.
	fc.RedirectSecureChecker = fosite.IsRedirectURISecureStrict
	// What the stored code keeps of the authorization request's form.
	fc.SanitationWhiteList = []string{"redirect_uri", "code_challenge"}
	code := &oauth2.AuthorizeExplicitGrantHandler{
		AccessTokenStrategy:    strategy,
		RefreshTokenStrategy:   strategy,
		AuthorizeCodeStrategy:  strategy,
		CoreStorage:            st,
		TokenRevocationStorage: st,
		Config:                 fc,
	}
	pk := &pkce.Handler{AuthorizeCodeStrategy: strategy, Storage: st, Config: fc}
	fc.AuthorizeEndpointHandlers.Append(code)
	fc.AuthorizeEndpointHandlers.Append(pk)
	fc.TokenEndpointHandlers.Append(code)
	fc.TokenEndpointHandlers.Append(&oauth2.RefreshTokenGrantHandler{
		AccessTokenStrategy:    strategy,
		RefreshTokenStrategy:   strategy,
		TokenRevocationStorage: st,
		Config:                 fc,
	})
	fc.TokenEndpointHandlers.Append(pk)
}

// grantable drops helix:admin from scopes unless the person is a platform
// admin now.
func grantable(scopes []string, platformAdmin bool) []string {
	if platformAdmin {
		return slices.Clone(scopes)
	}
	return slices.DeleteFunc(slices.Clone(scopes), func(s string) bool { return s == ScopeAdmin })
}

// handleAuthorize is the authorization endpoint (RFC 6749 4.1.1, RFC 7636).
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet) {
		return
	}
	// RFC 6749 3.1: no parameter more than once (which of two challenges
	// or redirect URIs would count is exactly what an attacker plays on).
	q := r.URL.Query()
	for k, v := range q {
		if len(v) > 1 {
			s.writeError(w, r, invalidRequest(fmt.Sprintf("Parameter %s is included more than once.", quoteParam(k))))
			return
		}
	}
	// The code comes back in the redirect URI's query only: fosite's
	// form_post page runs inline script, and the fragment and JWT modes
	// are not for the code flow here.
	if rm := q.Get("response_mode"); rm != "" && rm != string(fosite.ResponseModeQuery) {
		s.writeError(w, r, invalidRequest("The response_mode must be query (or left out)."))
		return
	}
	ctx := r.Context()
	ar, err := s.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		s.writeAuthorizeError(w, r, ar, err)
		return
	}
	// fosite accepts a few variants of a registered loopback URI (another
	// scheme case, userinfo) and a missing redirect_uri; this server wants
	// the URI exactly, but for the port of a native app's loopback URI.
	c, ok := ar.GetClient().(*client)
	if !ok || !redirectAllowed(c.c, ar.GetRequestForm().Get("redirect_uri")) {
		s.writeError(w, r, invalidRequest("The redirect_uri parameter is missing or is not a redirect URI registered for this client."))
		return
	}
	// PKCE is checked here, before the person is asked to sign in for
	// nothing; fosite's PKCE handler checks it again.
	if err := checkPKCE(ar.GetRequestForm()); err != nil {
		s.writeAuthorizeError(w, r, ar, err)
		return
	}
	p, ok := psession.PrincipalFrom(ctx)
	if !ok || p.Via != psession.ViaCookie {
		s.redirectToLogin(w, r)
		return
	}
	scopes := ar.GetRequestedScopes()
	if len(scopes) == 0 {
		scopes = c.GetScopes()
	}
	for _, sc := range grantable(scopes, p.PlatformAdmin) {
		ar.GrantScope(sc)
	}
	aud := ar.GetRequestedAudience()
	if len(aud) == 0 {
		aud = []string{s.audience}
	}
	for _, a := range aud {
		ar.GrantAudience(a)
	}
	sess := &session{userID: p.UserID, platformAdmin: p.PlatformAdmin}
	resp, err := s.provider.NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		s.writeAuthorizeError(w, r, ar, err)
		return
	}
	s.log.DebugContext(ctx, "oauth: authorization code issued", "client_id", c.GetID(), "user_id", p.UserID)
	s.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// writeAuthorizeError sends err to the client's redirect URI when that is
// known to be one of its own (RFC 6749 4.1.2.1), else answers the browser.
func (s *Server) writeAuthorizeError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, err error) {
	if isUnavailable(err) || ar == nil || !ar.IsRedirectURIValid() {
		s.writeError(w, r, err)
		return
	}
	c, ok := ar.GetClient().(*client)
	if !ok || !redirectAllowed(c.c, ar.GetRequestForm().Get("redirect_uri")) {
		s.writeError(w, r, err)
		return
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.ErrorField == codeServerError {
		s.log.ErrorContext(r.Context(), "oauth: authorization failed", "err", err, "debug", rfc.Debug())
	}
	s.provider.WriteAuthorizeError(r.Context(), w, ar, err)
}

// redirectToLogin sends a browser without a session to the login page,
// which returns it here afterwards.
func (s *Server) redirectToLogin(w http.ResponseWriter, r *http.Request) {
	target := s.people.LoginPath + "?" + url.Values{"return_to": {r.URL.RequestURI()}}.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
}

// pkceChallengeLen is the length of an S256 challenge: BASE64URL of 32
// bytes without padding.
const pkceChallengeLen = 43

// checkPKCE refuses an authorization request without an S256 challenge
// (plain is refused: RFC 9700 2.1.1).
func checkPKCE(form url.Values) error {
	challenge, method := form.Get("code_challenge"), form.Get("code_challenge_method")
	switch {
	case challenge == "":
		return invalidRequest("The code_challenge parameter is missing: PKCE with code_challenge_method=S256 is required.")
	case method != "S256":
		return invalidRequest("The code_challenge_method must be S256 (plain is not allowed).")
	case len(challenge) != pkceChallengeLen || !isBase64URL(challenge):
		return invalidRequest(fmt.Sprintf("The code_challenge must be %d base64url characters (BASE64URL(SHA-256(code_verifier))).", pkceChallengeLen))
	}
	return nil
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// startTokenSession begins the token session an authorization-code grant
// lives in, before its tokens are minted (they carry its id).
func (s *Server) startTokenSession(r *http.Request, ar fosite.AccessRequester) (string, error) {
	sess, ok := ar.GetSession().(*session)
	if !ok || sess.userID == "" {
		return "", errors.New("oauth: code grant without a person")
	}
	sid, err := s.people.Sessions.CreateTokenSession(r.Context(), sess.userID, ar.GetClient().GetID(),
		s.people.Source(r), r.UserAgent())
	if err != nil {
		return "", unavailable("token session", err)
	}
	sess.sessionID = sid
	return sid, nil
}

// revokeFamily revokes every refresh token of a grant and ends its token
// session, which ends its access tokens (sid) too. action names why, for
// the audit trail: ActionLogout, or ActionReuse (denied: a spent code or
// refresh token came back).
func (s *Server) revokeFamily(ctx context.Context, familyID, action string) error {
	grants, err := s.people.Grants.RevokeRefreshFamily(ctx, familyID)
	if err != nil {
		return unavailable("revoke refresh tokens", err)
	}
	for _, g := range grants {
		if err := s.people.Sessions.End(ctx, g.SessionID); err != nil {
			return unavailable("end token session", err)
		}
		result := audit.ResultSuccess
		if action == ActionReuse {
			result = audit.ResultDenied
		}
		s.record(ctx, audit.Event{Actor: "user:" + g.UserID, Action: action, Target: "session:" + g.SessionID,
			Result: result, Detail: map[string]string{"client_id": g.ClientID}})
	}
	s.log.InfoContext(ctx, "oauth: refresh token family revoked", "family", familyID, "sessions", len(grants), "why", action)
	return nil
}

// Audit actions of people's grants.
const (
	// ActionGrant: a code was exchanged; a token session began.
	ActionGrant = "oauth.grant"
	// ActionLogout: a refresh token was revoked; its session ended.
	ActionLogout = "oauth.logout"
	// ActionReuse: a spent code or refresh token came back; its grant
	// ended (RFC 6749 4.1.2, RFC 9700 4.14).
	ActionReuse = "oauth.reuse"
)

// callerKey carries the token or revocation request's source and user
// agent to the audit events fosite's storage calls lead to.
type callerKey struct{}

type caller struct{ source, userAgent string }

func (s *Server) withCaller(r *http.Request) *http.Request {
	if s.people == nil {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{s.people.Source(r), r.UserAgent()}))
}

// record appends e to the audit trail; a failure is logged, never the
// caller's failure (the grant already happened).
func (s *Server) record(ctx context.Context, e audit.Event) {
	if s.people == nil || s.people.Audit == nil {
		return
	}
	if c, ok := ctx.Value(callerKey{}).(caller); ok {
		e.Source, e.UserAgent = c.source, c.userAgent
	}
	if err := s.people.Audit.Record(ctx, e); err != nil {
		s.log.WarnContext(ctx, "oauth: audit event not recorded", "action", e.Action, "err", err)
	}
}

// VerifyUserToken implements session.BearerVerifier: raw is a person's
// access token for this server's audience, not revoked (jti, sid), with
// scope account, whose client is enabled and whose token session lives.
// A store it cannot ask makes the error wrap session.ErrUnavailable too.
func (s *Server) VerifyUserToken(ctx context.Context, raw string) (userID, sessionID string, scopes []string, err error) {
	defer func() {
		if isUnavailable(err) {
			err = fmt.Errorf("%w: %w", psession.ErrUnavailable, err)
		}
	}()
	if s.people == nil {
		return "", "", nil, fmt.Errorf("%w: people's tokens are off", token.ErrInvalidToken)
	}
	c, err := s.verify.verify(ctx, raw)
	if err != nil {
		return "", "", nil, err
	}
	switch {
	case !slices.Contains(c.Audience, s.audience):
		return "", "", nil, fmt.Errorf("%w: wrong audience", token.ErrInvalidToken)
	case c.SessionID == "":
		return "", "", nil, fmt.Errorf("%w: not a person's token", token.ErrInvalidToken)
	case !slices.Contains(c.Scopes, ScopeAccount):
		return "", "", nil, fmt.Errorf("%w: no scope %s", token.ErrInvalidToken, ScopeAccount)
	}
	switch revoked, err := s.isRevoked(ctx, c); {
	case err != nil:
		return "", "", nil, err
	case revoked:
		return "", "", nil, fmt.Errorf("%w: revoked", token.ErrInvalidToken)
	}
	cl, err := s.client(ctx, c.ClientID)
	switch {
	case isUnavailable(err):
		return "", "", nil, err
	case err != nil:
		return "", "", nil, fmt.Errorf("%w: client disabled or gone", token.ErrInvalidToken)
	case !token.IssuedAfter(c.IssuedAt, cl.TokensValidAfter):
		return "", "", nil, fmt.Errorf("%w: issued before the client's cutoff", token.ErrInvalidToken)
	}
	uid, live, err := s.people.Sessions.Live(ctx, c.SessionID)
	if err != nil {
		return "", "", nil, unavailable("token session", err)
	}
	if !live || uid != c.Subject {
		return "", "", nil, fmt.Errorf("%w: session ended", token.ErrInvalidToken)
	}
	return c.Subject, c.SessionID, slices.Clone(c.Scopes), nil
}

var _ psession.BearerVerifier = (*Server)(nil)
