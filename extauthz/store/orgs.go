package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Errors of organizations.
var (
	// ErrLimit: the organization has as many clients or live API keys as
	// its policy allows.
	ErrLimit = errors.New("organization limit reached")
	// ErrLastOwner: the change would leave the organization without an
	// owner.
	ErrLastOwner = errors.New("an organization keeps at least one owner")
	// ErrRevoked: the API key is revoked (it cannot be rotated).
	ErrRevoked = errors.New("api key revoked")
	// ErrRotated: the API key was rotated already (rotate its successor).
	ErrRotated = errors.New("api key already rotated")
)

// Roles of a membership, from most to least powerful.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
	RoleViewer = "viewer"
)

// Org is an organization and its policy.
type Org struct {
	ID   string
	Name string
	// Policy: the plans and scopes its clients and keys may have, and how
	// many clients and live keys it may hold.
	AllowedPlans  []string
	AllowedScopes []string
	MaxAPIKeys    int
	MaxClients    int
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Member is a membership with its user's public fields.
type Member struct {
	UserID      string
	Email       string // "" once the user is erased
	DisplayName string
	Role        string
	CreatedAt   time.Time
}

// OrgRole is an organization with the role a user has in it.
type OrgRole struct {
	Org
	Role string
}

// DayCount is one day's uses of an API key (UTC days).
type DayCount struct {
	Day   time.Time
	Count int64
}

const orgColumns = `id, name, allowed_plans, allowed_scopes, max_api_keys, max_clients, created_at, updated_at`

func scanOrg(row pgx.Row, o *Org, extra ...any) error {
	return row.Scan(append([]any{&o.ID, &o.Name, &o.AllowedPlans, &o.AllowedScopes, &o.MaxAPIKeys, &o.MaxClients,
		&o.CreatedAt, &o.UpdatedAt}, extra...)...)
}

func validateOrg(o *Org) error {
	if o == nil {
		return fmt.Errorf("store: nil organization: %w", ErrInvalid)
	}
	if err := checkID("organization name", o.Name); err != nil {
		return err
	}
	return validatePolicy(o)
}

func validatePolicy(o *Org) error {
	if err := checkList("organization allowed plans", o.AllowedPlans); err != nil {
		return err
	}
	if err := checkList("organization allowed scopes", o.AllowedScopes); err != nil {
		return err
	}
	if o.MaxAPIKeys < 0 || o.MaxClients < 0 {
		return fmt.Errorf("store: negative organization limit: %w", ErrInvalid)
	}
	return nil
}

// checkUUID refuses what is not a UUID before Postgres does, so that a
// malformed id in a path is "not found", like an unknown one.
func checkUUID(field, v string) error {
	if len(v) != 36 {
		return fmt.Errorf("store: %s: %w", field, ErrNotFound)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return fmt.Errorf("store: %s: %w", field, ErrNotFound)
			}
		case (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F'):
			return fmt.Errorf("store: %s: %w", field, ErrNotFound)
		}
	}
	return nil
}

// inTx runs fn in a transaction under the store's timeout and error rules.
// Not retried after an unknown outcome: fn may insert.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	return s.do(ctx, op, false, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(tx) })
	})
}

// lockOrg locks the organization's row for the transaction: the changes
// that must see a consistent count (clients, keys, owners) take turns.
func lockOrg(ctx context.Context, tx pgx.Tx, orgID string, o *Org) error {
	return scanOrg(tx.QueryRow(ctx, `SELECT `+orgColumns+` FROM organizations WHERE id = $1 FOR UPDATE`, orgID), o)
}

// CreateOrg inserts o with ownerID as its owner, in one transaction, and
// writes its id and times back into o.
func (s *Store) CreateOrg(ctx context.Context, o *Org, ownerID string) error {
	if err := validateOrg(o); err != nil {
		return err
	}
	if err := checkUUID("owner id", ownerID); err != nil {
		return err
	}
	return s.inTx(ctx, "create organization", func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `
			INSERT INTO organizations (name, allowed_plans, allowed_scopes, max_api_keys, max_clients)
			VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at, updated_at`,
			o.Name, orEmpty(o.AllowedPlans), orEmpty(o.AllowedScopes), o.MaxAPIKeys, o.MaxClients,
		).Scan(&o.ID, &o.CreatedAt, &o.UpdatedAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'owner')`, o.ID, ownerID)
		return err
	})
}

// GetOrg returns the organization with id, or ErrNotFound.
func (s *Store) GetOrg(ctx context.Context, id string) (*Org, error) {
	if err := checkUUID("organization id", id); err != nil {
		return nil, err
	}
	var o Org
	err := s.do(ctx, "get organization", true, func(ctx context.Context) error {
		return scanOrg(s.pool.QueryRow(ctx, `SELECT `+orgColumns+` FROM organizations WHERE id = $1`, id), &o)
	})
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// ListOrgs returns every organization, oldest first.
func (s *Store) ListOrgs(ctx context.Context) ([]Org, error) {
	var out []Org
	err := s.do(ctx, "list organizations", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT `+orgColumns+` FROM organizations ORDER BY created_at, id`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Org, error) {
			var o Org
			return o, scanOrg(row, &o)
		})
		return err
	})
	return out, err
}

