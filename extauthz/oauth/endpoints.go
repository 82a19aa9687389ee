package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/store"
)

// Grant types, as the token endpoint's grant_type names them.
const (
	grantClientCredentials = store.GrantClientCredentials
	grantAuthorizationCode = store.GrantAuthorizationCode
	grantRefreshToken      = store.GrantRefreshToken
)

// readForm parses the urlencoded body of a POST endpoint: at most
// MaxBodyBytes, no query string (credentials and tokens stay out of URLs),
// no repeated parameter (RFC 6749 3.2).
func readForm(w http.ResponseWriter, r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return invalidRequest("The request body must be application/x-www-form-urlencoded.")
	}
	if r.URL.RawQuery != "" {
		return invalidRequest("Parameters must be sent in the request body, not in the URL.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return invalidRequest(fmt.Sprintf("The request body exceeds %d bytes.", MaxBodyBytes))
		}
		return invalidRequest("The request body is not a valid form.")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return invalidRequest(fmt.Sprintf("Parameter %s is included more than once.", quoteParam(k)))
		}
	}
	return nil
}

// quoteParam names a parameter in an error without echoing much garbage.
func quoteParam(k string) string {
	if len(k) > 40 {
		return "(a long name)"
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x21 || c > 0x7e || c == '\'' {
			return "(a name with odd characters)"
		}
	}
	return "'" + k + "'"
}

func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{
		Error:       codeInvalidRequest,
		Description: fmt.Sprintf("Method %s is not allowed here; use %s.", quoteParam(r.Method), strings.Join(methods, " or ")),
	})
	return false
}

// handleToken is the token endpoint (RFC 6749 3.2, 4.4).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := s.token(w, s.withCaller(r))
	s.metrics.observe(r.Context(), result, time.Since(start))
}

// token serves one token request and returns the metrics result.
func (s *Server) token(w http.ResponseWriter, r *http.Request) string {
	if !allowMethods(w, r, http.MethodPost) {
		return codeInvalidRequest
	}
	if err := readForm(w, r); err != nil {
		return s.writeError(w, r, err)
	}
	// fosite answers an unknown grant with invalid_request; RFC 6749 5.2
	// wants unsupported_grant_type.
	gt := r.PostForm.Get("grant_type")
	switch gt {
	case "":
		return s.writeError(w, r, invalidRequest("The grant_type parameter is missing."))
	case grantClientCredentials:
	case grantAuthorizationCode, grantRefreshToken:
		if s.people == nil {
			return s.writeError(w, r, rfcError(fosite.ErrUnsupportedGrantType, "Only the client_credentials grant is supported."))
		}
	default:
		return s.writeError(w, r, rfcError(fosite.ErrUnsupportedGrantType, "The grant_type must be "+strings.Join(s.grantTypes(), ", ")+"."))
	}

	ctx := r.Context()
	ar, err := s.provider.NewAccessRequest(ctx, r, &session{})
	if err != nil {
		return s.writeError(w, r, err)
	}
	var tokenSession string
	switch gt {
	case grantClientCredentials:
		// fosite checked that requested scopes and audiences are the
		// client's; without a scope parameter the client gets all its
		// scopes (RFC 6749 3.3 lets the server choose; the response names
		// them).
		scopes := ar.GetRequestedScopes()
		if len(scopes) == 0 {
			scopes = ar.GetClient().GetScopes()
		}
		for _, sc := range scopes {
			ar.GrantScope(sc)
		}
		aud := ar.GetRequestedAudience()
		if len(aud) == 0 {
			aud = []string{s.audience}
		}
		for _, a := range aud {
			ar.GrantAudience(a)
		}
	case grantAuthorizationCode:
		// The grant's scopes and audience are the code's; its tokens live
		// in a new token session.
		if tokenSession, err = s.startTokenSession(r, ar); err != nil {
			return s.writeError(w, r, err)
		}
	}

	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		if tokenSession != "" {
			// Nothing was issued: the session goes.
			if err := s.people.Sessions.End(context.WithoutCancel(ctx), tokenSession); err != nil {
				s.log.WarnContext(ctx, "oauth: end unused token session", "err", err)
			}
		}
		if errors.Is(err, errGrantRaced) {
			// Two uses of one code or refresh token at once: reuse, as if
			// one came after the other; what the first use gave is
			// revoked (RFC 6749 4.1.2, RFC 9700 4.14).
			if err := s.revokeFamily(ctx, ar.GetID(), ActionReuse); err != nil {
				return s.writeError(w, r, err)
			}
			err = rfcError(fosite.ErrInvalidGrant, "The authorization code or refresh token was already used.")
		}
		return s.writeError(w, r, err)
	}
	resp.SetTokenType("Bearer")
	resp.SetExpiresIn(s.lifetime)
	// fosite writes "scope": "" when nothing was granted.
	if fr, ok := resp.(*fosite.AccessResponse); ok {
		if sc, _ := fr.Extra["scope"].(string); sc == "" {
			delete(fr.Extra, "scope")
		}
	}
	s.provider.WriteAccessResponse(ctx, w, ar, resp)
	if tokenSession != "" {
		s.record(ctx, audit.Event{Actor: "user:" + ar.GetSession().(*session).userID, Action: ActionGrant,
			Target: "session:" + tokenSession, Result: audit.ResultSuccess,
			Detail: map[string]string{"client_id": ar.GetClient().GetID(), "scope": strings.Join(ar.GetGrantedScopes(), " ")}})
	}
	s.log.DebugContext(ctx, "oauth: token issued", "client_id", ar.GetClient().GetID(), "grant_type", gt)
	return "issued"
}

