// Package session is who calls helix-authz's people's API (/api/v1): the
// Principal, resolved from a browser session's cookie or a person's bearer
// access token, and the server-side sessions behind both.
//
// Sessions live in Postgres (table sessions, migration 00003). A browser
// session is a cookie __Host-helix_session holding 32 random bytes; the
// database keeps their SHA-256 only, so a dump holds no session. It has an
// idle timeout (last_seen_at) and an absolute one (expires_at). A token
// session is what an OAuth2 authorization-code grant to an app creates; its
// refresh tokens and access tokens (claim sid) live while it does.
//
// Ending a session marks it ended and, in the same transaction, revokes
// "sid:<id>" in revoked_tokens for the longest access-token lifetime: every
// replica hears of it through the revocation notices, and Check refuses the
// session's access tokens from then on.
//
// Fails closed: a database error while resolving a principal is an error
// answer (503), never an anonymous or a stale principal.
package session

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/token"
)

// Names on the wire.
const (
	CookieName = "__Host-helix_session"
	CSRFHeader = "X-CSRF-Token"
)

// Kinds of session (sessions.kind).
const (
	KindBrowser = "browser"
	KindToken   = "token"
)

// Via: how a principal authenticated.
const (
	ViaCookie = "cookie"
	ViaBearer = "bearer"
)

// Defaults for Config's zero values (the flags' defaults).
const (
	DefaultIdleTimeout   = 30 * time.Minute
	DefaultLifetime      = 12 * time.Hour
	DefaultTokenLifetime = 30 * 24 * time.Hour
)

// RevocationLifetime is how long an ended session's "sid:<id>" stays in
// revoked_tokens: the longest access-token lifetime, after which every
// token minted for the session has expired anyway.
const RevocationLifetime = token.MaxLifetime

// secretBytes is the size of a cookie's secret.
const secretBytes = 32

// ErrNotFound: no such session (or not the caller's).
var ErrNotFound = errors.New("session: not found")

// ErrUnavailable is what a BearerVerifier's error wraps when it could not
// judge the token (a store it asks is down): the answer is 503, as for a
// cookie, not 401, which would tell a client that its good token is bad.
var ErrUnavailable = errors.New("session: credentials cannot be checked now")

// Principal is who is calling.
type Principal struct {
	UserID    string // uuid
	SessionID string // uuid of the sessions row (browser session, or the token session of an OAuth grant)
	Via       string // ViaCookie or ViaBearer
	// Scopes: a bearer token's scopes; nil for a cookie (a browser session
	// may do everything its user may).
	Scopes []string
	// PlatformAdmin is read from users at request time.
	PlatformAdmin bool
	// CSRFToken is the browser session's CSRF token (cookie principals
	// only): what unsafe requests must send in X-CSRF-Token, and what
	// GET /api/v1/account hands back.
	CSRFToken string
}

// HasScope says whether p may act with scope: a cookie principal may do
// everything its user may; a bearer only what its token's scopes allow.
func (p Principal) HasScope(scope string) bool {
	return p.Via == ViaCookie || slices.Contains(p.Scopes, scope)
}

type principalKey struct{}

// PrincipalFrom returns the principal Middleware put in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p (Middleware's work; tests of the
// handlers behind it use it too).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// BearerVerifier verifies a person's access token (the OAuth package
// provides one): it verifies, is not revoked, names a live token session
// (sid) and carries scope "account". An error wrapping ErrUnavailable
// means the token could not be judged; any other refuses it.
type BearerVerifier interface {
	VerifyUserToken(ctx context.Context, raw string) (userID, sessionID string, scopes []string, err error)
}

// Config configures a Manager.
type Config struct {
	DB *pgxpool.Pool
	// IdleTimeout ends a browser session nobody used for that long
	// (--session-idle-timeout); Lifetime ends it that long after login
	// whatever happens (--session-lifetime); TokenLifetime bounds a token
	// session (--token-session-lifetime).
	IdleTimeout, Lifetime, TokenLifetime time.Duration
	// PublicOrigin is the public port's origin (scheme://host[:port]): an
	// unsafe request that sends another Origin is refused (CSRF).
	PublicOrigin string
	// OtherOrigins are more origins that are this server's own, accepted
	// as PublicOrigin is: its issuer's, where people also reach it when
	// PublicOrigin is the gateway's (OAuth2's /login for helixctl).
	OtherOrigins []string
	// Bearer verifies people's access tokens; nil refuses every bearer.
	Bearer BearerVerifier
	Logger *slog.Logger
}

// Manager resolves principals and keeps sessions.
type Manager struct {
	db                    *pgxpool.Pool
	idle, life, tokenLife time.Duration
	origin                string
	others                []string // OtherOrigins, normalized
	bearer                BearerVerifier
	log                   *slog.Logger
}

// New returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.DB == nil {
		return nil, errors.New("session: no database")
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.IdleTimeout < 0 || cfg.Lifetime < 0 || cfg.TokenLifetime < 0 {
		return nil, errors.New("session: timeouts must be positive")
	}
	if cfg.IdleTimeout > cfg.Lifetime {
		return nil, fmt.Errorf("session: the idle timeout (%s) is longer than the session lifetime (%s)", cfg.IdleTimeout, cfg.Lifetime)
	}
	origin, err := Origin(cfg.PublicOrigin)
	if err != nil {
		return nil, err
	}
	var others []string
	for _, o := range cfg.OtherOrigins {
		n, err := Origin(o)
		if err != nil {
			return nil, err
		}
		if n != origin {
			others = append(others, n)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{
		db: cfg.DB, idle: cfg.IdleTimeout, life: cfg.Lifetime, tokenLife: cfg.TokenLifetime,
		origin: origin, others: others, bearer: cfg.Bearer, log: cfg.Logger,
	}, nil
}

// Origin returns the origin (scheme://host[:port]) of a public URL.
func Origin(publicURL string) (string, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("session: the public URL %q is not an absolute http(s) URL", publicURL)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// Lifetime is a browser session's absolute lifetime.
func (m *Manager) Lifetime() time.Duration { return m.life }

// ConstantTimeEqual compares two tokens in constant time; an empty token
// never matches.
func ConstantTimeEqual(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func isSafe(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// NewSecret returns 32 random bytes, base64url: a session's or a link's
// secret.
func NewSecret() (string, error) { return newSecret() }

func newSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Hash is what the database keeps of a secret: its SHA-256.
func Hash(secret string) []byte { return hash(secret) }

func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// csrfToken derives the session's CSRF token from its secret, so it needs
// no column of its own: a dump yields neither the session nor the token.
func csrfToken(secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("helix csrf"))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// validSecret: the shape of a secret this package made (43 base64url
// characters); anything else is not looked up.
func validSecret(s string) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(secretBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// isUUID: the canonical 36-character form Postgres prints.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// IsUUID reports whether s is a uuid in canonical form.
func IsUUID(s string) bool { return isUUID(s) }
