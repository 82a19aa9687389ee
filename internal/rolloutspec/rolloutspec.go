// Package rolloutspec is the vocabulary of the rollouts table
// (migrations/00008_rollouts.sql) that both of its writers share:
// helix-authz's admin API (extauthz/rollouts), which inserts rollouts and
// makes the operator's state changes, and helix-xds's rollout controller
// (xds/rollout), which applies the steps and evaluates the SLOs. The state
// names, the slo column's JSON and the rules of steps and intervals live
// here once; neither side imports the other.
package rolloutspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// States of a rollout (the table's state column).
const (
	// StateRunning: the controller applies the steps and evaluates them.
	StateRunning = "running"
	// StatePaused: the weight stays where it is; nothing is evaluated.
	StatePaused = "paused"
	// StateCompleted: the canary has 100%; the pin stays until released.
	StateCompleted = "completed"
	// StateRolledBack: an SLO broke; the canary has 0% until released.
	StateRolledBack = "rolled_back"
	// StateAborted: the operator stopped it; the canary has 0% until
	// released.
	StateAborted = "aborted"
	// StateReleased: the override is gone; the model's config policy (or
	// its plain routes) serve again.
	StateReleased = "released"
)

// InProgress are the states of a rollout in progress: one per model (the
// table's unique index rollouts_one_in_progress).
var InProgress = []string{StateRunning, StatePaused}

// Ended are the states of a finished rollout whose pin holds until
// released.
var Ended = []string{StateCompleted, StateRolledBack, StateAborted}

// Limits of a rollout request.
const (
	MinInterval = time.Second
	MaxInterval = 24 * time.Hour
	// MaxP99Ms bounds slo.p99_ms (an hour: beyond it, a typo).
	MaxP99Ms = 3_600_000
)

// DefaultSteps are helixctl's steps when --steps is not given.
var DefaultSteps = []int{1, 5, 25, 50, 100}

// SLO is what the canary must hold at each evaluation: error ratio (5xx
// over all answers) below ErrorRatio, p99 latency below P99Ms. Either may
// be absent; at least one is set. It is the slo column's JSON.
type SLO struct {
	ErrorRatio *float64 `json:"error_ratio,omitempty"`
	P99Ms      *float64 `json:"p99_ms,omitempty"`
}

// Check names the first thing wrong with s.
func (s *SLO) Check() error {
	if s == nil || (s.ErrorRatio == nil && s.P99Ms == nil) {
		return errors.New("slo: required: error_ratio and/or p99_ms, e.g. {\"error_ratio\": 0.01, \"p99_ms\": 200}")
	}
	if r := s.ErrorRatio; r != nil && (math.IsNaN(*r) || *r <= 0 || *r > 1) {
		return fmt.Errorf("slo.error_ratio: %v is outside (0, 1] (the canary holds when its error ratio is below it)", *r)
	}
	if p := s.P99Ms; p != nil && (math.IsNaN(*p) || *p <= 0 || *p > MaxP99Ms) {
		return fmt.Errorf("slo.p99_ms: %v is outside (0, %d] milliseconds", *p, MaxP99Ms)
	}
	return nil
}

// String writes s as ParseSLO reads it: "error_ratio<0.01,p99_ms<200".
func (s SLO) String() string {
	var parts []string
	if s.ErrorRatio != nil {
		parts = append(parts, "error_ratio<"+strconv.FormatFloat(*s.ErrorRatio, 'g', -1, 64))
	}
	if s.P99Ms != nil {
		parts = append(parts, "p99_ms<"+strconv.FormatFloat(*s.P99Ms, 'g', -1, 64))
	}
	return strings.Join(parts, ",")
}

// ParseSLO reads helixctl's --slo: comma-separated "name<number" terms of
// error_ratio and p99_ms, each at most once ("error_ratio<0.01,p99_ms<200").
func ParseSLO(v string) (SLO, error) {
	var s SLO
	if strings.TrimSpace(v) == "" {
		return s, errors.New("empty: want e.g. 'error_ratio<0.01,p99_ms<200'")
	}
	for _, term := range strings.Split(v, ",") {
		term = strings.TrimSpace(term)
		name, num, ok := strings.Cut(term, "<")
		name, num = strings.TrimSpace(name), strings.TrimSpace(num)
		if !ok || strings.ContainsAny(num, "<>=") {
			return s, fmt.Errorf("%q: want name<number, e.g. error_ratio<0.01 or p99_ms<200 (only < is allowed)", term)
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return s, fmt.Errorf("%q: %q is not a number", term, num)
		}
		var dst **float64
		switch name {
		case "error_ratio":
			dst = &s.ErrorRatio
		case "p99_ms":
			dst = &s.P99Ms
		default:
			return s, fmt.Errorf("%q: unknown SLO %q (error_ratio or p99_ms)", term, name)
		}
		if *dst != nil {
			return s, fmt.Errorf("%q: %s is given twice", term, name)
		}
		*dst = &f
	}
	if err := s.Check(); err != nil {
		return s, err
	}
	return s, nil
}