// grantTypes are the grant types this server supports.
func (s *Server) grantTypes() []string {
	if s.people == nil {
		return []string{grantClientCredentials}
	}
	return []string{grantClientCredentials, grantAuthorizationCode, grantRefreshToken}
}

// introspection is the RFC 7662 answer for an active token.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id"`
	Subject   string   `json:"sub"`
	Audience  []string `json:"aud"`
	Issuer    string   `json:"iss"`
	ExpiresAt int64    `json:"exp"`
	IssuedAt  int64    `json:"iat"`
	NotBefore int64    `json:"nbf,omitempty"`
	JTI       string   `json:"jti"`
	TokenType string   `json:"token_type"`
}

// handleIntrospect is the introspection endpoint (RFC 7662). Callers are
// clients authenticated with HTTP Basic; a token is active when it
// verifies (signature, iss, exp, nbf), its jti is not revoked and its
// client is enabled. A caller hears about its own tokens, or about any
// with ScopeIntrospect.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	if err := readForm(w, r); err != nil {
		s.writeError(w, r, err)
		return
	}
	// fosite would also take a bearer token (even from the form) as the
	// caller's credential; only client_secret_basic is offered.
	if _, _, ok := r.BasicAuth(); !ok {
		s.writeError(w, r, rfcError(fosite.ErrInvalidClient, "Authenticate with HTTP Basic (client_secret_basic)."))
		return
	}
	if r.PostForm.Has("access_token") || r.PostForm.Has("client_secret") {
		s.writeError(w, r, invalidRequest("The request uses more than one authentication method."))
		return
	}
	if r.PostForm.Get("token") == "" {
		s.writeError(w, r, invalidRequest("The token parameter is missing."))
		return
	}

	ctx := r.Context()
	resp, err := s.provider.NewIntrospectionRequest(ctx, r, &session{})
	h := w.Header()
	switch {
	case err == nil:
	case isUnavailable(err):
		s.writeError(w, r, err)
		return
	case errors.Is(err, fosite.ErrInactiveToken):
		writeInactive(w)
		return
	default:
		s.writeError(w, r, err)
		return
	}
	sess, ok := resp.GetAccessRequester().GetSession().(*session)
	if !ok || !resp.IsActive() {
		s.writeError(w, r, errors.New("oauth: introspection returned no session"))
		return
	}
	c := sess.claims
	// fosite authenticated the caller by HTTP Basic, so the user name
	// decodes. RFC 7662 section 4: another client's token is described
	// only to holders of ScopeIntrospect; to others it is inactive, as an
	// unknown token is, so that its existence does not leak.
	id, _, _ := r.BasicAuth()
	if caller, _ := url.QueryUnescape(id); caller != c.ClientID {
		cl, err := s.client(ctx, caller)
		switch {
		case isUnavailable(err):
			s.writeError(w, r, err)
			return
		case err != nil || !slices.Contains(cl.Scopes, ScopeIntrospect):
			s.log.DebugContext(ctx, "oauth: introspection of another client's token refused", "client_id", caller)
			writeInactive(w)
			return
		}
	}
	out := introspection{
		Active:    true,
		Scope:     strings.Join(c.Scopes, " "),
		ClientID:  c.ClientID,
		Subject:   c.Subject,
		Audience:  c.Audience,
		Issuer:    c.Issuer,
		ExpiresAt: c.ExpiresAt.Unix(),
		IssuedAt:  c.IssuedAt.Unix(),
		JTI:       c.JTI,
		TokenType: "Bearer",
	}
	if !c.NotBefore.IsZero() {
		out.NotBefore = c.NotBefore.Unix()
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, out)
}

