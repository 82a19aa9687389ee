package admin

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// Plans are the gateway's rate-limit plans as the admin API gives them to
// clients. Their one home is the gateway config file (xds/config), which
// helix-authz reads with --gateway-config and hands over with Set each
// time it changes. Safe for concurrent use.
type Plans struct {
	set atomic.Pointer[planSet]
}

type planSet struct {
	names []string // sorted
	def   string   // "" when the gateway has no rate limits
}

// NewPlans returns Plans holding names and the default plan (the plan a
// new client gets; "" when the gateway has no rate limits).
func NewPlans(names []string, defaultPlan string) *Plans {
	p := &Plans{}
	p.Set(names, defaultPlan)
	return p
}

// Set replaces the plans (the gateway config changed).
func (p *Plans) Set(names []string, defaultPlan string) {
	p.set.Store(&planSet{names: slices.Sorted(slices.Values(names)), def: defaultPlan})
}

func (p *Plans) get() *planSet { return p.set.Load() }

// check refuses a plan the gateway does not have, naming the ones it has.
func (s *planSet) check(plan string) error {
	if slices.Contains(s.names, plan) {
		return nil
	}
	known := "it has none"
	if len(s.names) > 0 {
		known = "plans: " + strings.Join(s.names, ", ")
	}
	return fmt.Errorf("plan: %q is not a plan of the gateway (%s)", plan, known)
}
