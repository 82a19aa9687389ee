package translate

import (
	"errors"
	"slices"
	"strings"
	"testing"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"github.com/helixflow/helixflow/xds/ir"
)

// The ratelimit config's proto has no generated validation: this check is
// the only one before the ratelimit service reads it.
func TestCheckRateLimitConfig(t *testing.T) {
	limit := func(key string, unit rlsconfv3.RateLimitUnit) *rlsconfv3.RateLimitDescriptor {
		return &rlsconfv3.RateLimitDescriptor{Key: key, RateLimit: &rlsconfv3.RateLimitPolicy{Unit: unit, RequestsPerUnit: 5}}
	}
	cfg := func(ds ...*rlsconfv3.RateLimitDescriptor) *rlsconfv3.RateLimitConfig {
		return &rlsconfv3.RateLimitConfig{Name: "helixflow", Domain: "helixflow", Descriptors: ds}
	}
	for _, tc := range []struct {
		name string
		c    *rlsconfv3.RateLimitConfig
		want string // "" = valid
	}{
		{"valid", cfg(limit("client", rlsconfv3.RateLimitUnit_SECOND)), ""},
		{"no domain", &rlsconfv3.RateLimitConfig{Name: "x"}, "needs a name and a domain"},
		{"no unit", cfg(limit("client", rlsconfv3.RateLimitUnit_UNKNOWN)), "client= has no valid unit"},
		{"unknown unit", cfg(limit("client", 99)), "has no valid unit"},
		{"no key", cfg(limit("", rlsconfv3.RateLimitUnit_SECOND)), "has no key"},
		{"twice", cfg(limit("client", rlsconfv3.RateLimitUnit_SECOND), limit("client", rlsconfv3.RateLimitUnit_MINUTE)), "client= appears twice"},
		{"nested", cfg(&rlsconfv3.RateLimitDescriptor{Key: "window", Value: "second", Descriptors: []*rlsconfv3.RateLimitDescriptor{limit("client", 0)}}),
			"helixflow/window=second/client= has no valid unit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkRateLimitConfig(tc.c)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidResource) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidResource saying %q", err, tc.want)
			}
		})
	}
}

// A client with no plan, or one not listed, gets the default plan's
// limits; without a default plan the config is refused rather than leave
// those clients unlimited (ir.Validate requires one; this is the last
// check).
func TestRateLimitConfigsDefaultPlan(t *testing.T) {
	g := &ir.Gateway{RateLimit: &ir.RateLimit{Domain: "helixflow", Plans: []ir.Plan{{Name: "free", RequestsPerSecond: 5}}}}
	for _, def := range []string{"", "gold"} {
		g.RateLimit.DefaultPlan = def
		if rs, err := rateLimitConfigs(g); !errors.Is(err, ErrInvalidResource) || !strings.Contains(err.Error(), "default plan") {
			t.Errorf("default plan %q: (%v, %v), want ErrInvalidResource naming the default plan", def, rs, err)
		}
	}
	g.RateLimit.DefaultPlan = "free"
	rs, err := rateLimitConfigs(g)
	if err != nil {
		t.Fatal(err)
	}
	second := rs[0].(*rlsconfv3.RateLimitConfig).GetDescriptors()[0]
	var keys []string
	for _, d := range second.GetDescriptors() {
		keys = append(keys, d.GetKey()+"="+d.GetValue())
	}
	if !slices.Equal(keys, []string{"plan=free", "plan=", "client="}) {
		t.Errorf("second window: %v, want the listed plan, any other plan and no plan", keys)
	}
}
