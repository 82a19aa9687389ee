// Package gdpr answers a person's GDPR rights over what helix-authz keeps
// about them: export (art. 15 and 20: everything, as one JSON document) and
// erasure (art. 17: in one transaction, their sessions ended, their tokens
// and the API keys they created revoked, their memberships removed, their
// personal fields emptied and their audit rows pseudonymised, not deleted).
// Fields (fields.go) lists every personal field; docs/privacy.md says the
// same for people.
package gdpr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/audit"
)

// ErrNotFound: no such user.
var ErrNotFound = errors.New("gdpr: no such user")

// Config configures New.
type Config struct {
	Pool *pgxpool.Pool
	// Audit is the trail: Export reads a person's rows from it, and Erase
	// records itself in it, in the erasure's transaction.
	Audit *audit.Store
	// Now stamps the export (default time.Now).
	Now func() time.Time
}

// Service exports and erases people. It implements accounts.Exporter and
// accounts.Eraser.
type Service struct {
	pool  *pgxpool.Pool
	audit *audit.Store
	now   func() time.Time
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Pool == nil || cfg.Audit == nil {
		return nil, errors.New("gdpr: a database pool and the audit trail are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{pool: cfg.Pool, audit: cfg.Audit, now: cfg.Now}, nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// UserRef is a user's audit reference.
func UserRef(userID string) string { return "user:" + userID }

// Format names the export's layout; it changes when a member changes
// meaning.
const Format = "helixflow-personal-data/1"

// section is one member of the export: what the query returns, one
// object per row. Every Field with this Section must be a column of it.
type section struct {
	name string
	one  bool // an object, not a list
	sql  string
}

// sections are the export's members besides "audit", in order. $1 is the
// user id. Secrets and their hashes are never selected.
var sections = []section{
	{"user", true, `SELECT id::text AS id, email, email_verified_at, display_name, organization, preferences,
		platform_admin, created_at, updated_at, erased_at FROM users WHERE id = $1`},
	{"sessions", false, `SELECT id::text AS id, kind, client_id, source, user_agent, created_at, last_seen_at,
		expires_at, ended_at FROM sessions WHERE user_id = $1 ORDER BY created_at, id`},
	{"account_tokens", false, `SELECT purpose, new_email, created_at, expires_at, used_at
		FROM account_tokens WHERE user_id = $1 ORDER BY created_at`},
	{"memberships", false, `SELECT m.org_id::text AS org_id, o.name AS org_name, m.role, m.created_at
		FROM memberships m JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY m.created_at, m.org_id`},
	{"clients_created", false, `SELECT id AS client_id, name, org_id::text AS org_id, scopes, plan, enabled, created_at
		FROM clients WHERE created_by = $1 ORDER BY created_at, id`},
	{"api_keys_created", false, `SELECT id, client_id, name, scopes, expires_at, last_used_at, use_count, revoked_at, created_at
		FROM api_keys WHERE created_by = $1 ORDER BY created_at, id`},
	// A grant's refresh tokens rotate: one entry per grant (family), its
	// newest token's times.
	{"token_grants", false, `SELECT DISTINCT ON (family_id) family_id, client_id, session_id::text AS session_id, scopes,
		requested_at, created_at AS last_refreshed_at, expires_at, revoked_at
		FROM oauth_refresh_tokens WHERE user_id = $1 ORDER BY family_id, created_at DESC`},
}

// Export returns everything helix-authz keeps about userID as one JSON
// object: {"format", "exported_at", "user", "sessions", "account_tokens",
// "memberships", "clients_created", "api_keys_created", "token_grants",
// "audit"}. It reads in one snapshot.
func (s *Service) Export(ctx context.Context, userID string) ([]byte, error) {
	if !uuidRE.MatchString(userID) {
		return nil, ErrNotFound
	}
	out := map[string]any{"format": Format, "exported_at": s.now().UTC()}
	var refs []string
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for _, sec := range sections {
			rows, err := tx.Query(ctx, sec.sql, userID)
			if err != nil {
				return fmt.Errorf("gdpr: export %s: %w", sec.name, err)
			}
			list, err := pgx.CollectRows(rows, pgx.RowToMap)
			if err != nil {
				return fmt.Errorf("gdpr: export %s: %w", sec.name, err)
			}
			if sec.one {
				if len(list) == 0 {
					return ErrNotFound
				}
				out[sec.name] = list[0]
				continue
			}
			if list == nil {
				list = []map[string]any{}
			}
			out[sec.name] = list
		}
		var err error
		refs, err = subjectRefs(ctx, tx, userID)
		return err
	})
	if err != nil {
		return nil, err
	}
	// The trail is append-only and read after the snapshot: it may hold a
	// row or two more, never fewer.
	rows, err := s.audit.About(ctx, refs...)
	if err != nil {
		return nil, fmt.Errorf("gdpr: export audit: %w", err)
	}
	out["audit"] = rows
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("gdpr: export: %w", err)
	}
	return b, nil
}

// subjectRefs are the audit references of a person: their user and each
// of their sessions.
func subjectRefs(ctx context.Context, tx pgx.Tx, userID string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT 'session:' || id::text FROM sessions WHERE user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("gdpr: sessions: %w", err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("gdpr: sessions: %w", err)
	}
	return append([]string{UserRef(userID)}, refs...), nil
}
