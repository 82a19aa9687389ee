package gdpr

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/session"
)

// Erasure says what Erase did.
type Erasure struct {
	UserID string `json:"user_id"`
	// AlreadyErased: the account had been erased before; this erasure
	// found what was left (sessions, keys) and removed it again.
	AlreadyErased        bool  `json:"already_erased,omitempty"`
	SessionsEnded        int64 `json:"sessions_ended"`
	RefreshTokensRevoked int64 `json:"refresh_tokens_revoked"`
	APIKeysRevoked       int64 `json:"api_keys_revoked"`
	MembershipsRemoved   int64 `json:"memberships_removed"`
	// OwnersPromoted: organizations the person was the last owner of,
	// whose longest-standing admin became an owner (org id -> user id).
	OwnersPromoted map[string]string `json:"owners_promoted,omitempty"`
	// OrgsWithoutOwner: organizations the person was the last owner of and
	// that had no admin to promote: a platform admin must name an owner
	// (their clients and keys keep working meanwhile).
	OrgsWithoutOwner       []string `json:"orgs_without_owner,omitempty"`
	AuditRowsPseudonymised int64    `json:"audit_rows_pseudonymised"`
	// AuditSeq is the audit row that records this erasure.
	AuditSeq int64 `json:"audit_seq"`
}

// Erase erases userID; by names who asked (Actor, Operator, Source,
// UserAgent). It implements accounts.Eraser.
func (s *Service) Erase(ctx context.Context, userID string, by audit.Event) error {
	_, err := s.Erasure(ctx, userID, by)
	return err
}

