package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/session"
)

// PeopleDB answers People from the database: one query per request, as
// for any people's API call.
type PeopleDB struct{ Pool *pgxpool.Pool }

// PersonScopes implements People.
func (p PeopleDB) PersonScopes(ctx context.Context, userID string) (admin bool, scopes []string, found bool, err error) {
	if !session.IsUUID(userID) {
		return false, nil, false, nil
	}
	err = p.Pool.QueryRow(ctx, `
		SELECT u.platform_admin, ARRAY(
			SELECT DISTINCT s FROM memberships m JOIN organizations o ON o.id = m.org_id,
				unnest(o.allowed_scopes) s
			WHERE m.user_id = u.id ORDER BY s)
		FROM users u WHERE u.id = $1::uuid AND u.erased_at IS NULL`, userID).Scan(&admin, &scopes)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil, false, nil
	}
	if err != nil {
		return false, nil, false, fmt.Errorf("catalog: a person's organizations: %w", err)
	}
	return admin, scopes, true, nil
}
