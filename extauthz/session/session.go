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
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/webapi"
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
// revoked_tokens: the longest access-token lifetime (oauth.MaxTokenLifetime),
// after which every token minted for the session has expired anyway.
const RevocationLifetime = time.Hour

// secretBytes is the size of a cookie's secret.
const secretBytes = 32

// ErrNotFound: no such session (or not the caller's).
var ErrNotFound = errors.New("session: not found")

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
// (sid) and carries scope "account".
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
	// Bearer verifies people's access tokens; nil refuses every bearer.
	Bearer BearerVerifier
	Logger *slog.Logger
}

// Manager resolves principals and keeps sessions.
type Manager struct {
	db                    *pgxpool.Pool
	idle, life, tokenLife time.Duration
	origin                string
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{
		db: cfg.DB, idle: cfg.IdleTimeout, life: cfg.Lifetime, tokenLife: cfg.TokenLifetime,
		origin: origin, bearer: cfg.Bearer, log: cfg.Logger,
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

// Created is a new browser session: Secret goes into the cookie (SetCookie)
// and nowhere else.
type Created struct {
	ID        string
	Secret    string
	CSRFToken string
	ExpiresAt time.Time
}

// CreateBrowserSession starts a browser session for a login.
func (m *Manager) CreateBrowserSession(ctx context.Context, userID, source, userAgent string) (Created, error) {
	secret, err := newSecret()
	if err != nil {
		return Created{}, err
	}
	csrf := csrfToken(secret)
	c := Created{Secret: secret, CSRFToken: csrf}
	err = m.db.QueryRow(ctx, `
		INSERT INTO sessions (secret_hash, user_id, kind, csrf_hash, source, user_agent, expires_at)
		VALUES ($1, $2, 'browser', $3, $4, $5, now() + make_interval(secs => $6))
		RETURNING id::text, expires_at`,
		hash(secret), userID, hash(csrf), Clip(source, 64), Clip(userAgent, 512), m.life.Seconds(),
	).Scan(&c.ID, &c.ExpiresAt)
	if err != nil {
		return Created{}, fmt.Errorf("session: create: %w", err)
	}
	return c, nil
}

// CreateTokenSession starts the session an OAuth2 grant of userID to
// clientID lives in; it has no cookie (its secret is thrown away).
func (m *Manager) CreateTokenSession(ctx context.Context, userID, clientID, source, userAgent string) (string, error) {
	secret, err := newSecret()
	if err != nil {
		return "", err
	}
	var id string
	err = m.db.QueryRow(ctx, `
		INSERT INTO sessions (secret_hash, user_id, kind, client_id, source, user_agent, expires_at)
		VALUES ($1, $2, 'token', $3, $4, $5, now() + make_interval(secs => $6))
		RETURNING id::text`,
		hash(secret), userID, clientID, Clip(source, 64), Clip(userAgent, 512), m.tokenLife.Seconds(),
	).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("session: create token session: %w", err)
	}
	return id, nil
}

// live is the condition of a usable session: not ended, not past its
// absolute expiry, and for a browser session used within the idle timeout.
const live = `s.ended_at IS NULL AND s.expires_at > now()
	AND (s.kind <> 'browser' OR s.last_seen_at > now() - make_interval(secs => $2))`

// Live says whether sessionID is usable, and whose it is; it touches
// last_seen_at.
func (m *Manager) Live(ctx context.Context, sessionID string) (userID string, ok bool, err error) {
	if !isUUID(sessionID) {
		return "", false, nil
	}
	err = m.db.QueryRow(ctx, `
		UPDATE sessions s SET last_seen_at = now()
		FROM users u
		WHERE s.id = $1::uuid AND u.id = s.user_id AND u.erased_at IS NULL AND `+live+`
		RETURNING s.user_id::text`, sessionID, m.idle.Seconds()).Scan(&userID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("session: live: %w", err)
	}
	return userID, true, nil
}

// endAndRevoke ends the sessions the WHERE clause picks and revokes their
// "sid:" in one statement (one transaction).
const endAndRevoke = `
	WITH ended AS (
		UPDATE sessions SET ended_at = now()
		WHERE ended_at IS NULL AND %s
		RETURNING id
	)
	INSERT INTO revoked_tokens (jti, expires_at)
	SELECT 'sid:' || id::text, now() + make_interval(secs => $1) FROM ended
	ON CONFLICT (jti) DO NOTHING`

// End ends one session; ending one already ended or unknown does nothing.
func (m *Manager) End(ctx context.Context, sessionID string) error {
	if !isUUID(sessionID) {
		return nil
	}
	_, err := m.db.Exec(ctx, fmt.Sprintf(endAndRevoke, "id = $2::uuid"), RevocationLifetime.Seconds(), sessionID)
	if err != nil {
		return fmt.Errorf("session: end: %w", err)
	}
	return nil
}

// EndOwn ends sessionID if it is userID's: ErrNotFound otherwise (another
// user's session is not found, not forbidden).
func (m *Manager) EndOwn(ctx context.Context, userID, sessionID string) error {
	if !isUUID(sessionID) || !isUUID(userID) {
		return ErrNotFound
	}
	var exists bool
	err := m.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1::uuid AND user_id = $2::uuid)`,
		sessionID, userID).Scan(&exists)
	if err != nil {
		return fmt.Errorf("session: end: %w", err)
	}
	if !exists {
		return ErrNotFound
	}
	return m.End(ctx, sessionID)
}

// EndAll ends every session of userID but except ("" ends all).
func (m *Manager) EndAll(ctx context.Context, userID string, except string) error {
	if !isUUID(userID) {
		return nil
	}
	_, err := m.db.Exec(ctx, fmt.Sprintf(endAndRevoke, "user_id = $2::uuid AND id::text <> $3"),
		RevocationLifetime.Seconds(), userID, except)
	if err != nil {
		return fmt.Errorf("session: end all: %w", err)
	}
	return nil
}

// EndAllTx ends every session of userID inside tx, revoking their "sid:"
// as End does: GDPR erasure ends them in its one transaction.
func EndAllTx(ctx context.Context, tx pgx.Tx, userID string) error {
	if !isUUID(userID) {
		return nil
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(endAndRevoke, "user_id = $2::uuid"), RevocationLifetime.Seconds(), userID)
	if err != nil {
		return fmt.Errorf("session: end all: %w", err)
	}
	return nil
}

// Info describes one session to its user.
type Info struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	ClientID   string    `json:"client_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Source     string    `json:"source"`
	UserAgent  string    `json:"user_agent"`
	Current    bool      `json:"current"`
}

