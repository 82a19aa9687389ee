package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const signingKeyColumns = `kid, alg, public_jwk, private_sealed, created_at, signs_from, retired_at, expires_at`

// InsertSigningKey stores a new key. A zero CreatedAt is now, a zero
// SignsFrom is CreatedAt; both are written back into k. An existing kid
// gives ErrConflict.
func (s *Store) InsertSigningKey(ctx context.Context, k *SigningKey) error {
	if k == nil {
		return fmt.Errorf("store: nil signing key: %w", ErrInvalid)
	}
	if err := checkID("signing key kid", k.KID); err != nil {
		return err
	}
	if k.Alg != "ES256" && k.Alg != "RS256" {
		return fmt.Errorf("store: signing key alg must be ES256 or RS256: %w", ErrInvalid)
	}
	if !json.Valid(k.PublicJWK) {
		return fmt.Errorf("store: signing key public JWK is not JSON: %w", ErrInvalid)
	}
	if len(k.PrivateSealed) == 0 {
		return fmt.Errorf("store: signing key sealed private key is empty: %w", ErrInvalid)
	}
	return s.do(ctx, "insert signing key", false, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `
			INSERT INTO signing_keys (kid, alg, public_jwk, private_sealed, created_at, signs_from, retired_at, expires_at)
			VALUES ($1, $2, $3, $4, coalesce($5, now()), coalesce($6, $5, now()), $7, $8)
			RETURNING created_at, signs_from`,
			k.KID, k.Alg, k.PublicJWK, k.PrivateSealed, nullTime(k.CreatedAt), nullTime(k.SignsFrom),
			k.RetiredAt, k.ExpiresAt,
		).Scan(&k.CreatedAt, &k.SignsFrom)
	})
}

// ListSigningKeys returns every key that has not expired, newest first:
// the keys to publish, and among them the ones that may sign.
func (s *Store) ListSigningKeys(ctx context.Context) ([]SigningKey, error) {
	var out []SigningKey
	err := s.do(ctx, "list signing keys", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys
			WHERE expires_at IS NULL OR expires_at > now()
			ORDER BY created_at DESC, kid DESC`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (SigningKey, error) {
			var k SigningKey
			err := row.Scan(&k.KID, &k.Alg, &k.PublicJWK, &k.PrivateSealed, &k.CreatedAt,
				&k.SignsFrom, &k.RetiredAt, &k.ExpiresAt)
			return k, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RetireSigningKey stops key kid from signing at at. A key retired
// earlier keeps its earlier time.
func (s *Store) RetireSigningKey(ctx context.Context, kid string, at time.Time) error {
	if err := checkID("signing key kid", kid); err != nil {
		return err
	}
	if at.IsZero() {
		return fmt.Errorf("store: retire time is zero: %w", ErrInvalid)
	}
	return s.do(ctx, "retire signing key", true, func(ctx context.Context) error {
		return execOne(ctx, s, `UPDATE signing_keys SET retired_at = least(retired_at, $2) WHERE kid = $1`, kid, at)
	})
}

// ExpireSigningKey sets when key kid leaves the published set (after the
// last token it signed has expired).
func (s *Store) ExpireSigningKey(ctx context.Context, kid string, at time.Time) error {
	if err := checkID("signing key kid", kid); err != nil {
		return err
	}
	if at.IsZero() {
		return fmt.Errorf("store: expiry time is zero: %w", ErrInvalid)
	}
	return s.do(ctx, "expire signing key", true, func(ctx context.Context) error {
		return execOne(ctx, s, `UPDATE signing_keys SET expires_at = $2 WHERE kid = $1`, kid, at)
	})
}

// DeleteExpiredSigningKeys deletes keys that expired before before and
// returns how many went.
func (s *Store) DeleteExpiredSigningKeys(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.do(ctx, "delete expired signing keys", true, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, `DELETE FROM signing_keys WHERE expires_at < $1`, before)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}
