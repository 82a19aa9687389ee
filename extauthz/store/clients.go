package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const clientColumns = `id, name, secret_hash, scopes, models, audience, plan, enabled, tokens_valid_after, created_at, updated_at, org_id, created_by, public, redirect_uris, grant_types`

func scanClient(row pgx.Row, c *Client) error {
	var validAfter *time.Time
	var orgID, createdBy *string
	err := row.Scan(&c.ID, &c.Name, &c.SecretHash, &c.Scopes, &c.Models, &c.Audience,
		&c.Plan, &c.Enabled, &validAfter, &c.CreatedAt, &c.UpdatedAt, &orgID, &createdBy,
		&c.Public, &c.RedirectURIs, &c.GrantTypes)
	c.TokensValidAfter = orZero(validAfter)
	c.OrgID, c.CreatedBy = deref(orgID), deref(createdBy)
	return err
}

func orZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func validateClient(c *Client) error {
	if c == nil {
		return fmt.Errorf("store: nil client: %w", ErrInvalid)
	}
	if err := checkID("client id", c.ID); err != nil {
		return err
	}
	if err := checkText("client name", c.Name); err != nil {
		return err
	}
	if err := checkText("client plan", c.Plan); err != nil {
		return err
	}
	if err := checkList("client scopes", c.Scopes); err != nil {
		return err
	}
	if err := checkList("client models", c.Models); err != nil {
		return err
	}
	if err := checkList("client redirect URIs", c.RedirectURIs); err != nil {
		return err
	}
	if err := checkList("client grant types", c.GrantTypes); err != nil {
		return err
	}
	return checkList("client audience", c.Audience)
}

// CreateClient inserts c (SecretHash required unless c is Public, which
// has none). A zero CreatedAt or UpdatedAt is set by the database; both
// are written back into c, and GrantClientCredentials into an empty
// GrantTypes. An existing id gives ErrConflict.
func (s *Store) CreateClient(ctx context.Context, c *Client) error {
	if err := validateClient(c); err != nil {
		return err
	}
	if err := checkClientSecret(c); err != nil {
		return err
	}
	return s.do(ctx, "create client", false, func(ctx context.Context) error {
		return insertClient(ctx, s.pool, c)
	})
}

// checkClientSecret: a confidential client has a secret hash, a public
// one none.
func checkClientSecret(c *Client) error {
	switch {
	case c.Public && len(c.SecretHash) != 0:
		return fmt.Errorf("store: a public client has no secret: %w", ErrInvalid)
	case !c.Public && len(c.SecretHash) == 0:
		return fmt.Errorf("store: client secret hash is empty: %w", ErrInvalid)
	}
	return nil
}

// EnsureClient inserts c unless a client with its id exists, which is
// left as it is (an admin may have changed it); it reports whether c was
// inserted. helix-authz ensures its first-party clients with it at start.
func (s *Store) EnsureClient(ctx context.Context, c *Client) (bool, error) {
	if err := validateClient(c); err != nil {
		return false, err
	}
	if err := checkClientSecret(c); err != nil {
		return false, err
	}
	var inserted bool
	err := s.do(ctx, "ensure client", true, func(ctx context.Context) error {
		err := insertClient(ctx, s.pool, c)
		if err == nil {
			inserted = true
			return nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation: it exists
			return nil
		}
		return err
	})
	return inserted, err
}

// insertClient inserts c (checked by the caller) through q, a pool or a
// transaction, and writes the times back into c. OrgID and CreatedBy ""
// are NULL.
func insertClient(ctx context.Context, q querier, c *Client) error {
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{GrantClientCredentials}
	}
	var secretHash []byte
	if len(c.SecretHash) > 0 {
		secretHash = c.SecretHash
	}
	return q.QueryRow(ctx, `
		INSERT INTO clients (id, name, secret_hash, scopes, models, audience, plan, enabled, created_at, updated_at,
			org_id, created_by, public, redirect_uris, grant_types)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()), coalesce($10, $9, now()), $11, $12, $13, $14, $15)
		RETURNING created_at, updated_at`,
		c.ID, c.Name, secretHash, orEmpty(c.Scopes), orEmpty(c.Models), orEmpty(c.Audience),
		c.Plan, c.Enabled, nullTime(c.CreatedAt), nullTime(c.UpdatedAt), nullString(c.OrgID), nullString(c.CreatedBy),
		c.Public, orEmpty(c.RedirectURIs), c.GrantTypes,
	).Scan(&c.CreatedAt, &c.UpdatedAt)
}