// List returns userID's live sessions, newest first; current marks the
// caller's own.
func (m *Manager) List(ctx context.Context, userID, current string) ([]Info, error) {
	if !isUUID(userID) {
		return nil, nil
	}
	rows, err := m.db.Query(ctx, `
		SELECT s.id::text, s.kind, coalesce(s.client_id, ''), s.created_at, s.last_seen_at, s.expires_at, s.source, s.user_agent
		FROM sessions s
		WHERE s.user_id = $1::uuid AND `+live+`
		ORDER BY s.created_at DESC, s.id`, userID, m.idle.Seconds())
	if err != nil {
		return nil, fmt.Errorf("session: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Info, error) {
		var i Info
		err := row.Scan(&i.ID, &i.Kind, &i.ClientID, &i.CreatedAt, &i.LastSeenAt, &i.ExpiresAt, &i.Source, &i.UserAgent)
		i.Current = i.ID == current
		return i, err
	})
	if err != nil {
		return nil, fmt.Errorf("session: list: %w", err)
	}
	return out, nil
}

// byCookie resolves a browser session from its cookie's secret and touches
// it. ok is false for an unknown, ended, idle or expired session.
func (m *Manager) byCookie(ctx context.Context, secret string) (p Principal, ok bool, err error) {
	if !validSecret(secret) {
		return Principal{}, false, nil
	}
	err = m.db.QueryRow(ctx, `
		UPDATE sessions s SET last_seen_at = now()
		FROM users u
		WHERE s.secret_hash = $1 AND s.kind = 'browser' AND u.id = s.user_id AND u.erased_at IS NULL AND `+live+`
		RETURNING s.id::text, s.user_id::text, u.platform_admin`, hash(secret), m.idle.Seconds(),
	).Scan(&p.SessionID, &p.UserID, &p.PlatformAdmin)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, false, nil
	}
	if err != nil {
		return Principal{}, false, fmt.Errorf("session: resolve cookie: %w", err)
	}
	p.Via = ViaCookie
	p.CSRFToken = csrfToken(secret)
	return p, true, nil
}

