// Package oauth is helix-authz's OAuth2 authorization server: the
// client-credentials grant (RFC 6749 4.4), token introspection (RFC 7662),
// token revocation (RFC 7009), server metadata (RFC 8414) and the JWKS;
// with Config.People, also OAuth for people: the authorization-code grant
// with PKCE (S256 only) for first-party apps such as helixctl, and refresh
// tokens that rotate on every use (see people.go).
//
// fosite does the protocol work: it parses token requests, authenticates
// clients (client_secret_basic and client_secret_post, with secret.Hasher),
// checks requested scopes and audiences with exact matching, and runs
// introspection through its CoreValidator, which looks every token up in
// storage and so honours revocation. What fosite gets from us:
//
//   - an access-token strategy (oauth2.AccessTokenStrategy) that issues
//     RFC 9068 JWTs with token.Sign, the same code whose output
//     token.Verifier checks, so issuing and verifying cannot drift apart.
//     fosite's own JWT strategy writes typ "JWT", a "scp" list and no
//     client_id, which RFC 9068 verifiers refuse;
//   - a storage adapter that keeps nothing per token (a JWT carries its own
//     state): looking a token up means verifying it against the JWKS and
//     asking Revocations whether its jti was revoked;
//   - a revocation handler that records the jti with the token's exp, since
//     fosite's handler revokes stored grants by request id, which a
//     stateless token does not have; a refresh token revokes its family and
//     ends its session.
//
// When a store reports store.ErrUnavailable (or the signing key cannot be
// had) every endpoint answers 503 temporarily_unavailable: no token is
// issued, and no token is called active or inactive, without the facts.
package oauth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/token"
	"github.com/helixflow/helixflow/internal/netaddr"
)

// Token lifetimes.
const (
	DefaultTokenLifetime = 5 * time.Minute
	MaxTokenLifetime     = token.MaxLifetime
)

// MaxBodyBytes bounds request bodies of the POST endpoints.
const MaxBodyBytes = 64 << 10

// Endpoint paths, relative to the issuer.
const (
	PathAuthorize  = "/oauth2/authorize"
	PathToken      = "/oauth2/token"
	PathIntrospect = "/oauth2/introspect"
	PathRevoke     = "/oauth2/revoke"
	PathMetadata   = "/.well-known/oauth-authorization-server"
	PathJWKS       = "/.well-known/jwks.json"
)

// ScopeIntrospect lets a client introspect tokens issued to other clients
// (RFC 7662 section 4); without it, introspection tells a client about its
// own tokens only, and answers {"active": false} for any other.
const ScopeIntrospect = "helix:introspect"

// ClientStore finds OAuth2 clients. It returns store.ErrNotFound for an
// unknown id and store.ErrUnavailable when the database cannot be reached.
type ClientStore interface {
	GetClient(ctx context.Context, id string) (*store.Client, error)
}

// RevocationStore keeps the ids of revoked tokens until they expire.
// Errors wrap store.ErrUnavailable when the database cannot be reached.
type RevocationStore interface {
	RevokeToken(ctx context.Context, jti string, expiresAt time.Time) error
	IsRevoked(ctx context.Context, jti string) (bool, error)
}

// KeyProvider gives the key that signs now and the published key set.
type KeyProvider interface {
	SigningKey(ctx context.Context) (kid, alg string, key crypto.Signer, err error)
	JWKS(ctx context.Context) ([]byte, error)
}

// Config configures a Server.
type Config struct {
	// Issuer is the iss of every token and the base of the endpoint URLs
	// in the metadata (the Handler is served at its root). https, or http
	// on a loopback host for local runs; no query or fragment.
	Issuer string
	// DefaultAudience is the aud of tokens whose request names none.
	DefaultAudience string
	// TokenLifetime of access tokens (DefaultTokenLifetime when zero; at
	// most MaxTokenLifetime).
	TokenLifetime time.Duration
	Clients       ClientStore
	Revocations   RevocationStore
	Keys          KeyProvider
	// Hasher checks client secrets against store.Client.SecretHash.
	Hasher *secret.Hasher
	// ScopesSupported is published in the metadata when set.
	ScopesSupported []string
	// Logger (slog.Default when nil). Secrets and tokens are never logged.
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Registerer receives the metrics when set.
	Registerer prometheus.Registerer
	// People turns on OAuth for people (authorization code, refresh
	// tokens); nil: only the client-credentials grant.
	People *People
}

// Server is the authorization server. It is safe for concurrent use.
type Server struct {
	issuer   string
	audience string
	lifetime time.Duration
	clients  ClientStore
	revoked  RevocationStore
	keys     KeyProvider
	scopes   []string
	log      *slog.Logger
	now      func() time.Time
	provider *fosite.Fosite
	verify   *verifier
	metrics  *metrics
	metadata []byte
	hasher   *secret.Hasher
	// people is nil without OAuth for people.
	people *People
}

