package rollouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/rolloutspec"
)

// queryTimeout bounds one statement (few rows, indexed).
const queryTimeout = 5 * time.Second

// MaxList bounds List's limit.
const MaxList = 1000

// Store reads and writes the rollouts table. Errors wrap the sentinels of
// extauthz/store (ErrNotFound, ErrInvalid, ErrUnavailable) that the admin
// API answers, or are an *InProgressError or *StateError.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool (helix-authz's database).
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// InProgressError: the model has a rollout in progress already (one per
// model); Running is it.
type InProgressError struct {
	Model   string
	Running *Rollout // nil when it ended before it could be read
}

func (e *InProgressError) Error() string {
	if e.Running == nil {
		return fmt.Sprintf("model %q has a rollout in progress", e.Model)
	}
	return fmt.Sprintf("model %q has rollout %d in progress (%s, canary at %d%%): abort it, or wait until it ends, before starting another",
		e.Model, e.Running.ID, e.Running.State, e.Running.Weight)
}

// Is makes an InProgressError a store.ErrConflict.
func (e *InProgressError) Is(target error) bool { return target == store.ErrConflict }

// StateError: the rollout is not in a state the change applies to.
type StateError struct {
	ID     int64
	State  string
	Action string   // "pause", "resume", "abort", "release"
	From   []string // the states Action applies to
}

func (e *StateError) Error() string {
	return fmt.Sprintf("rollout %d is %s: %s applies to a rollout that is %s", e.ID, e.State, e.Action, strings.Join(e.From, " or "))
}

// Is makes a StateError a store.ErrConflict.
func (e *StateError) Is(target error) bool { return target == store.ErrConflict }

const columns = rolloutspec.Columns

func scan(row pgx.Row) (*Rollout, error) {
	r, err := rolloutspec.Scan(row)
	if err != nil {
		return nil, err
	}
	return &Rollout{r}, nil
}

// Create inserts r (as Request.Check made it) and fills its id and times.
// A rollout in progress for the model gives an *InProgressError.
func (s *Store) Create(ctx context.Context, r *Rollout) error {
	slo, err := json.Marshal(r.SLO)
	if err != nil {
		return fmt.Errorf("rollouts: create: %w", err)
	}
	steps := make([]int32, len(r.Steps))
	for i, v := range r.Steps {
		steps[i] = int32(v)
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	created, err := scan(s.pool.QueryRow(ctx, `
		INSERT INTO rollouts (model, from_version, from_pool, to_version, to_pool, steps, interval_ms, slo, sticky,
			state, step, weight, reason, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, -1, 0, '', $11)
		RETURNING `+columns,
		r.Model, r.FromVersion, r.FromPool, r.ToVersion, r.ToPool, steps, r.Interval.Milliseconds(), string(slo), r.Sticky,
		rolloutspec.StateRunning, r.CreatedBy))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "rollouts_one_in_progress" {
		running, gerr := s.inProgress(ctx, r.Model)
		if gerr != nil && !errors.Is(gerr, store.ErrNotFound) {
			return gerr
		}
		return fmt.Errorf("rollouts: create: %w", &InProgressError{Model: r.Model, Running: running})
	}
	if err != nil {
		return classify("create", err)
	}
	*r = *created
	return nil
}

func (s *Store) inProgress(ctx context.Context, model string) (*Rollout, error) {
	r, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM rollouts WHERE model = $1 AND state = ANY($2)`, model, rolloutspec.InProgress))
	if err != nil {
		return nil, classify("read the rollout in progress", err)
	}
	return r, nil
}

// Get reads one rollout.
func (s *Store) Get(ctx context.Context, id int64) (*Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	r, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM rollouts WHERE id = $1`, id))
	if err != nil {
		return nil, classify("get", err)
	}
	return r, nil
}