// UserOrgs returns the organizations userID belongs to, with the role.
func (s *Store) UserOrgs(ctx context.Context, userID string) ([]OrgRole, error) {
	if err := checkUUID("user id", userID); err != nil {
		return nil, nil
	}
	var out []OrgRole
	err := s.do(ctx, "list user's organizations", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `
			SELECT o.id, o.name, o.allowed_plans, o.allowed_scopes, o.max_api_keys, o.max_clients,
				o.created_at, o.updated_at, m.role
			FROM organizations o JOIN memberships m ON m.org_id = o.id
			WHERE m.user_id = $1 ORDER BY o.created_at, o.id`, userID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (OrgRole, error) {
			var o OrgRole
			return o, scanOrg(row, &o.Org, &o.Role)
		})
		return err
	})
	return out, err
}

// RenameOrg sets the organization's name.
func (s *Store) RenameOrg(ctx context.Context, id, name string) error {
	if err := checkUUID("organization id", id); err != nil {
		return err
	}
	if err := checkID("organization name", name); err != nil {
		return err
	}
	return s.do(ctx, "rename organization", true, func(ctx context.Context) error {
		return execOne(ctx, s, `UPDATE organizations SET name = $2, updated_at = now() WHERE id = $1`, id, name)
	})
}

// SetOrgPolicy writes o's policy (plans, scopes, limits) to the
// organization with o.ID. Lowering a limit below what the organization
// holds removes nothing: it only refuses new clients and keys.
func (s *Store) SetOrgPolicy(ctx context.Context, o *Org) error {
	if o == nil {
		return fmt.Errorf("store: nil organization: %w", ErrInvalid)
	}
	if err := validatePolicy(o); err != nil {
		return err
	}
	if err := checkUUID("organization id", o.ID); err != nil {
		return err
	}
	return s.do(ctx, "set organization policy", true, func(ctx context.Context) error {
		return scanOrg(s.pool.QueryRow(ctx, `
			UPDATE organizations SET allowed_plans = $2, allowed_scopes = $3, max_api_keys = $4, max_clients = $5,
				updated_at = now()
			WHERE id = $1 RETURNING `+orgColumns,
			o.ID, orEmpty(o.AllowedPlans), orEmpty(o.AllowedScopes), o.MaxAPIKeys, o.MaxClients), o)
	})
}

// DeleteOrg deletes the organization and, with it, its memberships,
// clients and their API keys.
func (s *Store) DeleteOrg(ctx context.Context, id string) error {
	if err := checkUUID("organization id", id); err != nil {
		return err
	}
	return s.do(ctx, "delete organization", true, func(ctx context.Context) error {
		return execOne(ctx, s, `DELETE FROM organizations WHERE id = $1`, id)
	})
}

// MemberRole returns userID's role in orgID, or ErrNotFound when the user
// is no member (or the organization does not exist).
func (s *Store) MemberRole(ctx context.Context, orgID, userID string) (string, error) {
	if err := checkUUID("organization id", orgID); err != nil {
		return "", err
	}
	if err := checkUUID("user id", userID); err != nil {
		return "", err
	}
	var role string
	err := s.do(ctx, "get membership", true, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2`, orgID, userID).Scan(&role)
	})
	return role, err
}

// ListMembers returns the organization's members, oldest first.
func (s *Store) ListMembers(ctx context.Context, orgID string) ([]Member, error) {
	if err := checkUUID("organization id", orgID); err != nil {
		return nil, err
	}
	var out []Member
	err := s.do(ctx, "list members", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `
			SELECT m.user_id, coalesce(u.email, ''), u.display_name, m.role, m.created_at
			FROM memberships m JOIN users u ON u.id = m.user_id
			WHERE m.org_id = $1 ORDER BY m.created_at, m.user_id`, orgID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Member, error) {
			var m Member
			return m, row.Scan(&m.UserID, &m.Email, &m.DisplayName, &m.Role, &m.CreatedAt)
		})
		return err
	})
	return out, err
}

// AddMember makes userID a member of orgID with role; ErrConflict when it
// is one already.
func (s *Store) AddMember(ctx context.Context, orgID, userID, role string) error {
	if err := checkUUID("organization id", orgID); err != nil {
		return err
	}
	if err := checkUUID("user id", userID); err != nil {
		return err
	}
	return s.do(ctx, "add member", false, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)`, orgID, userID, role)
		return err
	})
}

