// Package rollouts is the rollouts table (migrations/00008_rollouts.sql)
// as helix-authz's admin API writes it, and the rules of a rollout
// request: the one home of what a valid rollout is (steps, interval, SLOs,
// the stable and canary variants), which the admin API and helixctl share.
//
// The split of work (docs/rollouts.md): the operator's requests go through
// the admin API, which inserts a rollout (running, step -1, weight 0) and
// makes the operator's state changes (pause, resume, abort, release).
// helix-xds's rollout controller (xds/rollout) does the rest: it applies
// the steps, evaluates the SLOs and writes advance, hold, rollback and
// completion into the same row. Each side's update names the states it
// moves from, so that two writers racing on a row never undo each other.
package rollouts

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/helixflow/helixflow/internal/wire"
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

// Rollout is one row of the table.
type Rollout struct {
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
	Step, Weight  int
	Reason        string
	CreatedBy     string
	CreatedAt     time.Time
	UpdatedAt     time.Time
	StepStartedAt *time.Time
	EndedAt       *time.Time
}

// Request asks for a rollout (POST /admin/v1/rollouts). Steps, Interval
// (a Go duration, "5m") and SLO are required; Sticky defaults to true.
type Request struct {
	Model       string `json:"model"`
	ToVersion   string `json:"to_version,omitempty"`
	ToPool      string `json:"to_pool,omitempty"`
	FromVersion string `json:"from_version,omitempty"`
	FromPool    string `json:"from_pool,omitempty"`
	Steps       []int  `json:"steps"`
	Interval    string `json:"interval"`
	SLO         *SLO   `json:"slo"`
	Sticky      *bool  `json:"sticky,omitempty"`
}

// Served is what the model catalogue says of a model: whether any worker
// has it loaded, and the versions ready workers serve.
type Served struct {
	Found    bool
	Versions []string
}

// Check applies the rules of a rollout to r, and to served, the model's
// entry in the catalogue: the model is served, each version named is
// served, and from_version defaults to the highest served version below
// to_version (from_pool to wire.DefaultPool for a rollout by pool alone).
// It returns the rollout to insert (running, step -1, weight 0) or an
// error naming the field.
func (r *Request) Check(served Served, createdBy string) (*Rollout, error) {
	if err := wire.CheckModelName(r.Model); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if r.ToVersion == "" && r.ToPool == "" {
		return nil, errors.New("to_version or to_pool: one is required (the canary's version and/or worker pool)")
	}
	for _, f := range []struct{ name, v string }{{"to_version", r.ToVersion}, {"from_version", r.FromVersion}} {
		if f.v != "" {
			if err := wire.CheckVersion(f.v); err != nil {
				return nil, fmt.Errorf("%s: %q: %w", f.name, f.v, err)
			}
		}
	}
	for _, f := range []struct{ name, v string }{{"to_pool", r.ToPool}, {"from_pool", r.FromPool}} {
		if f.v != "" {
			if err := wire.CheckPoolName(f.v); err != nil {
				return nil, fmt.Errorf("%s: %q: %w", f.name, f.v, err)
			}
		}
	}
	if err := CheckSteps(r.Steps); err != nil {
		return nil, err
	}
	if r.Interval == "" {
		return nil, errors.New("interval: required, a Go duration such as \"5m\"")
	}
	interval, err := time.ParseDuration(r.Interval)
	if err != nil {
		return nil, fmt.Errorf("interval: %q is not a Go duration such as \"5m\" or \"30s\"", r.Interval)
	}
	if err := CheckInterval(interval); err != nil {
		return nil, err
	}
	if err := r.SLO.Check(); err != nil {
		return nil, err
	}
	ro := &Rollout{
		Model: r.Model, FromVersion: r.FromVersion, FromPool: r.FromPool, ToVersion: r.ToVersion, ToPool: r.ToPool,
		Steps: slices.Clone(r.Steps), Interval: interval, SLO: *r.SLO, Sticky: r.Sticky == nil || *r.Sticky,
		State: StateRunning, Step: -1, CreatedBy: createdBy,
	}
	if err := ro.resolve(served); err != nil {
		return nil, err
	}
	return ro, nil
}

// resolve checks the variants against the catalogue and fills the
// defaults of the stable one.
func (ro *Rollout) resolve(served Served) error {
	if !served.Found {
		return fmt.Errorf("model: %q is not served: no worker has it loaded (helix-xds's model catalogue)", ro.Model)
	}
	for _, f := range []struct{ name, v string }{{"to_version", ro.ToVersion}, {"from_version", ro.FromVersion}} {
		if f.v != "" && !slices.ContainsFunc(served.Versions, func(s string) bool { return versionNumber(s) == versionNumber(f.v) }) {
			return fmt.Errorf("%s: no ready worker serves version %s of model %q (served: %s)", f.name, f.v, ro.Model, listOrNone(served.Versions))
		}
	}
	switch {
	case ro.ToVersion != "" && ro.FromVersion == "":
		// Stable pinned to a version: a worker asked for no version serves
		// its latest, which may be the canary's.
		to, best := versionNumber(ro.ToVersion), int64(-1)
		for _, v := range served.Versions {
			if n := versionNumber(v); n < to && n > best {
				best, ro.FromVersion = n, v
			}
		}
		if best < 0 {
			return fmt.Errorf("from_version: no served version of model %q is below %s (served: %s); name the stable variant with from_version",
				ro.Model, ro.ToVersion, listOrNone(served.Versions))
		}
	case ro.ToVersion == "" && ro.FromVersion == "" && ro.FromPool == "":
		// A rollout by pool alone: "any pool" as stable would include the
		// canary's.
		ro.FromPool = wire.DefaultPool
	}
	if ro.FromVersion == ro.ToVersion && ro.FromPool == ro.ToPool {
		return fmt.Errorf("from and to are the same variant (version %s, pool %s): a rollout moves traffic between two",
			orAny(ro.ToVersion), orAny(ro.ToPool))
	}
	return nil
}

// versionNumber is a version's value (wire.CheckVersion keeps it within
// int64); -1 for what is not one.
func versionNumber(v string) int64 {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || wire.CheckVersion(v) != nil {
		return -1
	}
	return n
}

func listOrNone(vs []string) string {
	if len(vs) == 0 {
		return "none"
	}
	return strings.Join(vs, ", ")
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}
