package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/extauthz/token"
	"github.com/helixflow/helixflow/internal/pgtext"
)

// The sessions table: creating, using, listing and ending sessions.

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
	c := Created{Secret: secret, CSRFToken: csrfToken(secret)}
	err = m.db.QueryRow(ctx, `
		INSERT INTO sessions (secret_hash, user_id, kind, source, user_agent, expires_at)
		VALUES ($1, $2, 'browser', $3, $4, now() + make_interval(secs => $5))
		RETURNING id::text, expires_at`,
		hash(secret), userID, pgtext.Clip(source, 64), pgtext.Clip(userAgent, 512), m.life.Seconds(),
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
		hash(secret), userID, clientID, pgtext.Clip(source, 64), pgtext.Clip(userAgent, 512), m.tokenLife.Seconds(),
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
// "sid:<id>" (token.RevokedSessionPrefix, which Check reads) in one
// statement (one transaction). The prefix is a constant without quotes.
const endAndRevoke = `
	WITH ended AS (
		UPDATE sessions SET ended_at = now()
		WHERE ended_at IS NULL AND %s
		RETURNING id
	)
	INSERT INTO revoked_tokens (jti, expires_at)
	SELECT '` + token.RevokedSessionPrefix + `' || id::text, now() + make_interval(secs => $1) FROM ended
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
