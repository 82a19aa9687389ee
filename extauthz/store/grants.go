package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuthCode is what an authorization code grants (migration 00004). The
// code itself is never stored: Signature is its HMAC.
type AuthCode struct {
	Signature []byte
	// RequestID is the grant's id, kept by the tokens the code is
	// exchanged for (their family).
	RequestID     string
	ClientID      string
	UserID        string
	Scopes        []string
	Audience      []string
	RedirectURI   string
	CodeChallenge string
	RequestedAt   time.Time
	ExpiresAt     time.Time
	// UsedAt is set once the code was exchanged.
	UsedAt *time.Time
	// PlatformAdmin is the user's flag now (read, never written).
	PlatformAdmin bool
}

// RefreshToken is one refresh token of a person's grant. The token itself
// is never stored: Signature is its HMAC.
type RefreshToken struct {
	Signature []byte
	// FamilyID is the grant's id, the same for every rotation.
	FamilyID  string
	ClientID  string
	UserID    string
	SessionID string
	Scopes    []string
	Audience  []string
	// RequestedAt is when the grant began.
	RequestedAt time.Time
	ExpiresAt   time.Time
	// UsedAt: rotated; RevokedAt: its family was revoked.
	UsedAt    *time.Time
	RevokedAt *time.Time
	// Read, never written: SessionLive says the token session is not
	// ended or expired and the user not erased; PlatformAdmin is the
	// user's flag now.
	SessionLive   bool
	PlatformAdmin bool
}

func checkSignature(sig []byte) error {
	if len(sig) != 32 {
		return fmt.Errorf("store: signature of %d bytes, want 32: %w", len(sig), ErrInvalid)
	}
	return nil
}

// CreateAuthCode stores a new authorization code.
func (s *Store) CreateAuthCode(ctx context.Context, c *AuthCode) error {
	if err := checkSignature(c.Signature); err != nil {
		return err
	}
	return s.do(ctx, "create authorization code", false, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `
			INSERT INTO oauth_codes (signature, request_id, client_id, user_id, scopes, audience, redirect_uri,
				code_challenge, requested_at, expires_at)
			VALUES ($1, $2, $3, $4::uuid, $5, $6, $7, $8, $9, $10)`,
			c.Signature, c.RequestID, c.ClientID, c.UserID, orEmpty(c.Scopes), orEmpty(c.Audience),
			c.RedirectURI, c.CodeChallenge, c.RequestedAt, c.ExpiresAt)
		return err
	})
}

