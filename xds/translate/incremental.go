package translate

import (
	"fmt"
	"slices"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/helixflow/helixflow/xds/ir"
)

// UpdateEndpoints is Translate for a change that touched only the
// endpoints of some pools (a worker turned ready or not ready, left a
// pool that keeps other workers, or joined one that exists): it returns
// prev with the ClusterLoadAssignments of the pools of models rebuilt
// from g, and the default pool's when defaultPool, every other resource
// shared with prev (resources are immutable). g is the gateway prev was
// translated from but for those pools' endpoints: the same pools (models)
// and everything else equal (traffic policies included: a pool's
// variants' assignments are rebuilt with its own); only the named pools
// and the default pool are validated. A model without a pool in prev is
// an error: a pool that appears or goes, or a policy that comes, goes or
// changes, changes routes and clusters, which takes Translate.
//
// With 1,000 models on 100 workers, one worker's change rebuilds the
// assignments of the pools it is in instead of all 6,000 resources, and
// the ADS server hashes only those (xds/server remembers the others'
// digests).
func UpdateEndpoints(prev *Resources, g *ir.Gateway, models []string, defaultPool bool) (*Resources, error) {
	pools := g.Pools
	if !slices.IsSortedFunc(pools, func(a, b ir.Pool) int { return strings.Compare(a.Model, b.Model) }) {
		pools = g.Sorted().Pools
	}
	// Where each pool's assignments start: its two, then two per variant
	// of its traffic policy (poolAssignments).
	at := make([]int, len(pools))
	n := 2
	for i := range pools {
		at[i] = n
		n += 2 + 2*trafficClusterCount(&pools[i])
	}
	if len(prev.Endpoints) != n {
		return nil, fmt.Errorf("update endpoints: the last translation has %d assignments, the gateway's pools and policies %d: not the same pools", len(prev.Endpoints), n)
	}
	find := func(m string) (int, bool) {
		return slices.BinarySearchFunc(pools, m, func(p ir.Pool, m string) int { return strings.Compare(p.Model, m) })
	}
	// Only the changed pools: Validate's cost is in the endpoints.
	sub := *g
	sub.Pools = make([]ir.Pool, 0, len(models))
	for _, m := range models {
		i, ok := find(m)
		if !ok {
			return nil, fmt.Errorf("update endpoints: model %q has no pool", m)
		}
		sub.Pools = append(sub.Pools, pools[i])
	}
	s := sub.Sorted()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	eps := slices.Clone(prev.Endpoints)
	memo := newEndpointMemo()
	var built []types.Resource
	set := func(i int, p *ir.Pool, grpc, http string) error {
		var err error
		if built, err = memo.poolAssignments(built[:0], p, grpc, http); err != nil {
			return err
		}
		for k, r := range built {
			want := assignmentName(r)
			if got := assignmentName(eps[i+k]); got != want {
				return fmt.Errorf("update endpoints: assignment #%d of the last translation is %q, want %q: not the same pools", i+k, got, want)
			}
			eps[i+k] = r
		}
		return nil
	}
	if defaultPool {
		if err := set(0, &s.DefaultPool, ClusterDefaultGRPC, ClusterDefaultHTTP); err != nil {
			return nil, err
		}
	}
	for j := range s.Pools {
		p := &s.Pools[j]
		i, _ := find(p.Model)
		if err := set(at[i], p, GRPCCluster(p.Model), HTTPCluster(p.Model)); err != nil {
			return nil, err
		}
	}
	out := *prev
	out.Endpoints = eps
	return &out, nil
}

func assignmentName(r types.Resource) string {
	if cla, ok := r.(*endpointv3.ClusterLoadAssignment); ok {
		return cla.GetClusterName()
	}
	return ""
}