// SetMemberRole changes userID's role in orgID; role "" removes the
// membership. Either way the organization keeps an owner (ErrLastOwner).
// ErrNotFound when userID is no member.
func (s *Store) SetMemberRole(ctx context.Context, orgID, userID, role string) error {
	if err := checkUUID("organization id", orgID); err != nil {
		return err
	}
	if err := checkUUID("user id", userID); err != nil {
		return err
	}
	return s.inTx(ctx, "change member", func(tx pgx.Tx) error {
		var o Org
		if err := lockOrg(ctx, tx, orgID, &o); err != nil {
			return err
		}
		var current string
		if err := tx.QueryRow(ctx, `SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2`, orgID, userID).Scan(&current); err != nil {
			return err
		}
		if current == RoleOwner && role != RoleOwner {
			var owners int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM memberships WHERE org_id = $1 AND role = 'owner'`, orgID).Scan(&owners); err != nil {
				return err
			}
			if owners <= 1 {
				return ErrLastOwner
			}
		}
		if role == "" {
			_, err := tx.Exec(ctx, `DELETE FROM memberships WHERE org_id = $1 AND user_id = $2`, orgID, userID)
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2`, orgID, userID, role)
		return err
	})
}

// ListOrgClients returns the organization's clients, ordered by id.
func (s *Store) ListOrgClients(ctx context.Context, orgID string) ([]Client, error) {
	if err := checkUUID("organization id", orgID); err != nil {
		return nil, err
	}
	var out []Client
	err := s.do(ctx, "list organization clients", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT `+clientColumns+` FROM clients WHERE org_id = $1 ORDER BY id`, orgID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Client, error) {
			var c Client
			return c, scanClient(row, &c)
		})
		return err
	})
	return out, err
}

// CreateOrgClient inserts c (c.OrgID set) unless its organization holds
// max_clients clients already (ErrLimit); the organization's row is locked
// meanwhile, so concurrent creations cannot pass the limit together.
func (s *Store) CreateOrgClient(ctx context.Context, c *Client) error {
	if err := validateClient(c); err != nil {
		return err
	}
	if len(c.SecretHash) == 0 {
		return fmt.Errorf("store: client secret hash is empty: %w", ErrInvalid)
	}
	if err := checkUUID("organization id", c.OrgID); err != nil {
		return err
	}
	return s.inTx(ctx, "create organization client", func(tx pgx.Tx) error {
		var o Org
		if err := lockOrg(ctx, tx, c.OrgID, &o); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM clients WHERE org_id = $1`, c.OrgID).Scan(&n); err != nil {
			return err
		}
		if n >= o.MaxClients {
			return fmt.Errorf("%w: %d clients of %d", ErrLimit, n, o.MaxClients)
		}
		return insertClient(ctx, tx, c)
	})
}

// liveOrgKeys counts the organization's keys that count against its limit:
// not revoked, not expired, not replaced by a rotation (a key in its
// overlap is on its way out; its successor counts).
const liveOrgKeys = `
	SELECT count(*) FROM api_keys k JOIN clients c ON c.id = k.client_id
	WHERE c.org_id = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
	  AND NOT EXISTS (SELECT 1 FROM api_keys n WHERE n.replaces = k.id)`

