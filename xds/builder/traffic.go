package builder

import (
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/server"
)

// Traffic policies (ir.Pool.Traffic). Each rebuild puts on each model's
// pool the policy in force: a rollout's override (SetTrafficOverrides)
// if there is one, else the gateway config's traffic.<model>. A policy
// that cannot apply now is left off the pool, so that the model keeps its
// plain routes (the last good behaviour), logged when that starts and
// ends, and counted in helix_xds_traffic_policy_inactive{model,reason}:
//
//   - ir.InactiveNoEndpoints, ir.InactiveSequence: ir.Pool.TrafficInactive;
//   - InactiveNotServed: no worker has the model (no pool to put it on);
//   - InactiveInvalid: a rollout's policy that fails ir.ValidateTraffic
//     (the config's are checked when the file is read).
//
// It applies again as soon as the workers allow: a change to the workers
// of a model with a policy takes a full translation (incremental.go), as
// the policy's variants and their clusters may come or go with it.
const (
	InactiveNotServed = "model_not_served"
	InactiveInvalid   = "invalid"
)

// overrides is one SetTrafficOverrides call's policies, by model; a new
// value for each call, so that a rebuild tells a change by the pointer.
type overrides struct{ m map[string]*ir.Traffic }

// SetTrafficOverrides replaces the rollouts' policies, by model: each
// replaces that model's policy from the gateway config (nil or empty:
// none; a nil policy is no override). The builder keeps a copy and
// rebuilds (debounced once Run runs; the first rebuild of Run otherwise),
// unless the policies are those it has.
func (b *Builder) SetTrafficOverrides(policies map[string]*ir.Traffic) {
	ov := &overrides{m: make(map[string]*ir.Traffic, len(policies))}
	for model, t := range policies {
		if t != nil {
			ov.m[model] = cloneTraffic(t)
		}
	}
	b.mu.Lock()
	if b.overrides != nil && reflect.DeepEqual(b.overrides.m, ov.m) {
		// The same policies again: no rebuild (a new value would make the
		// next one a full translation).
		b.mu.Unlock()
		return
	}
	b.overrides = ov
	trigger := b.trigger
	b.mu.Unlock()
	if trigger != nil {
		trigger()
	}
}

// TrafficStatus returns the policy in force for each model that has one,
// by model, as the last rebuild applied it (helix-xds's /status).
func (b *Builder) TrafficStatus() []server.TrafficPolicy {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.traffic)
}

func cloneTraffic(t *ir.Traffic) *ir.Traffic {
	c := *t
	c.Variants = slices.Clone(t.Variants)
	if t.Shadow != nil {
		s := *t.Shadow
		c.Shadow = &s
	}
	return &c
}

// policyFor is the policy in force for model and where it comes from; nil
// when none.
func policyFor(model string, fromConfig map[string]*ir.Traffic, ov *overrides) (*ir.Traffic, string) {
	if ov != nil {
		if t := ov.m[model]; t != nil {
			return t, server.TrafficSourceRollout
		}
	}
	if t := fromConfig[model]; t != nil {
		return t, server.TrafficSourceConfig
	}
	return nil, ""
}

// applyTraffic puts each policy in force on its model's pool in g (whose
// Pools are sorted by model, as addWorkers leaves them) when it can apply,
// and returns every policy's status, by model.
func applyTraffic(g *ir.Gateway, fromConfig map[string]*ir.Traffic, ov *overrides) []server.TrafficPolicy {
	models := slices.Collect(maps.Keys(fromConfig))
	if ov != nil {
		for m := range ov.m {
			if fromConfig[m] == nil {
				models = append(models, m)
			}
		}
	}
	slices.Sort(models)
	out := make([]server.TrafficPolicy, 0, len(models))
	for _, model := range models {
		t, source := policyFor(model, fromConfig, ov)
		st := trafficStatus(model, source, t)
		i, served := slices.BinarySearchFunc(g.Pools, model, func(p ir.Pool, m string) int { return strings.Compare(p.Model, m) })
		switch {
		case source == server.TrafficSourceRollout && ir.ValidateTraffic(t) != nil:
			st.InactiveReason, st.Detail = InactiveInvalid, ir.ValidateTraffic(t).Error()
		case !served:
			st.InactiveReason, st.Detail = InactiveNotServed, "no worker serves the model"
		default:
			p := &g.Pools[i]
			p.Traffic = t
			if reason, detail := p.TrafficInactive(); reason != "" {
				p.Traffic = nil
				st.InactiveReason, st.Detail = reason, detail
			} else {
				st.Active = true
			}
		}
		out = append(out, st)
	}
	return out
}

func trafficStatus(model, source string, t *ir.Traffic) server.TrafficPolicy {
	st := server.TrafficPolicy{Model: model, Source: source, Sticky: t.Sticky, Variants: make([]server.TrafficVariant, len(t.Variants))}
	for i, v := range t.Variants {
		st.Variants[i] = server.TrafficVariant{Name: v.Name, Version: v.Version, Pool: v.Pool, Weight: v.Weight}
	}
	if s := t.Shadow; s != nil {
		st.Shadow = &server.TrafficShadow{Name: s.Variant.Name, Version: s.Variant.Version, Pool: s.Variant.Pool, Percent: s.Percent}
	}
	return st
}

// trafficReport logs the policies that stopped or started applying since
// the last report and keeps helix_xds_traffic_policy_inactive in step.
// Rebuild's goroutine only.
type trafficReport struct {
	gauge *prometheus.GaugeVec
	log   *slog.Logger
	// inactive: model -> reason, as last reported.
	inactive map[string]string
}

func newTrafficReport(log *slog.Logger) *trafficReport {
	return &trafficReport{
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "helix_xds_traffic_policy_inactive",
			Help: "1 while a model's traffic policy is not applied (the model keeps its plain routes), by model and reason (no_endpoints, sequence_model, model_not_served, invalid).",
		}, []string{"model", "reason"}),
		log:      log,
		inactive: map[string]string{},
	}
}

func (r *trafficReport) update(policies []server.TrafficPolicy) {
	now := make(map[string]string, len(policies))
	for _, p := range policies {
		if p.Active {
			if was, ok := r.inactive[p.Model]; ok {
				r.log.Info("traffic policy applied", "model", p.Model, "source", p.Source, "was_inactive", was)
			}
			continue
		}
		now[p.Model] = p.InactiveReason
		if was, ok := r.inactive[p.Model]; !ok || was != p.InactiveReason {
			r.log.Warn("traffic policy not applied; the model keeps its plain routes", "model", p.Model, "source", p.Source,
				"reason", p.InactiveReason, "detail", p.Detail)
		}
	}
	for model, reason := range r.inactive {
		if now[model] != reason {
			r.gauge.DeleteLabelValues(model, reason)
		}
	}
	for model, reason := range now {
		r.gauge.WithLabelValues(model, reason).Set(1)
	}
	r.inactive = now
}

// hasPolicy reports whether model has a policy from the config or a
// rollout, applied or not.
func hasPolicy(model string, fromConfig map[string]*ir.Traffic, ov *overrides) bool {
	t, _ := policyFor(model, fromConfig, ov)
	return t != nil
}