// ParseSteps reads helixctl's --steps: comma-separated percentages
// ("1,5,25,50,100"), checked as CheckSteps does.
func ParseSteps(v string) ([]int, error) {
	var steps []int
	for i, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(strings.TrimSuffix(f, "%"))
		if err != nil {
			return nil, fmt.Errorf("steps[%d]: %q is not a whole percentage", i, f)
		}
		steps = append(steps, n)
	}
	return steps, CheckSteps(steps)
}

// CheckSteps: at least one step, each a percentage in 1..100, increasing,
// the last 100 (a rollout ends with the canary taking all traffic).
func CheckSteps(steps []int) error {
	if len(steps) == 0 {
		return errors.New("steps: required, e.g. [1, 5, 25, 50, 100]")
	}
	for i, s := range steps {
		if s < 1 || s > 100 {
			return fmt.Errorf("steps[%d]: %d is outside 1..100 (percent of the model's traffic)", i, s)
		}
		if i > 0 && s <= steps[i-1] {
			return fmt.Errorf("steps[%d]: %d is not above steps[%d] (%d): steps increase", i, s, i-1, steps[i-1])
		}
	}
	if last := steps[len(steps)-1]; last != 100 {
		return fmt.Errorf("steps: the last step is 100 (the canary takes all traffic), not %d", last)
	}
	return nil
}

// CheckInterval: MinInterval to MaxInterval, the time each step runs
// before its evaluation.
func CheckInterval(d time.Duration) error {
	if d < MinInterval || d > MaxInterval {
		return fmt.Errorf("interval: %v is outside %v..%v", d, MinInterval, MaxInterval)
	}
	return nil
}

// DecodeSLO reads the slo column (jsonb).
func DecodeSLO(b []byte) (SLO, error) {
	var s SLO
	if err := json.Unmarshal(b, &s); err != nil {
		return SLO{}, fmt.Errorf("slo %s: %w", b, err)
	}
	return s, nil
}

// Row is one row of the table, as both writers read it.
type Row struct {
	ID    int64
	Model string
	// The stable variant and the canary; "" leaves a version or pool
	// unpinned.
	FromVersion, FromPool string
	ToVersion, ToPool     string
	Steps                 []int
	Interval              time.Duration
	SLO                   SLO
	Sticky                bool
	State                 string
	// Step indexes Steps (-1 before the first); Weight is the canary's
	// percentage now.
	Step, Weight int
	Reason       string
	CreatedBy    string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// nil: NULL (no step started yet; not ended).
	StepStartedAt *time.Time
	EndedAt       *time.Time
}

// Columns are Row's columns, in Scan's order.
const Columns = `id, model, from_version, from_pool, to_version, to_pool, steps, interval_ms, slo, sticky, state, step, weight,
	reason, created_by, created_at, updated_at, step_started_at, ended_at`

// Scan reads one row selected as Columns.
func Scan(row pgx.Row) (Row, error) {
	var (
		r            Row
		steps        []int32
		intervalMs   int64
		slo          []byte
		step, weight int32
	)
	if err := row.Scan(&r.ID, &r.Model, &r.FromVersion, &r.FromPool, &r.ToVersion, &r.ToPool, &steps, &intervalMs, &slo, &r.Sticky,
		&r.State, &step, &weight, &r.Reason, &r.CreatedBy, &r.CreatedAt, &r.UpdatedAt, &r.StepStartedAt, &r.EndedAt); err != nil {
		return Row{}, err
	}
	r.Steps = make([]int, len(steps))
	for i, s := range steps {
		r.Steps[i] = int(s)
	}
	r.Interval = time.Duration(intervalMs) * time.Millisecond
	r.Step, r.Weight = int(step), int(weight)
	var err error
	if r.SLO, err = DecodeSLO(slo); err != nil {
		return Row{}, fmt.Errorf("rollout %d: %w", r.ID, err)
	}
	return r, nil
}