// GetAuthCode returns the code with signature sig, used or not; a code of
// an erased user is ErrNotFound.
func (s *Store) GetAuthCode(ctx context.Context, sig []byte) (*AuthCode, error) {
	if err := checkSignature(sig); err != nil {
		return nil, err
	}
	var c AuthCode
	err := s.do(ctx, "get authorization code", true, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `
			SELECT c.signature, c.request_id, c.client_id, c.user_id::text, c.scopes, c.audience, c.redirect_uri,
				c.code_challenge, c.requested_at, c.expires_at, c.used_at, u.platform_admin
			FROM oauth_codes c JOIN users u ON u.id = c.user_id
			WHERE c.signature = $1 AND u.erased_at IS NULL`, sig,
		).Scan(&c.Signature, &c.RequestID, &c.ClientID, &c.UserID, &c.Scopes, &c.Audience, &c.RedirectURI,
			&c.CodeChallenge, &c.RequestedAt, &c.ExpiresAt, &c.UsedAt, &c.PlatformAdmin)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// RedeemAuthCode marks the code with signature sig used and stores rt (nil:
// no refresh token) in one statement. ErrConflict: the code was used
// already (a concurrent exchange won), and nothing was stored.
func (s *Store) RedeemAuthCode(ctx context.Context, sig []byte, rt *RefreshToken) error {
	if err := checkSignature(sig); err != nil {
		return err
	}
	if rt != nil {
		if err := checkSignature(rt.Signature); err != nil {
			return err
		}
	} else {
		rt = &RefreshToken{}
	}
	return s.do(ctx, "redeem authorization code", false, func(ctx context.Context) error {
		var used int
		err := s.pool.QueryRow(ctx, `
			WITH used AS (
				UPDATE oauth_codes SET used_at = now()
				WHERE signature = $1 AND used_at IS NULL
				RETURNING 1
			), stored AS (
				INSERT INTO oauth_refresh_tokens (signature, family_id, client_id, user_id, session_id, scopes,
					audience, requested_at, expires_at)
				SELECT $2, $3, $4, $5::uuid, $6::uuid, $7, $8, $9, $10 FROM used WHERE $2::bytea IS NOT NULL
				RETURNING 1
			)
			SELECT count(*) FROM used`,
			sig, nilIfEmpty(rt.Signature), rt.FamilyID, rt.ClientID, nullString(rt.UserID), nullString(rt.SessionID),
			orEmpty(rt.Scopes), orEmpty(rt.Audience), rt.RequestedAt, rt.ExpiresAt,
		).Scan(&used)
		if err != nil {
			return err
		}
		if used == 0 {
			return ErrConflict
		}
		return nil
	})
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// GetRefreshToken returns the refresh token with signature sig, with its
// session's and user's state now.
func (s *Store) GetRefreshToken(ctx context.Context, sig []byte) (*RefreshToken, error) {
	if err := checkSignature(sig); err != nil {
		return nil, err
	}
	var t RefreshToken
	err := s.do(ctx, "get refresh token", true, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `
			SELECT r.signature, r.family_id, r.client_id, r.user_id::text, r.session_id::text, r.scopes,
				r.audience, r.requested_at, r.expires_at, r.used_at, r.revoked_at,
				(s.ended_at IS NULL AND s.expires_at > now() AND u.erased_at IS NULL), u.platform_admin
			FROM oauth_refresh_tokens r
			JOIN sessions s ON s.id = r.session_id
			JOIN users u ON u.id = r.user_id
			WHERE r.signature = $1`, sig,
		).Scan(&t.Signature, &t.FamilyID, &t.ClientID, &t.UserID, &t.SessionID, &t.Scopes,
			&t.Audience, &t.RequestedAt, &t.ExpiresAt, &t.UsedAt, &t.RevokedAt, &t.SessionLive, &t.PlatformAdmin)
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// RotateRefreshToken marks the token with signature old used and stores
// next in its family, in one statement. ErrConflict: old was used or
// revoked already (a concurrent rotation won, or reuse), and nothing was
// stored.
func (s *Store) RotateRefreshToken(ctx context.Context, old []byte, next *RefreshToken) error {
	if err := checkSignature(old); err != nil {
		return err
	}
	if err := checkSignature(next.Signature); err != nil {
		return err
	}
	return s.do(ctx, "rotate refresh token", false, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, `
			WITH used AS (
				UPDATE oauth_refresh_tokens SET used_at = now()
				WHERE signature = $1 AND used_at IS NULL AND revoked_at IS NULL
				RETURNING family_id, client_id, user_id, session_id, requested_at
			)
			INSERT INTO oauth_refresh_tokens (signature, family_id, client_id, user_id, session_id, scopes,
				audience, requested_at, expires_at)
			SELECT $2, family_id, client_id, user_id, session_id, $3, $4, requested_at, $5 FROM used`,
			old, next.Signature, orEmpty(next.Scopes), orEmpty(next.Audience), next.ExpiresAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrConflict
		}
		return nil
	})
}

// RevokedGrant is a token session whose refresh tokens were revoked.
type RevokedGrant struct {
	SessionID, UserID, ClientID string
}

// RevokeRefreshFamily revokes every refresh token of family familyID and
// returns the token sessions they lived in (for the caller to end).
func (s *Store) RevokeRefreshFamily(ctx context.Context, familyID string) ([]RevokedGrant, error) {
	if err := checkID("refresh token family", familyID); err != nil {
		return nil, err
	}
	var out []RevokedGrant
	err := s.do(ctx, "revoke refresh token family", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `
			WITH revoked AS (
				UPDATE oauth_refresh_tokens SET revoked_at = coalesce(revoked_at, now())
				WHERE family_id = $1
				RETURNING session_id, user_id, client_id
			)
			SELECT DISTINCT session_id::text, user_id::text, client_id FROM revoked`, familyID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (RevokedGrant, error) {
			var g RevokedGrant
			err := row.Scan(&g.SessionID, &g.UserID, &g.ClientID)
			return g, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PruneGrants deletes codes that expired before before, and refresh tokens
// that expired before it whose family holds no live token any more (a used
// token is kept while its family lives, so that its reuse is still
// recognised); it returns how many rows went.
func (s *Store) PruneGrants(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.do(ctx, "prune grants", true, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, `DELETE FROM oauth_codes WHERE expires_at < $1`, before)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		tag, err = s.pool.Exec(ctx, `
			DELETE FROM oauth_refresh_tokens r
			WHERE r.expires_at < $1 AND NOT EXISTS (
				SELECT 1 FROM oauth_refresh_tokens l
				WHERE l.family_id = r.family_id AND l.used_at IS NULL AND l.revoked_at IS NULL
					AND l.expires_at >= $1)`, before)
		n += tag.RowsAffected()
		return err
	})
	return n, err
}
