package translate

import (
	"errors"
	"slices"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/translate/translatetest"
)

// withWorkerReady is g with worker's endpoints ready or not, in the pools
// it is in and the default pool (copies: g is not modified); it returns
// the models of the pools that changed.
func withWorkerReady(g *ir.Gateway, worker string, ready bool) (*ir.Gateway, []string) {
	out := *g
	out.Pools = slices.Clone(g.Pools)
	set := func(p *ir.Pool) bool {
		i := slices.IndexFunc(p.Endpoints, func(e ir.Endpoint) bool { return e.Worker == worker })
		if i < 0 {
			return false
		}
		p.Endpoints = slices.Clone(p.Endpoints)
		p.Endpoints[i].Ready = ready
		return true
	}
	var models []string
	for i := range out.Pools {
		if set(&out.Pools[i]) {
			models = append(models, out.Pools[i].Model)
		}
	}
	set(&out.DefaultPool)
	return &out, models
}

func sameResources(t *testing.T, kind string, got, want []types.Resource) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d resources, want %d", kind, len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s #%d differs from a full translation:\n got %v\nwant %v", kind, i, got[i], want[i])
		}
	}
}

// UpdateEndpoints gives what Translate gives for a change to some pools'
// endpoints, rebuilding only their assignments and sharing every other
// resource with the last translation.
func TestUpdateEndpointsEqualsTranslate(t *testing.T) {
	g := translatetest.Gateway(20, 10, 3)
	prev, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	g2, models := withWorkerReady(g, "worker-004", false)
	if len(models) != 6 { // 20 models x 3 workers each, over 10 workers
		t.Fatalf("worker-004 is in %d pools, want 6", len(models))
	}
	got, err := UpdateEndpoints(prev, g2, models, true)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Translate(g2)
	if err != nil {
		t.Fatal(err)
	}
	sameResources(t, "listeners", got.Listeners, want.Listeners)
	sameResources(t, "routes", got.Routes, want.Routes)
	sameResources(t, "clusters", got.Clusters, want.Clusters)
	sameResources(t, "endpoints", got.Endpoints, want.Endpoints)
	sameResources(t, "secrets", got.Secrets, want.Secrets)

	rebuilt := 0
	for i, r := range got.Endpoints {
		if r != prev.Endpoints[i] {
			rebuilt++
		}
	}
	if want := 2 * (len(models) + 1); rebuilt != want {
		t.Errorf("%d assignments rebuilt, want %d (the 6 pools' and the default pool's, gRPC and REST)", rebuilt, want)
	}
	if !slices.Equal(got.Clusters, prev.Clusters) || !slices.Equal(got.Routes, prev.Routes) || !slices.Equal(got.Listeners, prev.Listeners) {
		t.Error("listeners, routes or clusters rebuilt for an endpoint change")
	}
	if changed, err := UpdateEndpoints(prev, g2, nil, false); err != nil || !slices.Equal(changed.Endpoints, prev.Endpoints) {
		t.Errorf("nothing named: %v, or assignments rebuilt", err)
	}
}

// The changed pools are validated as Translate validates them; a model
// prev has no pool for (a pool that appeared) is refused: that change
// wants Translate.
func TestUpdateEndpointsRefuses(t *testing.T) {
	g := translatetest.Gateway(5, 4, 2)
	prev, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	bad := *g
	bad.Pools = slices.Clone(g.Pools)
	bad.Pools[1].Endpoints = slices.Clone(bad.Pools[1].Endpoints)
	bad.Pools[1].Endpoints[0].Address = "not-an-ip"
	if _, err := UpdateEndpoints(prev, &bad, []string{bad.Pools[1].Model}, false); !errors.Is(err, ir.ErrInvalid) {
		t.Errorf("an invalid endpoint: %v, want ir.ErrInvalid", err)
	}
	if _, err := UpdateEndpoints(prev, g, []string{"model-new"}, false); err == nil {
		t.Error("a model without a pool: no error")
	}
	more := *g
	more.Pools = append(slices.Clone(g.Pools), ir.Pool{Model: "model-new", Endpoints: g.Pools[0].Endpoints})
	if _, err := UpdateEndpoints(prev, &more, []string{"model-new"}, false); err == nil {
		t.Error("a pool prev was not translated with: no error")
	}
	// As many pools, but not the same ones: the assignments' names tell.
	renamed := *g
	renamed.Pools = slices.Clone(g.Pools)
	renamed.Pools[1].Model += "x" // still sorted
	if _, err := UpdateEndpoints(prev, &renamed, []string{renamed.Pools[1].Model}, false); err == nil {
		t.Error("a pool renamed since the last translation: no error")
	}
	// Something else where an assignment should be.
	odd := *prev
	odd.Endpoints = slices.Clone(prev.Endpoints)
	odd.Endpoints[0] = prev.Clusters[0]
	if _, err := UpdateEndpoints(&odd, g, nil, true); err == nil {
		t.Error("a cluster in the assignments' place: no error")
	}
}

// Pools in any order are found as Translate sorts them.
func TestUpdateEndpointsUnsortedPools(t *testing.T) {
	g := translatetest.Gateway(5, 4, 2)
	prev, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	changed, models := withWorkerReady(g, g.Pools[2].Endpoints[0].Worker, false)
	slices.Reverse(changed.Pools)
	got, err := UpdateEndpoints(prev, changed, models, true)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Translate(changed)
	if err != nil {
		t.Fatal(err)
	}
	sameResources(t, "endpoints", got.Endpoints, want.Endpoints)
}
