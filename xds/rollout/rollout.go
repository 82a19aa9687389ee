package rollout

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/helixflow/helixflow/xds/ir"
)

// States of a rollout (the rollouts table's state column).
const (
	StateRunning    = "running"
	StatePaused     = "paused"
	StateCompleted  = "completed"
	StateRolledBack = "rolled_back"
	StateAborted    = "aborted"
	StateReleased   = "released"
)

// Variant names of a rollout's traffic policy: the cluster names, and
// thus the SLO queries, are built from them.
const (
	VariantStable = "stable"
	VariantCanary = "canary"
)

// SLO is the rollouts table's slo column: the bars the canary must stay
// under at each evaluation. A nil bar is not checked.
type SLO struct {
	ErrorRatio *float64 `json:"error_ratio,omitempty"`
	P99Ms      *float64 `json:"p99_ms,omitempty"`
}

// Rollout is one row of the rollouts table.
type Rollout struct {
	ID                     int64
	Model                  string
	FromVersion, FromPool  string
	ToVersion, ToPool      string
	Steps                  []int
	Interval               time.Duration
	SLO                    SLO
	Sticky                 bool
	State                  string
	Step                   int // index into Steps; -1 before the first
	Weight                 int // the canary's percent applied now
	Reason                 string
	StepStartedAt, EndedAt time.Time // zero: NULL
}

// parseSLO reads the slo column.
func parseSLO(b []byte) (SLO, error) {
	var s SLO
	if err := json.Unmarshal(b, &s); err != nil {
		return SLO{}, fmt.Errorf("slo %s: %w", b, err)
	}
	return s, nil
}

// canaryPercent is the canary's share the state implies: the weight
// column while running or paused, all of it once completed, none once
// rolled back or aborted (the stable variant stays pinned, so a
// rolled-back canary gets nothing even when it is the newest version
// loaded). ok is false for a released rollout, which pins nothing.
func (r *Rollout) canaryPercent() (w int, ok bool) {
	switch r.State {
	case StateRunning, StatePaused:
		return r.Weight, true
	case StateCompleted:
		return 100, true
	case StateRolledBack, StateAborted:
		return 0, true
	}
	return 0, false
}

// Traffic is the override policy of r for the builder, or nil when r pins
// nothing (released).
func (r *Rollout) Traffic() *ir.Traffic {
	w, ok := r.canaryPercent()
	if !ok {
		return nil
	}
	return &ir.Traffic{
		Sticky: r.Sticky,
		Variants: []ir.Variant{
			{Name: VariantStable, Version: r.FromVersion, Pool: r.FromPool, Weight: uint32(100 - w)},
			{Name: VariantCanary, Version: r.ToVersion, Pool: r.ToPool, Weight: uint32(w)},
		},
	}
}

// check refuses a row the controller cannot run: helix-authz validates
// requests, but the table is shared, and a bad row must stop only itself.
func (r *Rollout) check() error {
	if len(r.Steps) == 0 {
		return fmt.Errorf("rollout %d: no steps", r.ID)
	}
	prev := 0
	for i, s := range r.Steps {
		if s < 1 || s > 100 || s <= prev {
			return fmt.Errorf("rollout %d: steps %v: step %d (%d) is not increasing within 1..100", r.ID, r.Steps, i+1, s)
		}
		prev = s
	}
	if r.Steps[len(r.Steps)-1] != 100 {
		return fmt.Errorf("rollout %d: steps %v: the last step must be 100", r.ID, r.Steps)
	}
	if r.Step >= len(r.Steps) {
		return fmt.Errorf("rollout %d: step %d of %d steps", r.ID, r.Step, len(r.Steps))
	}
	if r.SLO.ErrorRatio == nil && r.SLO.P99Ms == nil {
		return fmt.Errorf("rollout %d: slo names neither error_ratio nor p99_ms", r.ID)
	}
	return nil
}
