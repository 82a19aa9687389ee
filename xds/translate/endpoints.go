package translate

import (
	"net"
	"strconv"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/helixflow/helixflow/xds/ir"
)

// endpoints builds one ClusterLoadAssignment per pool cluster, in the
// order of clusters. Only ready endpoints are listed; a pool with none
// still gets its (empty) assignment, so its routes answer 503 (gRPC
// UNAVAILABLE) rather than pointing at a missing cluster. REST clusters
// list only workers that serve REST. A pool with a traffic policy has
// its variants' assignments after its own (poolAssignments).
func endpoints(g *ir.Gateway) ([]types.Resource, error) {
	out := make([]types.Resource, 0, 2+2*len(g.Pools))
	memo := newEndpointMemo()
	var err error
	if out, err = memo.poolAssignments(out, &g.DefaultPool, ClusterDefaultGRPC, ClusterDefaultHTTP); err != nil {
		return nil, err
	}
	for i := range g.Pools {
		p := &g.Pools[i]
		if out, err = memo.poolAssignments(out, p, GRPCCluster(p.Model), HTTPCluster(p.Model)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// poolAssignments appends to out p's assignments, checked: its gRPC and
// REST clusters' (named grpc, http), then, with a traffic policy, each
// variant's and the shadow's gRPC and REST ones (the endpoints that
// ir.Variant.Matches), in trafficVariants order: the order of clusters.
func (m *endpointMemo) poolAssignments(out []types.Resource, p *ir.Pool, grpc, http string) ([]types.Resource, error) {
	add := func(name string, eps []ir.Endpoint, rest bool) error {
		cla, err := m.assignment(name, eps, rest)
		if err != nil {
			return err
		}
		if err := checkAssignment(cla); err != nil {
			return err
		}
		out = append(out, cla)
		return nil
	}
	if err := add(grpc, p.Endpoints, false); err != nil {
		return nil, err
	}
	if err := add(http, p.Endpoints, true); err != nil {
		return nil, err
	}
	if p.Traffic == nil {
		return out, nil
	}
	if err := checkTraffic(p); err != nil {
		return nil, err
	}
	for _, v := range trafficVariants(p) {
		eps := variantEndpoints(p, v)
		if err := add(GRPCVariantCluster(p.Model, v.Name), eps, false); err != nil {
			return nil, err
		}
		if err := add(HTTPVariantCluster(p.Model, v.Name), eps, true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// endpointMemo shares one LbEndpoint per address and port among all the
// assignments of a translation: a worker appears in the pool of every
// model it has (1,000 models x 100 workers would otherwise be 200,000
// sets of identical messages). Resources are immutable once built, so
// sharing is safe. Each is validated once, when built.
type endpointMemo struct {
	byKey map[endpointKey]*endpointv3.LbEndpoint
	// last holds the previous assignment's endpoints by position, for
	// gRPC and REST ports: pools list their workers in one order (by
	// address), so most lookups find their endpoint there, at the same
	// position, without hashing the address (a fifth of rebuilding the
	// assignments of 1,000 pools of 100 workers). cur is filled meanwhile.
	last, cur [2][]memoEntry
}

type memoEntry struct {
	key endpointKey
	lb  *endpointv3.LbEndpoint
}

type endpointKey struct {
	addr string
	port uint32
}

func newEndpointMemo() *endpointMemo {
	return &endpointMemo{byKey: map[endpointKey]*endpointv3.LbEndpoint{}}
}

func (m *endpointMemo) get(addr string, port uint32) (*endpointv3.LbEndpoint, error) {
	k := endpointKey{addr, port}
	if e, ok := m.byKey[k]; ok {
		return e, nil
	}
	e := lbEndpoint(addr, port)
	if err := check("endpoint", net.JoinHostPort(addr, strconv.Itoa(int(port))), e); err != nil {
		return nil, err
	}
	m.byKey[k] = e
	return e, nil
}

// checkAssignment validates a load assignment whose LbEndpoints were
// validated when built: it detaches them while ValidateAll runs, so a
// worker in 1,000 pools is not validated 1,000 times.
func checkAssignment(cla *endpointv3.ClusterLoadAssignment) error {
	saved := make([][]*endpointv3.LbEndpoint, len(cla.Endpoints))
	for i, l := range cla.Endpoints {
		saved[i], l.LbEndpoints = l.LbEndpoints, nil
	}
	err := check("cluster load assignment", cla.ClusterName, cla)
	for i, l := range cla.Endpoints {
		l.LbEndpoints = saved[i]
	}
	return err
}

func (m *endpointMemo) assignment(cluster string, eps []ir.Endpoint, rest bool) (*endpointv3.ClusterLoadAssignment, error) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	lbs := make([]*endpointv3.LbEndpoint, 0, len(eps))
	kind := 0
	if rest {
		kind = 1
	}
	last, cur := m.last[kind], m.cur[kind][:0]
	for _, e := range eps {
		port := e.Port
		if rest {
			port = e.HTTPPort
		}
		if !e.Ready || port == 0 {
			continue
		}
		k := endpointKey{e.Address, port}
		var lb *endpointv3.LbEndpoint
		if i := len(lbs); i < len(last) && last[i].key == k {
			lb = last[i].lb
		} else {
			var err error
			if lb, err = m.get(e.Address, port); err != nil {
				return nil, err
			}
		}
		lbs = append(lbs, lb)
		cur = append(cur, memoEntry{k, lb})
	}
	m.last[kind], m.cur[kind] = cur, last
	if len(lbs) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
	return cla, nil
}

func lbEndpoint(addr string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: socketAddress(addr, port),
	}}}
}
