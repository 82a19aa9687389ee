package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RevokeToken records that token jti is revoked until expiresAt, when the
// token expires anyway. Revoking again changes nothing.
func (s *Store) RevokeToken(ctx context.Context, jti string, expiresAt time.Time) error {
	if err := checkID("token jti", jti); err != nil {
		return err
	}
	if expiresAt.IsZero() {
		return fmt.Errorf("store: token expiry is zero: %w", ErrInvalid)
	}
	return s.do(ctx, "revoke token", true, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)
			ON CONFLICT (jti) DO NOTHING`, jti, expiresAt)
		return err
	})
}

// IsRevoked reports whether token jti is revoked. Callers treat an error
// as "cannot tell" and deny.
func (s *Store) IsRevoked(ctx context.Context, jti string) (bool, error) {
	if err := checkID("token jti", jti); err != nil {
		return false, err
	}
	var revoked bool
	err := s.do(ctx, "is revoked", true, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1)`, jti).Scan(&revoked)
	})
	return revoked, err
}

// RevokedSince returns the ids of tokens revoked at or after since (the
// database's clock) that have not expired yet; the zero time gives every
// revocation still in force. Caches warm with it, and catch up after a
// resync from a little before their last sync.
func (s *Store) RevokedSince(ctx context.Context, since time.Time) ([]string, error) {
	var out []string
	err := s.do(ctx, "revoked since", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT jti FROM revoked_tokens
			WHERE revoked_at >= $1 AND expires_at > now() ORDER BY revoked_at, jti`, since)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PruneRevoked deletes revocations of tokens that expired before before
// and returns how many went.
func (s *Store) PruneRevoked(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.do(ctx, "prune revoked", true, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, `DELETE FROM revoked_tokens WHERE expires_at < $1`, before)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}
