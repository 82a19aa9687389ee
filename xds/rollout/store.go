package rollout

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/internal/rolloutspec"
)

// store reads and writes the rollouts table.
type store struct{ pool *pgxpool.Pool }

// current returns each model's latest rollout unless it is released
// (a released rollout pins nothing: the config's policy, if any, is back).
func (s store) current(ctx context.Context) ([]Rollout, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+rolloutspec.Columns+`
		FROM (SELECT DISTINCT ON (model) * FROM rollouts ORDER BY model, id DESC) latest
		WHERE state <> 'released'
		ORDER BY model`)
	if err != nil {
		return nil, fmt.Errorf("read rollouts: %w", err)
	}
	defer rows.Close()
	var out []Rollout
	for rows.Next() {
		r, err := rolloutspec.Scan(rows)
		if err != nil {
			return nil, fmt.Errorf("read rollouts: %w", err)
		}
		out = append(out, Rollout{r})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rollouts: %w", err)
	}
	return out, nil
}

// save writes the controller's columns of next if the row still is as
// it was read (running, at was's step and start): an operator's pause or
// abort, or another helix-xds replica's decision, in between wins, and
// save reports false.
func (s store) save(ctx context.Context, was, next Rollout) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE rollouts SET state = $2, step = $3, weight = $4, reason = $5, step_started_at = $6, ended_at = $7, updated_at = now()
		WHERE id = $1 AND state = 'running' AND step = $8 AND step_started_at IS NOT DISTINCT FROM $9`,
		next.ID, next.State, next.Step, next.Weight, next.Reason, next.StepStartedAt, next.EndedAt,
		was.Step, was.StepStartedAt)
	if err != nil {
		return false, fmt.Errorf("write rollout %d: %w", next.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}
