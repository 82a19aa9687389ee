package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const apiKeyColumns = `id, prefix, hash, client_id, name, scopes, expires_at, last_used_at, use_count, revoked_at, created_at, created_by, replaces`

func scanAPIKey(row pgx.Row, k *APIKey) error {
	var createdBy, replaces *string
	err := row.Scan(&k.ID, &k.Prefix, &k.Hash, &k.ClientID, &k.Name, &k.Scopes,
		&k.ExpiresAt, &k.LastUsedAt, &k.UseCount, &k.RevokedAt, &k.CreatedAt, &createdBy, &replaces)
	k.CreatedBy, k.Replaces = deref(createdBy), deref(replaces)
	return err
}

// CreateAPIKey inserts k (ID, Prefix, Hash and ClientID required). An id
// or prefix already taken gives ErrConflict, an unknown client ErrNotFound.
// CreatedAt (set by the database when zero) is written back into k.
// LastUsedAt, UseCount and RevokedAt start empty whatever k holds.
func (s *Store) CreateAPIKey(ctx context.Context, k *APIKey) error {
	if err := validateAPIKey(k); err != nil {
		return err
	}
	return s.do(ctx, "create api key", false, func(ctx context.Context) error {
		return insertAPIKey(ctx, s.pool, k)
	})
}

func validateAPIKey(k *APIKey) error {
	if k == nil {
		return fmt.Errorf("store: nil api key: %w", ErrInvalid)
	}
	for _, f := range []struct{ name, v string }{
		{"api key id", k.ID}, {"api key prefix", k.Prefix}, {"api key client id", k.ClientID},
	} {
		if err := checkID(f.name, f.v); err != nil {
			return err
		}
	}
	if err := checkText("api key name", k.Name); err != nil {
		return err
	}
	if err := checkList("api key scopes", k.Scopes); err != nil {
		return err
	}
	if len(k.Hash) == 0 {
		return fmt.Errorf("store: api key hash is empty: %w", ErrInvalid)
	}
	return nil
}

// insertAPIKey inserts k (checked by the caller) through q, a pool or a
// transaction. CreatedBy and Replaces "" are NULL.
func insertAPIKey(ctx context.Context, q querier, k *APIKey) error {
	return q.QueryRow(ctx, `
		INSERT INTO api_keys (id, prefix, hash, client_id, name, scopes, expires_at, created_at, created_by, replaces)
		VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()), $9, $10)
		RETURNING created_at`,
		k.ID, k.Prefix, k.Hash, k.ClientID, k.Name, orEmpty(k.Scopes), k.ExpiresAt, nullTime(k.CreatedAt),
		nullString(k.CreatedBy), nullString(k.Replaces),
	).Scan(&k.CreatedAt)
}

// GetAPIKeyByPrefix returns the key with prefix, revoked or expired ones
// included (the caller decides), or ErrNotFound.
func (s *Store) GetAPIKeyByPrefix(ctx context.Context, prefix string) (*APIKey, error) {
	if err := checkID("api key prefix", prefix); err != nil {
		return nil, err
	}
	var k APIKey
	err := s.do(ctx, "get api key", true, func(ctx context.Context) error {
		return scanAPIKey(s.pool.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE prefix = $1`, prefix), &k)
	})
	if err != nil {
		return nil, err
	}
	return &k, nil
}

// ListAPIKeys returns the keys of clientID, or every key when clientID is
// "", oldest first.
func (s *Store) ListAPIKeys(ctx context.Context, clientID string) ([]APIKey, error) {
	if err := checkText("api key client id", clientID); err != nil {
		return nil, err
	}
	var out []APIKey
	err := s.do(ctx, "list api keys", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys
			WHERE $1 = '' OR client_id = $1 ORDER BY created_at, id`, clientID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIKey, error) {
			var k APIKey
			err := scanAPIKey(row, &k)
			return k, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RevokeAPIKey revokes the key whose id, or else whose prefix, is
// idOrPrefix. Revoking again keeps the first revocation time.
func (s *Store) RevokeAPIKey(ctx context.Context, idOrPrefix string) error {
	if err := checkID("api key id", idOrPrefix); err != nil {
		return err
	}
	return s.do(ctx, "revoke api key", true, func(ctx context.Context) error {
		// An id match wins over a prefix match, so one call revokes one key.
		return execOne(ctx, s, `
			UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
			WHERE id = (SELECT id FROM api_keys WHERE id = $1 OR prefix = $1
			            ORDER BY id = $1 DESC LIMIT 1)`, idOrPrefix)
	})
}

// RecordAPIKeyUse adds n uses of the key with prefix, the latest at at.
// Callers batch uses: one call per key and flush, not per request. Usage
// changes send no notification.
func (s *Store) RecordAPIKeyUse(ctx context.Context, prefix string, at time.Time, n int64) error {
	if err := checkID("api key prefix", prefix); err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("store: negative use count: %w", ErrInvalid)
	}
	if at.IsZero() {
		return fmt.Errorf("store: use time is zero: %w", ErrInvalid)
	}
	// Not idempotent: a retry after an unknown outcome could count twice.
	// One statement moves the key's totals and its day's row (the UTC day
	// of at), so the two never disagree.
	return s.do(ctx, "record api key use", false, func(ctx context.Context) error {
		return execOne(ctx, s, `
			WITH k AS (
				UPDATE api_keys SET last_used_at = greatest(last_used_at, $2), use_count = use_count + $3
				WHERE prefix = $1 RETURNING id)
			INSERT INTO api_key_usage_daily (key_id, day, count)
			SELECT id, ($2::timestamptz AT TIME ZONE 'UTC')::date, $3 FROM k
			ON CONFLICT (key_id, day) DO UPDATE SET count = api_key_usage_daily.count + excluded.count`,
			prefix, at, n)
	})
}