// writeInactive answers an introspection with {"active": false} and
// nothing else (RFC 7662 2.2).
func writeInactive(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, struct {
		Active bool `json:"active"`
	}{})
}

// handleRevoke is the revocation endpoint (RFC 7009).
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	if err := readForm(w, r); err != nil {
		s.writeError(w, r, err)
		return
	}
	if r.PostForm.Get("token") == "" {
		s.writeError(w, r, invalidRequest("The token parameter is missing."))
		return
	}
	r = s.withCaller(r)
	if err := s.provider.NewRevocationRequest(r.Context(), r); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
}

// metadata is the RFC 8414 document.
type metadata struct {
	Issuer                           string   `json:"issuer"`
	AuthorizationEndpoint            string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                    string   `json:"token_endpoint"`
	JWKSURI                          string   `json:"jwks_uri"`
	IntrospectionEndpoint            string   `json:"introspection_endpoint"`
	RevocationEndpoint               string   `json:"revocation_endpoint"`
	ScopesSupported                  []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	GrantTypesSupported              []string `json:"grant_types_supported"`
	TokenEndpointAuthMethods         []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethods []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethods    []string `json:"revocation_endpoint_auth_methods_supported"`
	AccessTokenSigningAlgValues      []string `json:"access_token_signing_alg_values_supported"`
	CodeChallengeMethods             []string `json:"code_challenge_methods_supported,omitempty"`
	ResponseModesSupported           []string `json:"response_modes_supported,omitempty"`
}

func (s *Server) buildMetadata() ([]byte, error) {
	m := metadata{
		Issuer:                s.issuer,
		TokenEndpoint:         s.issuer + PathToken,
		JWKSURI:               s.issuer + PathJWKS,
		IntrospectionEndpoint: s.issuer + PathIntrospect,
		RevocationEndpoint:    s.issuer + PathRevoke,
		ScopesSupported:       s.scopes,
		// No authorization endpoint, hence no response types.
		ResponseTypesSupported:           []string{},
		GrantTypesSupported:              s.grantTypes(),
		TokenEndpointAuthMethods:         []string{"client_secret_basic", "client_secret_post"},
		IntrospectionEndpointAuthMethods: []string{"client_secret_basic"},
		RevocationEndpointAuthMethods:    []string{"client_secret_basic", "client_secret_post"},
		AccessTokenSigningAlgValues:      []string{"ES256", "RS256"},
	}
	if s.people != nil {
		m.AuthorizationEndpoint = s.issuer + PathAuthorize
		m.ResponseTypesSupported = []string{"code"}
		m.ResponseModesSupported = []string{"query"}
		m.CodeChallengeMethods = []string{"S256"}
		// Public clients (helixctl) authenticate with their client_id
		// alone, and prove the grant with PKCE or the refresh token.
		m.TokenEndpointAuthMethods = append(m.TokenEndpointAuthMethods, "none")
		m.RevocationEndpointAuthMethods = append(m.RevocationEndpointAuthMethods, "none")
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("oauth: metadata: %w", err)
	}
	return b, nil
}

// handleMetadata serves the authorization server metadata (RFC 8414).
func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, json.RawMessage(s.metadata))
}

// handleJWKS passes the published key set through. Its cache lifetime is
// well under the time a new key is published before it signs.
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	raw, err := s.keys.JWKS(r.Context())
	if err != nil {
		s.writeError(w, r, unavailable("jwks", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(raw)
}

// handleNotFound answers unknown paths in JSON like everything else.
func handleNotFound(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Description: "No such endpoint."})
}
