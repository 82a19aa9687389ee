// Package rollout is helix-xds's rollout controller (docs/rollouts.md): it
// moves a model's traffic from a stable variant to a canary step by step,
// gated by SLOs measured in Prometheus.
//
// helix-authz's admin API writes the operator's requests into the rollouts
// table (migrations/00008_rollouts.sql: start, pause, resume, abort,
// release); the controller owns the rest of a running rollout's columns
// (step, weight, reason, step_started_at, ended_at and the states
// completed and rolled_back). The table is the only state: after a restart
// the first poll publishes the same overrides again.
//
// Each poll (every second) the controller:
//
//  1. reads each model's latest rollout that is not released;
//  2. for a running rollout whose step is due (step_started_at + interval),
//     asks Prometheus about the canary's Envoy clusters over a window of
//     the interval (prometheus.go) and decides (decide.go): SLOs held →
//     the next step (completed at 100%); broken → rolled_back at once, the
//     canary at 0%; no requests in the window, or Prometheus unreachable →
//     hold, retried shortly;
//  3. writes the decision back only if the row is still as it read it
//     (store.go), so an operator's pause or abort, or a second helix-xds
//     replica, wins a race rather than being overwritten;
//  4. hands the builder one ir.Traffic per model (variants "stable" and
//     "canary", Traffic) which replaces the gateway config's policy for
//     that model.
//
// A step only changes route weights: the variant clusters exist from the
// rollout's start to its release, so a step is make-before-break.
package rollout
