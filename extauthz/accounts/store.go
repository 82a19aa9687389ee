package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/session"
)

// Purposes of account tokens (account_tokens.purpose).
const (
	PurposeVerify = "verify_email"
	PurposeReset  = "reset_password"
	PurposeChange = "change_email"
)

// Store errors callers act on.
var (
	errNotFound = errors.New("accounts: not found")
	errExists   = errors.New("accounts: the email address is taken")
	// errBadToken: unknown, used, expired or for another purpose: one
	// error for all, so an answer tells nothing about which.
	errBadToken = errors.New("accounts: invalid token")
)

// User is an account as the API shows it to its owner.
type User struct {
	ID            string          `json:"id"`
	Email         string          `json:"email"`
	EmailVerified bool            `json:"email_verified"`
	DisplayName   string          `json:"display_name"`
	Organization  string          `json:"organization"`
	Preferences   json.RawMessage `json:"preferences"`
	PlatformAdmin bool            `json:"platform_admin"`
	CreatedAt     time.Time       `json:"created_at"`

	passwordHash string
}

// store is the accounts' SQL; every value travels as a parameter.
type store struct{ db *pgxpool.Pool }

const userColumns = `id::text, email, email_verified_at IS NOT NULL, display_name, organization,
	preferences, platform_admin, created_at, coalesce(password_hash, '')`

func scanUser(row pgx.Row) (*User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Email, &u.EmailVerified, &u.DisplayName, &u.Organization,
		&u.Preferences, &u.PlatformAdmin, &u.CreatedAt, &u.passwordHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: read user: %w", err)
	}
	return &u, nil
}

// byEmail returns the live (not erased) account with email (lower-cased).
func (s store) byEmail(ctx context.Context, email string) (*User, error) {
	return scanUser(s.db.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE email = $1 AND erased_at IS NULL`, email))
}

// byID returns the live account id.
func (s store) byID(ctx context.Context, id string) (*User, error) {
	if !session.IsUUID(id) {
		return nil, errNotFound
	}
	return scanUser(s.db.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1::uuid AND erased_at IS NULL`, id))
}

// create inserts an unverified account; errExists when the email is taken.
func (s store) create(ctx context.Context, email, hash, displayName, organization string) (string, error) {
	var id string
	err := s.db.QueryRow(ctx, `
		INSERT INTO users (email, password_hash, display_name, organization)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (email) DO NOTHING
		RETURNING id::text`, email, hash, displayName, organization).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", errExists
	}
	if err != nil {
		return "", fmt.Errorf("accounts: create user: %w", err)
	}
	return id, nil
}

