package rollout

import (
	"fmt"

	"github.com/helixflow/helixflow/internal/rolloutspec"
	"github.com/helixflow/helixflow/xds/ir"
)

// Variant names of a rollout's traffic policy: the cluster names, and
// thus the SLO queries, are built from them.
const (
	VariantStable = "stable"
	VariantCanary = "canary"
)

// Rollout is one row of the rollouts table (rolloutspec.Row, shared with
// helix-authz's admin side).
type Rollout struct{ rolloutspec.Row }

// canaryPercent is the canary's share the state implies: the weight
// column while running or paused, all of it once completed, none once
// rolled back or aborted (the stable variant stays pinned, so a
// rolled-back canary gets nothing even when it is the newest version
// loaded). ok is false for a released rollout, which pins nothing.
func (r *Rollout) canaryPercent() (w int, ok bool) {
	switch r.State {
	case rolloutspec.StateRunning, rolloutspec.StatePaused:
		return r.Weight, true
	case rolloutspec.StateCompleted:
		return 100, true
	case rolloutspec.StateRolledBack, rolloutspec.StateAborted:
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
	if err := rolloutspec.CheckSteps(r.Steps); err != nil {
		return fmt.Errorf("rollout %d: %w", r.ID, err)
	}
	if r.Step >= len(r.Steps) {
		return fmt.Errorf("rollout %d: step %d of %d steps", r.ID, r.Step, len(r.Steps))
	}
	if err := r.SLO.Check(); err != nil {
		return fmt.Errorf("rollout %d: %w", r.ID, err)
	}
	return nil
}