// GetClient returns the client with id, or ErrNotFound.
func (s *Store) GetClient(ctx context.Context, id string) (*Client, error) {
	if err := checkID("client id", id); err != nil {
		return nil, err
	}
	var c Client
	err := s.do(ctx, "get client", true, func(ctx context.Context) error {
		return scanClient(s.pool.QueryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = $1`, id), &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// ListClients returns every client, ordered by id.
func (s *Store) ListClients(ctx context.Context) ([]Client, error) {
	var out []Client
	err := s.do(ctx, "list clients", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT `+clientColumns+` FROM clients ORDER BY id`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Client, error) {
			var c Client
			err := scanClient(row, &c)
			return c, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateClient writes c's name, scopes, models, audience, plan and enabled
// flag to the client with c.ID (not its secret: see SetClientSecret), and
// writes the new UpdatedAt, TokensValidAfter (and CreatedAt) back into c.
// Disabling (or enabling) the client moves TokensValidAfter to now(), so
// that no token issued before stays valid, whoever the caller. ErrNotFound
// if there is no such client.
func (s *Store) UpdateClient(ctx context.Context, c *Client) error {
	if err := validateClient(c); err != nil {
		return err
	}
	var validAfter *time.Time
	err := s.do(ctx, "update client", true, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `
			UPDATE clients SET name = $2, scopes = $3, models = $4, audience = $5, plan = $6,
				enabled = $7, updated_at = greatest(now(), updated_at),
				tokens_valid_after = CASE WHEN enabled IS DISTINCT FROM $7
					THEN greatest(now(), tokens_valid_after) ELSE tokens_valid_after END
			WHERE id = $1
			RETURNING created_at, updated_at, tokens_valid_after`,
			c.ID, c.Name, orEmpty(c.Scopes), orEmpty(c.Models), orEmpty(c.Audience), c.Plan, c.Enabled,
		).Scan(&c.CreatedAt, &c.UpdatedAt, &validAfter)
	})
	if err != nil {
		return err
	}
	c.TokensValidAfter = orZero(validAfter)
	return nil
}

// SetClientSecret replaces the secret hash of client id (rotation) and
// moves its TokensValidAfter to now(): tokens issued before stop counting.
func (s *Store) SetClientSecret(ctx context.Context, id string, hash []byte) error {
	if err := checkID("client id", id); err != nil {
		return err
	}
	if len(hash) == 0 {
		return fmt.Errorf("store: client secret hash is empty: %w", ErrInvalid)
	}
	// A public client has no secret to rotate: not found among those that
	// have one.
	return s.do(ctx, "set client secret", true, func(ctx context.Context) error {
		return execOne(ctx, s, `
			UPDATE clients SET secret_hash = $2, updated_at = greatest(now(), updated_at),
				tokens_valid_after = greatest(now(), tokens_valid_after)
			WHERE id = $1 AND NOT public`, id, hash)
	})
}

// DeleteClient deletes client id and, with it, its API keys.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if err := checkID("client id", id); err != nil {
		return err
	}
	// Retried after an unknown outcome, a delete that went through
	// reports ErrNotFound: acceptable for the admin who asked.
	return s.do(ctx, "delete client", true, func(ctx context.Context) error {
		return execOne(ctx, s, `DELETE FROM clients WHERE id = $1`, id)
	})
}

// execOne runs a statement that must touch a row; none is ErrNotFound.
func execOne(ctx context.Context, s *Store, sql string, args ...any) error {
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
