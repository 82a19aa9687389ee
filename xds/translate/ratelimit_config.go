package translate

import (
	"fmt"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"github.com/helixflow/helixflow/xds/ir"
)

// rateLimitConfigs builds the ratelimit service's config (served to it over
// xDS) from the plans: one RateLimitConfig for the domain, matching the
// descriptors rateLimitActions makes Envoy send:
//
//	window=second|minute
//	  plan=<name>         one per plan; no children when it has no limit for the window
//	    client            (any value: one counter per client)
//	      model           (any value: one counter per client and model)
//	  plan                (any other plan: the default plan's limits)
//	    client / model
//	  client              (no plan at all: the default plan's limits)
//	    model
//
// The ratelimit service looks a value-specific key up before the bare key,
// so a listed plan never falls through to the default's limits. A request
// naming no model is limited per client at the same rate. A client whose
// plan is not listed (a plan removed from the config since) gets the
// default plan's limits, never none: without a default plan (ir.Validate
// requires one) the config is refused.
func rateLimitConfigs(g *ir.Gateway) ([]types.Resource, error) {
	rl := g.RateLimit
	if rl == nil {
		return nil, nil
	}
	i := slices.IndexFunc(rl.Plans, func(p ir.Plan) bool { return p.Name == rl.DefaultPlan })
	if i < 0 {
		return nil, fmt.Errorf("%w: ratelimit default plan %q is not a plan", ErrInvalidResource, rl.DefaultPlan)
	}
	def := rl.Plans[i]
	var windows []*rlsconfv3.RateLimitDescriptor
	for _, w := range []struct {
		value string
		unit  rlsconfv3.RateLimitUnit
		limit func(ir.Plan) uint32
	}{
		{WindowSecond, rlsconfv3.RateLimitUnit_SECOND, func(p ir.Plan) uint32 { return p.RequestsPerSecond }},
		{WindowMinute, rlsconfv3.RateLimitUnit_MINUTE, func(p ir.Plan) uint32 { return p.RequestsPerMinute }},
	} {
		window := &rlsconfv3.RateLimitDescriptor{Key: DescriptorWindow, Value: w.value}
		for _, p := range rl.Plans {
			plan := &rlsconfv3.RateLimitDescriptor{Key: DescriptorPlan, Value: p.Name}
			if n := w.limit(p); n > 0 {
				plan.Descriptors = clientModelLimit(n, w.unit)
			}
			window.Descriptors = append(window.Descriptors, plan)
		}
		if n := w.limit(def); n > 0 {
			window.Descriptors = append(window.Descriptors,
				&rlsconfv3.RateLimitDescriptor{Key: DescriptorPlan, Descriptors: clientModelLimit(n, w.unit)})
			window.Descriptors = append(window.Descriptors, clientModelLimit(n, w.unit)...)
		}
		windows = append(windows, window)
	}
	cfg := &rlsconfv3.RateLimitConfig{Name: rl.Domain, Domain: rl.Domain, Descriptors: windows}
	if err := checkRateLimitConfig(cfg); err != nil {
		return nil, err
	}
	return []types.Resource{cfg}, nil
}

// clientModelLimit is "client (any) -> model (any)", both with the limit.
func clientModelLimit(n uint32, unit rlsconfv3.RateLimitUnit) []*rlsconfv3.RateLimitDescriptor {
	policy := func() *rlsconfv3.RateLimitPolicy {
		return &rlsconfv3.RateLimitPolicy{Unit: unit, RequestsPerUnit: n}
	}
	return []*rlsconfv3.RateLimitDescriptor{{
		Key:         DescriptorClient,
		RateLimit:   policy(),
		Descriptors: []*rlsconfv3.RateLimitDescriptor{{Key: DescriptorModel, RateLimit: policy()}},
	}}
}

// checkRateLimitConfig checks what the ratelimit service would refuse or
// misread (its config proto has no generated validation): a name, a domain,
// every descriptor with a key, no key/value twice among siblings, and
// limits with a known unit.
func checkRateLimitConfig(c *rlsconfv3.RateLimitConfig) error {
	if c.GetName() == "" || c.GetDomain() == "" {
		return fmt.Errorf("%w: ratelimit config needs a name and a domain", ErrInvalidResource)
	}
	return validateDescriptors(c.GetDomain(), c.GetDescriptors())
}

func validateDescriptors(path string, ds []*rlsconfv3.RateLimitDescriptor) error {
	seen := make(map[string]bool, len(ds))
	for _, d := range ds {
		if d.GetKey() == "" {
			return fmt.Errorf("%w: ratelimit descriptor under %s has no key", ErrInvalidResource, path)
		}
		id := d.GetKey() + "=" + d.GetValue()
		if seen[id] {
			return fmt.Errorf("%w: ratelimit descriptor %s appears twice under %s", ErrInvalidResource, id, path)
		}
		seen[id] = true
		if p := d.GetRateLimit(); p != nil && !p.GetUnlimited() {
			if p.GetUnit() == rlsconfv3.RateLimitUnit_UNKNOWN || rlsconfv3.RateLimitUnit_name[int32(p.GetUnit())] == "" {
				return fmt.Errorf("%w: ratelimit descriptor %s/%s has no valid unit", ErrInvalidResource, path, id)
			}
		}
		if err := validateDescriptors(path+"/"+id, d.GetDescriptors()); err != nil {
			return err
		}
	}
	return nil
}
