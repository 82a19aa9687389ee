package ir

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/helixflow/helixflow/internal/wire"
)

// MaxVariants bounds a traffic policy: each variant is two more clusters
// (gRPC and REST) of the model.
const MaxVariants = 8

// Reasons a valid policy cannot be applied to a pool now
// (Pool.TrafficInactive); they are the reason label of helix-xds's
// helix_xds_traffic_policy_inactive gauge.
const (
	// InactiveNoEndpoints: a variant with weight > 0 matches no ready
	// endpoint of the pool.
	InactiveNoEndpoints = "no_endpoints"
	// InactiveSequence: the model uses sequence batching, whose sequences
	// must stay on one worker; variants would split them.
	InactiveSequence = "sequence_model"
)

// Matches reports whether e belongs to the variant: e serves v.Version
// (any version when "") in v.Pool (any pool when ""; an endpoint without a
// pool is in wire.DefaultPool). Versions compare as numbers ("007" is 7,
// as Triton reads it).
func (v Variant) Matches(e Endpoint) bool {
	if v.Pool != "" && cmp.Or(e.Pool, wire.DefaultPool) != v.Pool {
		return false
	}
	if v.Version == "" {
		return true
	}
	want := strings.TrimLeft(v.Version, "0")
	return slices.ContainsFunc(e.Versions, func(have string) bool { return strings.TrimLeft(have, "0") == want })
}

// ValidateTraffic checks a traffic policy on its own, with field paths
// relative to it ("variants[1].weight"): xds/config names them by the
// file's fields, and Validate checks every pool's policy the same way.
func ValidateTraffic(t *Traffic) error {
	v := &validator{}
	v.traffic("", t)
	return v.err()
}

// traffic checks t's shape; field is its path with a trailing '.' (or "").
func (v *validator) traffic(field string, t *Traffic) {
	switch n := len(t.Variants); {
	case n == 0:
		v.add(field+"variants", "required: at least one variant, the weights adding up to 100")
	case n > MaxVariants:
		v.add(field+"variants", "%d variants, at most %d", n, MaxVariants)
	}
	names := make(map[string]int, len(t.Variants))
	var sum uint64
	for i, vr := range t.Variants {
		f := fmt.Sprintf("%svariants[%d]", field, i)
		v.variant(f, vr)
		if j, dup := names[vr.Name]; dup && vr.Name != "" {
			v.add(f+".name", "duplicate of variants[%d] (%q)", j, vr.Name)
		} else {
			names[vr.Name] = i
		}
		if vr.Weight > 100 {
			v.add(f+".weight", "must be 0..100 (percent), got %d", vr.Weight)
		}
		sum += uint64(vr.Weight)
	}
	if len(t.Variants) > 0 && sum != 100 {
		v.add(field+"variants", "weights add up to %d, want 100", sum)
	}
	if s := t.Shadow; s != nil {
		f := field + "shadow"
		v.variant(f+".variant", s.Variant)
		if j, dup := names[s.Variant.Name]; dup && s.Variant.Name != "" {
			// Each name is a cluster of its own.
			v.add(f+".variant.name", "%q is the name of variants[%d]; a shadow needs its own", s.Variant.Name, j)
		}
		if p := s.Percent; math.IsNaN(p) || p <= 0 || p > 100 {
			v.add(f+".percent", "must be in (0, 100], got %v", p)
		}
	}
}

// variant checks a variant's name and selection (not its weight).
func (v *validator) variant(f string, vr Variant) {
	if err := wire.CheckVariantName(vr.Name); err != nil {
		v.add(f+".name", "%q: %v", vr.Name, err)
	}
	if vr.Version == "" && vr.Pool == "" {
		v.add(f, "needs a version, a pool or both: which endpoints serve this variant")
	}
	if vr.Version != "" {
		if err := wire.CheckVersion(vr.Version); err != nil {
			v.add(f+".version", "%q: %v", vr.Version, err)
		}
	}
	if vr.Pool != "" {
		if err := wire.CheckPoolName(vr.Pool); err != nil {
			v.add(f+".pool", "%q: %v", vr.Pool, err)
		}
	}
}

// TrafficInactive says why p's traffic policy (valid, not nil) cannot be
// applied to p now: reason is one of the Inactive* constants, detail a
// sentence for people; "" when it can. Validate refuses such a pool; the
// builder leaves the policy out instead (the model keeps its plain
// routes), and says so.
func (p *Pool) TrafficInactive() (reason, detail string) {
	if p.Sequence {
		return InactiveSequence, "traffic policy on sequence model: its sequences must stay on one worker"
	}
	for _, vr := range p.Traffic.Variants {
		if vr.Weight == 0 {
			continue
		}
		if !slices.ContainsFunc(p.Endpoints, func(e Endpoint) bool { return e.Ready && vr.Matches(e) }) {
			return InactiveNoEndpoints, fmt.Sprintf("variant %q (%s) matches no ready endpoint", vr.Name, vr.selection())
		}
	}
	return "", ""
}

// selection describes which endpoints a variant takes, for messages.
func (v Variant) selection() string {
	switch {
	case v.Version != "" && v.Pool != "":
		return "version " + v.Version + " in pool " + v.Pool
	case v.Version != "":
		return "version " + v.Version + ", any pool"
	default:
		return "pool " + v.Pool + ", any version"
	}
}