// errUnavailable marks failures of a backing service (database, signing
// keys): the request cannot be judged, so the answer is 503.
var errUnavailable = errors.New("oauth: temporarily unavailable")

func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", errUnavailable, what, err)
}

func isUnavailable(err error) bool {
	return errors.Is(err, errUnavailable) || errors.Is(err, store.ErrUnavailable)
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	issuer, err := checkIssuer(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.DefaultAudience == "":
		return nil, errors.New("oauth: empty default audience")
	case cfg.Clients == nil:
		return nil, errors.New("oauth: no client store")
	case cfg.Revocations == nil:
		return nil, errors.New("oauth: no revocation store")
	case cfg.Keys == nil:
		return nil, errors.New("oauth: no key provider")
	case cfg.Hasher == nil:
		return nil, errors.New("oauth: no secret hasher")
	case cfg.TokenLifetime < 0:
		return nil, errors.New("oauth: negative token lifetime")
	case cfg.TokenLifetime > MaxTokenLifetime:
		return nil, fmt.Errorf("oauth: token lifetime %s exceeds %s", cfg.TokenLifetime, MaxTokenLifetime)
	case cfg.TokenLifetime > 0 && cfg.TokenLifetime < time.Second:
		return nil, errors.New("oauth: token lifetime under 1s")
	}
	s := &Server{
		issuer:   issuer,
		audience: cfg.DefaultAudience,
		lifetime: cfg.TokenLifetime,
		clients:  cfg.Clients,
		revoked:  cfg.Revocations,
		keys:     cfg.Keys,
		scopes:   append([]string(nil), cfg.ScopesSupported...),
		log:      cfg.Logger,
		now:      cfg.Now,
		hasher:   cfg.Hasher,
	}
	if cfg.People != nil {
		p, err := cfg.People.withDefaults()
		if err != nil {
			return nil, err
		}
		s.people = p
	}
	if s.lifetime == 0 {
		s.lifetime = DefaultTokenLifetime
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.verify = newVerifier(issuer, cfg.Keys, s.now)
	if s.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	if s.metadata, err = s.buildMetadata(); err != nil {
		return nil, err
	}

	fc := &fosite.Config{
		AccessTokenLifespan:      s.lifetime,
		AccessTokenIssuer:        issuer,
		TokenURL:                 issuer + PathToken,
		ScopeStrategy:            fosite.ExactScopeStrategy,
		AudienceMatchingStrategy: fosite.ExactAudienceMatchingStrategy,
		ClientSecretsHasher:      cfg.Hasher.Fosite(),
		// Introspection answers for access tokens only.
		DisableRefreshTokenValidation: true,
		SendDebugMessagesToClients:    false,
	}
	st := &storage{s: s}
	strategy := &strategy{s: s}
	fc.ClientAuthenticationStrategy = s.authenticateClient
	s.provider = fosite.NewOAuth2Provider(st, fc)
	fc.TokenEndpointHandlers.Append(&oauth2.ClientCredentialsGrantHandler{
		HandleHelper: &oauth2.HandleHelper{
			AccessTokenStrategy: strategy,
			AccessTokenStorage:  st,
			Config:              fc,
		},
		Config: fc,
	})
	if s.people != nil {
		s.people.configure(fc, st, strategy)
	}
	fc.TokenIntrospectionHandlers.Append(&oauth2.CoreValidator{
		CoreStrategy: strategy,
		CoreStorage:  st,
		Config:       fc,
	})
	fc.RevocationHandlers.Append(&revocationHandler{s: s})
	return s, nil
}

// checkIssuer returns the issuer without a trailing slash.
func checkIssuer(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("oauth: issuer %q must be an absolute URL without query or fragment", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !netaddr.LoopbackHost(u.Hostname()) {
			return "", fmt.Errorf("oauth: issuer %q must use https (http only on a loopback host)", raw)
		}
	default:
		return "", fmt.Errorf("oauth: issuer %q must use https", raw)
	}
	return strings.TrimSuffix(raw, "/"), nil
}

// Handler serves the endpoints at the paths above.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.people != nil {
		mux.Handle(PathAuthorize, s.people.Resolve(http.HandlerFunc(s.handleAuthorize)))
	}
	mux.HandleFunc(PathToken, s.handleToken)
	mux.HandleFunc(PathIntrospect, s.handleIntrospect)
	mux.HandleFunc(PathRevoke, s.handleRevoke)
	mux.HandleFunc(PathMetadata, s.handleMetadata)
	mux.HandleFunc(PathJWKS, s.handleJWKS)
	mux.HandleFunc("/", handleNotFound)
	return mux
}