// EndPresented ends the browser session r's cookie names, if any: a login
// never adopts a session it is handed (fixation); it replaces it.
func (m *Manager) EndPresented(ctx context.Context, r *http.Request) error {
	c, err := r.Cookie(CookieName)
	if err != nil || !validSecret(c.Value) {
		return nil
	}
	_, err = m.db.Exec(ctx, fmt.Sprintf(endAndRevoke, "secret_hash = $2"), RevocationLifetime.Seconds(), hash(c.Value))
	if err != nil {
		return fmt.Errorf("session: end presented: %w", err)
	}
	return nil
}

// SetCookie hands a new browser session to the browser.
func (m *Manager) SetCookie(w http.ResponseWriter, c Created) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: c.Secret, Path: "/", Expires: c.ExpiresAt,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// ClearCookie removes the session cookie.
func (m *Manager) ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// Middleware resolves the caller: "Authorization: Bearer" (verified by the
// BearerVerifier; a request that sends one is judged by it alone) or the
// session cookie, and puts the Principal in the context. Cookie-authenticated
// unsafe methods need X-CSRF-Token equal to the session's token; any unsafe
// request that sends an Origin other than the public origin is refused
// (403 csrf_failed). A request with neither goes on without a principal
// (Require refuses it); a bad token or a dead cookie is no principal either.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unsafe := !isSafe(r.Method)
		if unsafe && !m.SameOrigin(r) {
			webapi.WriteError(w, http.StatusForbidden, webapi.CodeCSRF, "the request's Origin is not this server's")
			return
		}
		if auth := r.Header.Get("Authorization"); auth != "" {
			scheme, raw, _ := strings.Cut(auth, " ")
			if !strings.EqualFold(scheme, "Bearer") || raw == "" || m.bearer == nil {
				webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "the Authorization header must carry a person's bearer access token")
				return
			}
			userID, sid, scopes, err := m.bearer.VerifyUserToken(r.Context(), strings.TrimSpace(raw))
			if err != nil {
				webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "the bearer token is not valid for this API")
				return
			}
			p := Principal{UserID: userID, SessionID: sid, Via: ViaBearer, Scopes: scopes}
			ok, err := m.loadUser(r.Context(), &p)
			if err != nil {
				m.unavailable(w, err)
				return
			}
			if !ok {
				webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "the bearer token's user no longer exists")
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
			return
		}
		c, err := r.Cookie(CookieName)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		p, ok, err := m.byCookie(r.Context(), c.Value)
		if err != nil {
			m.unavailable(w, err)
			return
		}
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if unsafe && !ConstantTimeEqual(r.Header.Get(CSRFHeader), p.CSRFToken) {
			webapi.WriteError(w, http.StatusForbidden, webapi.CodeCSRF, "a cookie-authenticated change needs the session's CSRF token in the X-CSRF-Token header")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// Require answers 401 unauthorized to a request without a principal.
func (m *Manager) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := PrincipalFrom(r.Context()); !ok {
			webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "sign in first: no live session cookie or bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SameOrigin says whether r sent no Origin or the public origin.
func (m *Manager) SameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || strings.EqualFold(o, m.origin)
}

func (m *Manager) loadUser(ctx context.Context, p *Principal) (bool, error) {
	if !isUUID(p.UserID) {
		return false, nil
	}
	err := m.db.QueryRow(ctx, `SELECT platform_admin FROM users WHERE id = $1::uuid AND erased_at IS NULL`, p.UserID).
		Scan(&p.PlatformAdmin)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("session: load user: %w", err)
	}
	return true, nil
}

func (m *Manager) unavailable(w http.ResponseWriter, err error) {
	m.log.Error("resolving the caller failed", "error", err)
	webapi.WriteError(w, http.StatusServiceUnavailable, webapi.CodeUnavailable, "sessions cannot be checked right now; try again shortly")
}

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
// no column of its own in clear: the database keeps only its hash
// (csrf_hash), and a dump yields neither the session nor the token.
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

// Clip cuts s to at most n bytes on a rune boundary, so a column with a
// length limit stays valid UTF-8 (sources, user agents).
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