// CreateOrgAPIKey inserts k, whose client must belong to orgID
// (ErrNotFound otherwise), unless the organization holds max_api_keys live
// keys already (ErrLimit).
func (s *Store) CreateOrgAPIKey(ctx context.Context, orgID string, k *APIKey) error {
	if err := validateAPIKey(k); err != nil {
		return err
	}
	if err := checkUUID("organization id", orgID); err != nil {
		return err
	}
	return s.inTx(ctx, "create organization api key", func(tx pgx.Tx) error {
		var o Org
		if err := lockOrg(ctx, tx, orgID, &o); err != nil {
			return err
		}
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clients WHERE id = $1 AND org_id = $2)`, k.ClientID, orgID).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("client: %w", ErrNotFound)
		}
		var n int
		if err := tx.QueryRow(ctx, liveOrgKeys, orgID).Scan(&n); err != nil {
			return err
		}
		if n >= o.MaxAPIKeys {
			return fmt.Errorf("%w: %d live API keys of %d", ErrLimit, n, o.MaxAPIKeys)
		}
		return insertAPIKey(ctx, tx, k)
	})
}

// RotateAPIKey inserts next (next.Replaces names the old key, which must
// belong to a client of orgID) and moves the old key's expiry to oldUntil
// (or keeps an earlier one), in one transaction. The old key must be
// neither revoked (ErrRevoked) nor rotated already (ErrRotated). A rotation
// does not count against the organization's key limit: one key replaces
// another. The expiry change notifies every replica, whose Check refuses
// the old key from oldUntil.
func (s *Store) RotateAPIKey(ctx context.Context, orgID string, next *APIKey, oldUntil time.Time) error {
	if next == nil {
		return fmt.Errorf("store: nil api key: %w", ErrInvalid)
	}
	if err := checkUUID("organization id", orgID); err != nil {
		return err
	}
	if err := checkID("replaced api key id", next.Replaces); err != nil {
		return err
	}
	return s.inTx(ctx, "rotate api key", func(tx pgx.Tx) error {
		var old APIKey
		if err := scanAPIKey(tx.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys
			WHERE id = $1 AND client_id IN (SELECT id FROM clients WHERE org_id = $2) FOR UPDATE`,
			next.Replaces, orgID), &old); err != nil {
			return err
		}
		if old.RevokedAt != nil {
			return ErrRevoked
		}
		var rotated bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM api_keys WHERE replaces = $1)`, old.ID).Scan(&rotated); err != nil {
			return err
		}
		if rotated {
			return ErrRotated
		}
		next.ClientID = old.ClientID
		if err := validateAPIKey(next); err != nil {
			return err
		}
		if err := insertAPIKey(ctx, tx, next); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE api_keys SET expires_at = least(coalesce(expires_at, $2), $2) WHERE id = $1`, old.ID, oldUntil)
		return err
	})
}

// ListOrgAPIKeys returns the API keys of the organization's clients,
// oldest first.
func (s *Store) ListOrgAPIKeys(ctx context.Context, orgID string) ([]APIKey, error) {
	if err := checkUUID("organization id", orgID); err != nil {
		return nil, err
	}
	var out []APIKey
	err := s.do(ctx, "list organization api keys", true, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys
			WHERE client_id IN (SELECT id FROM clients WHERE org_id = $1) ORDER BY created_at, id`, orgID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIKey, error) {
			var k APIKey
			return k, scanAPIKey(row, &k)
		})
		return err
	})
	return out, err
}

// APIKeyUsage returns the daily uses of the keys with ids, from the UTC
// day of since on, oldest day first, by key id.
func (s *Store) APIKeyUsage(ctx context.Context, ids []string, since time.Time) (map[string][]DayCount, error) {
	if err := checkList("api key ids", ids); err != nil {
		return nil, err
	}
	out := make(map[string][]DayCount, len(ids))
	err := s.do(ctx, "api key usage", true, func(ctx context.Context) error {
		clear(out)
		rows, err := s.pool.Query(ctx, `SELECT key_id, day, count FROM api_key_usage_daily
			WHERE key_id = ANY($1) AND day >= ($2::timestamptz AT TIME ZONE 'UTC')::date ORDER BY key_id, day`, orEmpty(ids), since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var d DayCount
			if err := rows.Scan(&id, &d.Day, &d.Count); err != nil {
				return err
			}
			out[id] = append(out[id], d)
		}
		return rows.Err()
	})
	return out, err
}

// GetAPIKey returns the key with id (not prefix), or ErrNotFound.
func (s *Store) GetAPIKey(ctx context.Context, id string) (*APIKey, error) {
	if err := checkID("api key id", id); err != nil {
		return nil, err
	}
	var k APIKey
	err := s.do(ctx, "get api key", true, func(ctx context.Context) error {
		return scanAPIKey(s.pool.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`, id), &k)
	})
	if err != nil {
		return nil, err
	}
	return &k, nil
}
