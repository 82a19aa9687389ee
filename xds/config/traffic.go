package config

import (
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// TrafficPolicy is traffic.<model>: how the model's requests that name no
// version are split across variants (ir.Traffic). The rules are ir's
// (ir.ValidateTraffic); this file only names them by the file's fields.
type TrafficPolicy struct {
	// Sticky keeps a client on one variant; absent: true.
	Sticky *bool `yaml:"sticky"`
	// Variants, weights in percent adding up to 100.
	Variants []TrafficVariant `yaml:"variants"`
	// Shadow mirrors a share of the requests to one more variant.
	Shadow *TrafficShadow `yaml:"shadow"`
}

// TrafficVariant is the model's endpoints that serve Version in Pool
// (either may be absent, not both), and their share.
type TrafficVariant struct {
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
	Pool    string `yaml:"pool"`
	Weight  uint32 `yaml:"weight"`
}

// TrafficShadow is a variant that receives a copy of Percent of the
// requests; its answers are discarded.
type TrafficShadow struct {
	Name    string  `yaml:"name"`
	Version string  `yaml:"version"`
	Pool    string  `yaml:"pool"`
	Percent float64 `yaml:"percent"`
}

// TrafficPolicies returns traffic as the gateway model takes it, a new map
// each call: model -> policy. The builder puts each on its model's pool
// unless a rollout replaces it.
func (c *Config) TrafficPolicies() map[string]*ir.Traffic {
	out := make(map[string]*ir.Traffic, len(c.Traffic))
	for model, p := range c.Traffic {
		out[model] = p.traffic()
	}
	return out
}

func (p TrafficPolicy) traffic() *ir.Traffic {
	t := &ir.Traffic{Sticky: p.Sticky == nil || *p.Sticky, Variants: make([]ir.Variant, len(p.Variants))}
	for i, v := range p.Variants {
		t.Variants[i] = ir.Variant{Name: v.Name, Version: v.Version, Pool: v.Pool, Weight: v.Weight}
	}
	if s := p.Shadow; s != nil {
		t.Shadow = &ir.Shadow{Variant: ir.Variant{Name: s.Name, Version: s.Version, Pool: s.Pool}, Percent: s.Percent}
	}
	return t
}

// validateTraffic checks traffic's model names and each policy, in model
// order. Whether the model uses sequence batching (no policy then) is
// known only from its workers: the builder says so when it leaves such a
// policy out.
func (c *Config) validateTraffic(add func(field, format string, args ...any)) {
	for _, model := range slices.Sorted(maps.Keys(c.Traffic)) {
		field := "traffic." + model
		if err := wire.CheckModelName(model); err != nil {
			add(field, "%v", err)
			continue
		}
		for _, e := range flatten(ir.ValidateTraffic(c.Traffic[model].traffic())) {
			var fe *ir.FieldError
			if !errors.As(e, &fe) {
				add(field, "%v", e)
				continue
			}
			// The file's shadow is flat: shadow.name, not
			// shadow.variant.name.
			f := strings.Replace(fe.Field, "shadow.variant", "shadow", 1)
			add(field+"."+f, "%s", fe.Reason)
		}
	}
}