// setPassword replaces id's hash and voids its open reset links: a link
// mailed before a change must not undo it.
func (s store) setPassword(ctx context.Context, id, hash string) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1::uuid AND erased_at IS NULL`, id, hash); err != nil {
			return fmt.Errorf("accounts: set password: %w", err)
		}
		return voidTokens(ctx, tx, id, PurposeReset)
	})
}

// rehash replaces id's hash only if it is still old (a concurrent change
// of password wins).
func (s store) rehash(ctx context.Context, id, old, hash string) error {
	_, err := s.db.Exec(ctx, `UPDATE users SET password_hash = $3 WHERE id = $1::uuid AND password_hash = $2`, id, old, hash)
	if err != nil {
		return fmt.Errorf("accounts: rehash: %w", err)
	}
	return nil
}

// profile is a PATCH of the profile; nil fields stay.
type profile struct {
	DisplayName  *string
	Organization *string
	Preferences  json.RawMessage
}

func (s store) updateProfile(ctx context.Context, id string, p profile) (*User, error) {
	var prefs *string
	if p.Preferences != nil {
		v := string(p.Preferences)
		prefs = &v
	}
	return scanUser(s.db.QueryRow(ctx, `
		UPDATE users SET
			display_name = coalesce($2, display_name),
			organization = coalesce($3, organization),
			preferences  = coalesce($4::jsonb, preferences),
			updated_at   = now()
		WHERE id = $1::uuid AND erased_at IS NULL
		RETURNING `+userColumns, id, p.DisplayName, p.Organization, prefs))
}

// issueToken stores a new single-use link token and returns its secret.
func (s store) issueToken(ctx context.Context, userID, purpose, newEmail string, lifetime time.Duration) (string, error) {
	secret, err := session.NewSecret()
	if err != nil {
		return "", err
	}
	var email *string
	if newEmail != "" {
		email = &newEmail
	}
	_, err = s.db.Exec(ctx, `
		INSERT INTO account_tokens (token_hash, user_id, purpose, new_email, expires_at)
		VALUES ($1, $2::uuid, $3, $4, now() + make_interval(secs => $5))`,
		session.Hash(secret), userID, purpose, email, lifetime.Seconds())
	if err != nil {
		return "", fmt.Errorf("accounts: issue token: %w", err)
	}
	return secret, nil
}

// consumed is what a used token said.
type consumed struct {
	UserID, Purpose, NewEmail string
}

// consume uses a token of one of purposes, once, inside tx.
func consume(ctx context.Context, tx pgx.Tx, secret string, purposes ...string) (consumed, error) {
	var c consumed
	var newEmail *string
	err := tx.QueryRow(ctx, `
		UPDATE account_tokens t SET used_at = now()
		FROM users u
		WHERE t.token_hash = $1 AND t.purpose = ANY($2) AND t.used_at IS NULL AND t.expires_at > now()
		  AND u.id = t.user_id AND u.erased_at IS NULL
		RETURNING t.user_id::text, t.purpose, t.new_email`, session.Hash(secret), purposes,
	).Scan(&c.UserID, &c.Purpose, &newEmail)
	if errors.Is(err, pgx.ErrNoRows) {
		return consumed{}, errBadToken
	}
	if err != nil {
		return consumed{}, fmt.Errorf("accounts: use token: %w", err)
	}
	if newEmail != nil {
		c.NewEmail = *newEmail
	}
	return c, nil
}

func voidTokens(ctx context.Context, tx pgx.Tx, userID, purpose string) error {
	_, err := tx.Exec(ctx, `UPDATE account_tokens SET used_at = now() WHERE user_id = $1::uuid AND purpose = $2 AND used_at IS NULL`, userID, purpose)
	if err != nil {
		return fmt.Errorf("accounts: void tokens: %w", err)
	}
	return nil
}

// verify uses a verification or email-change link: the address is
// verified (or replaced by the new one, verified). errExists when the new
// address was taken meanwhile.
func (s store) verify(ctx context.Context, secret string) (*User, consumed, error) {
	var u *User
	var c consumed
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		if c, err = consume(ctx, tx, secret, PurposeVerify, PurposeChange); err != nil {
			return err
		}
		if c.Purpose == PurposeChange {
			u, err = scanUser(tx.QueryRow(ctx, `
				UPDATE users SET email = $2, email_verified_at = now(), updated_at = now()
				WHERE id = $1::uuid RETURNING `+userColumns, c.UserID, c.NewEmail))
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23505" {
				return errExists
			}
			if err != nil {
				return err
			}
			return voidTokens(ctx, tx, c.UserID, PurposeChange)
		}
		u, err = scanUser(tx.QueryRow(ctx, `
			UPDATE users SET email_verified_at = coalesce(email_verified_at, now()), updated_at = now()
			WHERE id = $1::uuid RETURNING `+userColumns, c.UserID))
		return err
	})
	return u, c, err
}

// reset uses a reset link and sets the new hash. Completing a reset proves
// the mailbox, so it verifies the address too.
func (s store) reset(ctx context.Context, secret, hash string) (string, error) {
	var userID string
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		c, err := consume(ctx, tx, secret, PurposeReset)
		if err != nil {
			return err
		}
		userID = c.UserID
		if _, err := tx.Exec(ctx, `
			UPDATE users SET password_hash = $2, email_verified_at = coalesce(email_verified_at, now()), updated_at = now()
			WHERE id = $1::uuid`, userID, hash); err != nil {
			return fmt.Errorf("accounts: reset: %w", err)
		}
		return voidTokens(ctx, tx, userID, PurposeReset)
	})
	return userID, err
}