// Erasure erases userID in one transaction, and records it in the audit
// trail in the same one, so that either all of it happens or none:
//   - every session ends, its "sid:" revoked (access tokens die within the
//     notification delay);
//   - every refresh token is revoked and unused authorization codes go;
//   - the API keys the person created are revoked (an organization's
//     application built on such a key needs a new one: the person who
//     made it is gone, and a key stays a credential of whoever holds it);
//     the clients they created stay, they belong to their organization;
//   - memberships are removed; an organization left without an owner gets
//     its longest-standing admin as owner, or is reported without one;
//   - the personal fields of Fields are emptied (the users row stays,
//     with erased_at, since audit rows and created_by point to it);
//   - audit rows whose actor or target is the person or one of their
//     sessions are pseudonymised: their source, user agent and operator go,
//     the rows and the chain stay.
func (s *Service) Erasure(ctx context.Context, userID string, by audit.Event) (*Erasure, error) {
	if !uuidRE.MatchString(userID) {
		return nil, ErrNotFound
	}
	e := &Erasure{UserID: userID}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var erased bool
		err := tx.QueryRow(ctx, `SELECT erased_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&erased)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("gdpr: erase: %w", err)
		}
		e.AlreadyErased = erased
		refs, err := subjectRefs(ctx, tx, userID)
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE user_id = $1 AND ended_at IS NULL`, userID).Scan(&e.SessionsEnded); err != nil {
			return fmt.Errorf("gdpr: erase: sessions: %w", err)
		}
		if err := session.EndAllTx(ctx, tx, userID); err != nil {
			return err
		}
		steps := []struct {
			n   *int64
			sql string
		}{
			{&e.RefreshTokensRevoked, `UPDATE oauth_refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL`},
			{nil, `DELETE FROM oauth_codes WHERE user_id = $1`},
			{&e.APIKeysRevoked, `UPDATE api_keys SET revoked_at = now() WHERE created_by = $1 AND revoked_at IS NULL`},
			{nil, `DELETE FROM account_tokens WHERE user_id = $1`},
			{nil, `UPDATE users SET ` + sqlErased("users") + `, platform_admin = false,
				erased_at = coalesce(erased_at, now()), updated_at = now() WHERE id = $1`},
			{nil, `UPDATE sessions SET ` + sqlErased("sessions") + ` WHERE user_id = $1`},
		}
		if err := s.leaveOrgs(ctx, tx, userID, e); err != nil {
			return err
		}
		for _, st := range steps {
			tag, err := tx.Exec(ctx, st.sql, userID)
			if err != nil {
				return fmt.Errorf("gdpr: erase: %w", err)
			}
			if st.n != nil {
				*st.n = tag.RowsAffected()
			}
		}
		if e.AuditRowsPseudonymised, err = audit.Pseudonymise(ctx, tx, refs...); err != nil {
			return err
		}
		ev := by
		ev.Action, ev.Target, ev.Result = "user.erase", UserRef(userID), audit.ResultSuccess
		if ev.Actor == UserRef(userID) {
			// The person erased themselves: their address and user agent
			// would be the first personal data kept after the erasure.
			ev.Operator, ev.Source, ev.UserAgent = "", "", ""
		}
		ev.Detail = map[string]string{
			"sessions_ended":           strconv.FormatInt(e.SessionsEnded, 10),
			"refresh_tokens_revoked":   strconv.FormatInt(e.RefreshTokensRevoked, 10),
			"api_keys_revoked":         strconv.FormatInt(e.APIKeysRevoked, 10),
			"memberships_removed":      strconv.FormatInt(e.MembershipsRemoved, 10),
			"audit_rows_pseudonymised": strconv.FormatInt(e.AuditRowsPseudonymised, 10),
		}
		if e.AuditSeq, err = s.audit.RecordTx(ctx, tx, ev); err != nil {
			return err
		}
		for org, owner := range e.OwnersPromoted {
			if _, err := s.audit.RecordTx(ctx, tx, audit.Event{Actor: "system", Action: "org.member.promote",
				Target: "org:" + org, Result: audit.ResultSuccess,
				Detail: map[string]string{"user": UserRef(owner), "role": "owner", "reason": "last owner erased"}}); err != nil {
				return err
			}
		}
		for _, org := range e.OrgsWithoutOwner {
			if _, err := s.audit.RecordTx(ctx, tx, audit.Event{Actor: "system", Action: "org.owner.lost",
				Target: "org:" + org, Result: audit.ResultSuccess,
				Detail: map[string]string{"reason": "last owner erased, no admin to promote"}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// leaveOrgs removes the person's memberships. Each organization's row is
// locked first, in id order (what changing members locks, so the "at least
// one owner" check of extauthz/orgs sees this change whole).
func (s *Service) leaveOrgs(ctx context.Context, tx pgx.Tx, userID string, e *Erasure) error {
	rows, err := tx.Query(ctx, `SELECT o.id::text FROM organizations o
		WHERE o.id IN (SELECT org_id FROM memberships WHERE user_id = $1 AND role = 'owner')
		ORDER BY o.id FOR UPDATE OF o`, userID)
	if err != nil {
		return fmt.Errorf("gdpr: erase: lock organizations: %w", err)
	}
	owned, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("gdpr: erase: lock organizations: %w", err)
	}
	for _, org := range owned {
		var others bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM memberships
			WHERE org_id = $1 AND role = 'owner' AND user_id <> $2)`, org, userID).Scan(&others); err != nil {
			return fmt.Errorf("gdpr: erase: owners: %w", err)
		}
		if others {
			continue
		}
		// Only an admin is promoted: making a member or viewer owner would
		// give them powers nobody granted.
		var promoted string
		err := tx.QueryRow(ctx, `UPDATE memberships SET role = 'owner'
			WHERE (org_id, user_id) = (SELECT org_id, user_id FROM memberships
				WHERE org_id = $1 AND role = 'admin' AND user_id <> $2 ORDER BY created_at, user_id LIMIT 1)
			RETURNING user_id::text`, org, userID).Scan(&promoted)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			e.OrgsWithoutOwner = append(e.OrgsWithoutOwner, org)
		case err != nil:
			return fmt.Errorf("gdpr: erase: promote an owner: %w", err)
		default:
			if e.OwnersPromoted == nil {
				e.OwnersPromoted = map[string]string{}
			}
			e.OwnersPromoted[org] = promoted
		}
	}
	tag, err := tx.Exec(ctx, `DELETE FROM memberships WHERE user_id = $1`, userID)
	if err != nil {
		return fmt.Errorf("gdpr: erase: memberships: %w", err)
	}
	e.MembershipsRemoved = tag.RowsAffected()
	return nil
}
