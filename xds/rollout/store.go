package rollout

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/internal/rolloutspec"
)

// store reads and writes the rollouts table.
type store struct{ pool *pgxpool.Pool }

// current returns each model's latest rollout unless it is released
// (a released rollout pins nothing: the config's policy, if any, is back).
func (s store) current(ctx context.Context) ([]Rollout, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, model, from_version, from_pool, to_version, to_pool, steps, interval_ms, slo, sticky,
		       state, step, weight, reason, step_started_at, ended_at
		FROM (SELECT DISTINCT ON (model) * FROM rollouts ORDER BY model, id DESC) latest
		WHERE state <> 'released'
		ORDER BY model`)
	if err != nil {
		return nil, fmt.Errorf("read rollouts: %w", err)
	}
	defer rows.Close()
	var out []Rollout
	for rows.Next() {
		var (
			r                Rollout
			steps            []int32
			intervalMs       int64
			slo              []byte
			started, endedAt *time.Time
			step, weight     int32
		)
		if err := rows.Scan(&r.ID, &r.Model, &r.FromVersion, &r.FromPool, &r.ToVersion, &r.ToPool, &steps, &intervalMs, &slo, &r.Sticky,
			&r.State, &step, &weight, &r.Reason, &started, &endedAt); err != nil {
			return nil, fmt.Errorf("read rollouts: %w", err)
		}
		for _, s := range steps {
			r.Steps = append(r.Steps, int(s))
		}
		r.Interval = time.Duration(intervalMs) * time.Millisecond
		r.Step, r.Weight = int(step), int(weight)
		if started != nil {
			r.StepStartedAt = *started
		}
		if endedAt != nil {
			r.EndedAt = *endedAt
		}
		if r.SLO, err = rolloutspec.DecodeSLO(slo); err != nil {
			return nil, fmt.Errorf("read rollouts: rollout %d: %w", r.ID, err)
		}
		out = append(out, r)
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
		next.ID, next.State, next.Step, next.Weight, next.Reason, nullTime(next.StepStartedAt), nullTime(next.EndedAt),
		was.Step, nullTime(was.StepStartedAt))
	if err != nil {
		return false, fmt.Errorf("write rollout %d: %w", next.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
