package store

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is what organizations and the admin API read of a person's
// account (the accounts package owns the rest: password, preferences).
type User struct {
	ID            string
	Email         string // "" once erased
	EmailVerified bool
	DisplayName   string
	Organization  string
	PlatformAdmin bool
	CreatedAt     time.Time
	ErasedAt      *time.Time
}

const userColumns = `id, coalesce(email, ''), email_verified_at IS NOT NULL, display_name, organization,
	platform_admin, created_at, erased_at`

func scanUser(row pgx.Row, u *User) error {
	return row.Scan(&u.ID, &u.Email, &u.EmailVerified, &u.DisplayName, &u.Organization,
		&u.PlatformAdmin, &u.CreatedAt, &u.ErasedAt)
}

// GetUser returns the user with id, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (*User, error) {
	if err := checkUUID("user id", id); err != nil {
		return nil, err
	}
	var u User
	err := s.do(ctx, "get user", true, func(ctx context.Context) error {
		return scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id), &u)
	})
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// GetUserByEmail returns the user with email (compared lower-cased, as
// accounts stores it), or ErrNotFound.
func (s *Store) GetUserByEmail(ctx context.Context, email string) (*User, error) {
	if err := checkID("email", email); err != nil {
		return nil, err
	}
	var u User
	err := s.do(ctx, "get user by email", true, func(ctx context.Context) error {
		return scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE email = $1`, strings.ToLower(email)), &u)
	})
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// ListUsers returns up to limit users whose id sorts after after ("" for
// the first page), ordered by id.
func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]User, error) {
	if after != "" {
		if err := checkUUID("after", after); err != nil {
			return nil, err
		}
	} else {
		after = "00000000-0000-0000-0000-000000000000"
	}
	var out []User
	err := s.do(ctx, "list users", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) {
			var u User
			return u, scanUser(row, &u)
		})
		return err
	})
	return out, err
}

// SetPlatformAdmin grants or withdraws the platform-admin flag of user id.
// The flag is read at every admin request, so withdrawing it takes effect
// at the user's next request.
func (s *Store) SetPlatformAdmin(ctx context.Context, id string, admin bool) error {
	if err := checkUUID("user id", id); err != nil {
		return err
	}
	return s.do(ctx, "set platform admin", true, func(ctx context.Context) error {
		return execOne(ctx, s, `UPDATE users SET platform_admin = $2, updated_at = now()
			WHERE id = $1 AND erased_at IS NULL`, id, admin)
	})
}