// List returns up to limit rollouts, newest first, of model ("" every
// model).
func (s *Store) List(ctx context.Context, model string, limit int) ([]Rollout, error) {
	if limit <= 0 || limit > MaxList {
		return nil, fmt.Errorf("rollouts: list: limit %d outside 1..%d: %w", limit, MaxList, store.ErrInvalid)
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM rollouts WHERE $1 = '' OR model = $1 ORDER BY id DESC LIMIT $2`, model, limit)
	if err != nil {
		return nil, classify("list", err)
	}
	defer rows.Close()
	out := []Rollout{}
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, classify("list", err)
		}
		out = append(out, *r)
	}
	if err := rows.Err(); err != nil {
		return nil, classify("list", err)
	}
	return out, nil
}

// Pause stops a running rollout where it is: the weight stays, nothing is
// evaluated until Resume.
func (s *Store) Pause(ctx context.Context, id int64, reason string) (*Rollout, error) {
	return s.transition(ctx, id, "pause", []string{rolloutspec.StateRunning}, `state = 'paused'`, reason)
}

// Resume runs a paused rollout again. The step under way starts over
// (step_started_at now), so that its evaluation covers a whole interval
// of traffic after the pause.
func (s *Store) Resume(ctx context.Context, id int64, reason string) (*Rollout, error) {
	return s.transition(ctx, id, "resume", []string{rolloutspec.StatePaused},
		`state = 'running', step_started_at = CASE WHEN step >= 0 THEN now() END`, reason)
}

// Abort ends a rollout in progress: the canary gets 0% (its pin holds
// until Release).
func (s *Store) Abort(ctx context.Context, id int64, reason string) (*Rollout, error) {
	return s.transition(ctx, id, "abort", rolloutspec.InProgress, `state = 'aborted', weight = 0, ended_at = now()`, reason)
}

// transition moves rollout id from one of from by set, in one statement
// that names the states it moves from (the controller writes the same
// rows).
func (s *Store) transition(ctx context.Context, id int64, action string, from []string, set, reason string) (*Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	r, err := scan(s.pool.QueryRow(ctx, `UPDATE rollouts SET `+set+`, reason = $3, updated_at = now()
		WHERE id = $1 AND state = ANY($2) RETURNING `+columns, id, from, reason))
	if errors.Is(err, pgx.ErrNoRows) {
		cur, gerr := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM rollouts WHERE id = $1`, id))
		if gerr != nil {
			return nil, classify(action, gerr)
		}
		return nil, fmt.Errorf("rollouts: %s: %w", action, &StateError{ID: id, State: cur.State, Action: action, From: from})
	}
	if err != nil {
		return nil, classify(action, err)
	}
	return r, nil
}

// Release ends the pin of model's latest rollout, which must have ended
// (completed, rolled back or aborted): the controller drops its override
// and the model's config policy, or its plain routes, serve again. No
// rollout to release is store.ErrNotFound.
func (s *Store) Release(ctx context.Context, model, reason string) (*Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	latest, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM rollouts WHERE model = $1 ORDER BY id DESC LIMIT 1`, model))
	if err != nil {
		return nil, classify("release", err)
	}
	if latest.State == rolloutspec.StateReleased {
		return nil, fmt.Errorf("rollouts: release: model %q: its latest rollout (%d) is released already: %w", model, latest.ID, store.ErrNotFound)
	}
	// The id and the state are checked again in the update: a new
	// rollout, or the controller's last write, may have come between.
	r, err := scan(s.pool.QueryRow(ctx, `UPDATE rollouts SET state = 'released', ended_at = coalesce(ended_at, now()), reason = $3, updated_at = now()
		WHERE id = $1 AND state = ANY($2) AND id = (SELECT max(id) FROM rollouts WHERE model = $4) RETURNING `+columns,
		latest.ID, rolloutspec.Ended, reason, model))
	if errors.Is(err, pgx.ErrNoRows) {
		cur, gerr := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM rollouts WHERE id = $1`, latest.ID))
		if gerr != nil {
			return nil, classify("release", gerr)
		}
		return nil, fmt.Errorf("rollouts: release: %w", &StateError{ID: latest.ID, State: cur.State, Action: "release", From: rolloutspec.Ended})
	}
	if err != nil {
		return nil, classify("release", err)
	}
	return r, nil
}

// classify wraps err in the store sentinel the admin API answers by.
func classify(op string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("rollouts: %s: %w", op, store.ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "22"), pgErr.Code == "23502", pgErr.Code == "23514":
			return fmt.Errorf("rollouts: %s: %w: %s", op, store.ErrInvalid, pgErr.Message)
		case strings.HasPrefix(pgErr.Code, "08"), strings.HasPrefix(pgErr.Code, "57"), pgErr.Code == "53300":
			return fmt.Errorf("rollouts: %s: %w: %w", op, store.ErrUnavailable, err)
		}
		return fmt.Errorf("rollouts: %s: %w", op, err)
	}
	// Timeouts, refused connections, a closed pool.
	return fmt.Errorf("rollouts: %s: %w: %w", op, store.ErrUnavailable, err)
}
