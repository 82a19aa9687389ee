// Package rollouts is the rollouts table (migrations/00008_rollouts.sql)
// as helix-authz's admin API writes it, and the rules of a rollout
// request: what a valid rollout request is (the stable and canary
// variants against the model catalogue), which the admin API and helixctl
// share. The vocabulary helix-xds shares too (states, the slo column, the
// rules of steps and intervals) is internal/rolloutspec's.
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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/helixflow/helixflow/internal/rolloutspec"
	"github.com/helixflow/helixflow/internal/wire"
)

// Rollout is one row of the table (rolloutspec.Row, shared with
// helix-xds's controller).
type Rollout struct{ rolloutspec.Row }

// Request asks for a rollout (POST /admin/v1/rollouts). Steps, Interval
// (a Go duration, "5m") and SLO are required; Sticky defaults to true.
type Request struct {
	Model       string           `json:"model"`
	ToVersion   string           `json:"to_version,omitempty"`
	ToPool      string           `json:"to_pool,omitempty"`
	FromVersion string           `json:"from_version,omitempty"`
	FromPool    string           `json:"from_pool,omitempty"`
	Steps       []int            `json:"steps"`
	Interval    string           `json:"interval"`
	SLO         *rolloutspec.SLO `json:"slo"`
	Sticky      *bool            `json:"sticky,omitempty"`
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
	if err := rolloutspec.CheckSteps(r.Steps); err != nil {
		return nil, err
	}
	if r.Interval == "" {
		return nil, errors.New("interval: required, a Go duration such as \"5m\"")
	}
	interval, err := time.ParseDuration(r.Interval)
	if err != nil {
		return nil, fmt.Errorf("interval: %q is not a Go duration such as \"5m\" or \"30s\"", r.Interval)
	}
	if err := rolloutspec.CheckInterval(interval); err != nil {
		return nil, err
	}
	if err := r.SLO.Check(); err != nil {
		return nil, err
	}
	ro := &Rollout{rolloutspec.Row{
		Model: r.Model, FromVersion: r.FromVersion, FromPool: r.FromPool, ToVersion: r.ToVersion, ToPool: r.ToPool,
		Steps: slices.Clone(r.Steps), Interval: interval, SLO: *r.SLO, Sticky: r.Sticky == nil || *r.Sticky,
		State: rolloutspec.StateRunning, Step: -1, CreatedBy: createdBy,
	}}
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
