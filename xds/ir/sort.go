package ir

import (
	"cmp"
	"slices"
	"strings"
)

// Sorted returns g with pools ordered by model, and endpoints (by
// CompareEndpoints) and versions in a fixed order, so that translation
// output does not depend on the order a source produced them in. g is not
// modified: what is out of order is copied before sorting, and what is in
// order (the common case for a registry that keeps it so) is shared.
func (g *Gateway) Sorted() *Gateway {
	out := *g
	pools := g.Pools
	if !slices.IsSortedFunc(pools, comparePools) {
		pools = slices.Clone(pools)
		slices.SortFunc(pools, comparePools)
	}
	copied := !sameSlice(pools, g.Pools)
	var r ranks
	for i := range pools {
		if pools[i].inOrder() {
			continue
		}
		if r == nil {
			r = newRanks(g)
		}
		if !copied {
			pools = slices.Clone(pools)
			copied = true
		}
		pools[i] = pools[i].sortedBy(r)
	}
	out.Pools = pools
	if !out.DefaultPool.inOrder() {
		if r == nil {
			r = newRanks(g)
		}
		out.DefaultPool = out.DefaultPool.sortedBy(r)
	}
	return &out
}

func (p Pool) inOrder() bool {
	for _, e := range p.Endpoints {
		if !slices.IsSorted(e.Versions) {
			return false
		}
	}
	return slices.IsSortedFunc(p.Endpoints, CompareEndpoints)
}

// ranks numbers every distinct endpoint address of the gateway in string
// order. A worker is in many pools: comparing its address's rank (an int)
// instead of its strings makes sorting 1,000 pools of 100 endpoints
// several times cheaper.
type ranks map[string]int

func newRanks(g *Gateway) ranks {
	r := ranks{}
	var addrs []string
	add := func(p *Pool) {
		for i := range p.Endpoints {
			a := p.Endpoints[i].Address
			if _, ok := r[a]; !ok {
				r[a] = 0
				addrs = append(addrs, a)
			}
		}
	}
	for i := range g.Pools {
		add(&g.Pools[i])
	}
	add(&g.DefaultPool)
	slices.Sort(addrs)
	for i, a := range addrs {
		r[a] = i
	}
	return r
}

func (p Pool) sortedBy(r ranks) Pool {
	type ranked struct {
		rank int
		e    *Endpoint
	}
	order := make([]ranked, len(p.Endpoints))
	for i := range p.Endpoints {
		order[i] = ranked{r[p.Endpoints[i].Address], &p.Endpoints[i]}
	}
	// Same order as CompareEndpoints, the address compared by rank.
	slices.SortFunc(order, func(a, b ranked) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		if c := cmp.Compare(a.e.Port, b.e.Port); c != 0 {
			return c
		}
		if c := cmp.Compare(a.e.HTTPPort, b.e.HTTPPort); c != 0 {
			return c
		}
		return strings.Compare(a.e.Worker, b.e.Worker)
	})
	eps := make([]Endpoint, len(p.Endpoints))
	for j, o := range order {
		eps[j] = *o.e
		if v := eps[j].Versions; !slices.IsSorted(v) {
			eps[j].Versions = slices.Sorted(slices.Values(v))
		}
	}
	p.Endpoints = eps
	return p
}

func comparePools(a, b Pool) int { return strings.Compare(a.Model, b.Model) }

// CompareEndpoints orders endpoints by address, ports and worker id.
// (Early returns, not cmp.Or: cmp.Or evaluates every comparison.)
func CompareEndpoints(a, b Endpoint) int {
	if c := strings.Compare(a.Address, b.Address); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Port, b.Port); c != 0 {
		return c
	}
	if c := cmp.Compare(a.HTTPPort, b.HTTPPort); c != 0 {
		return c
	}
	return strings.Compare(a.Worker, b.Worker)
}

// sameSlice reports whether a and b share their backing array start.
func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
