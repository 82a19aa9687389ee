package builder

import (
	"log/slog"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/xds/config"
	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/translate"
)

func mw(id, addr string, ready bool, models ...registry.Model) registry.Worker {
	return registry.Worker{ID: id, Address: addr, GRPCPort: 8001, HTTPPort: 8000, Ready: ready, Models: models}
}

func model(name string, ready bool, versions ...string) registry.Model {
	return registry.Model{Name: name, Ready: ready, Versions: versions}
}

func equalResources(t *testing.T, step string, got, want *translate.Resources) {
	t.Helper()
	for _, k := range []struct {
		kind      string
		got, want []types.Resource
	}{
		{"listeners", got.Listeners, want.Listeners}, {"routes", got.Routes, want.Routes}, {"clusters", got.Clusters, want.Clusters},
		{"endpoints", got.Endpoints, want.Endpoints}, {"secrets", got.Secrets, want.Secrets},
	} {
		if !slices.EqualFunc(k.got, k.want, func(a, b types.Resource) bool { return proto.Equal(a, b) }) {
			t.Fatalf("%s: %s differ from a full translation:\n got %v\nwant %v", step, k.kind, k.got, k.want)
		}
	}
}

// Every rebuild after a change of workers gives what a full translation
// gives; one that changed only which existing pools workers are in (or
// ready in) rebuilds only assignments, sharing listeners, routes and
// clusters with the last one, so that xds/server hashes only those.
func TestRebuildAfterAWorkerChangeEqualsAFullOne(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, gatewayYAML))
	if err != nil {
		t.Fatal(err)
	}
	a := mw("a", "127.0.0.1", true, model("m1", true, "1"), model("m2", true, "1"))
	b := mw("b", "127.0.0.2", true, model("m1", true, "1"))
	c := mw("c", "127.0.0.3", true, model("m2", true, "1"), model("m3", true, "1"))
	with := func(w registry.Worker, f func(*registry.Worker)) registry.Worker {
		f(&w)
		return w
	}
	steps := []struct {
		name        string
		workers     []registry.Worker
		incremental bool
	}{
		{"start", []registry.Worker{a, b, c}, false},
		{"a not ready", []registry.Worker{with(a, func(w *registry.Worker) { w.Ready = false }), b, c}, true},
		{"a ready again", []registry.Worker{a, b, c}, true},
		{"b's model not ready", []registry.Worker{a, mw("b", "127.0.0.2", true, model("m1", false, "1")), c}, true},
		{"b leaves, m1 keeps a", []registry.Worker{a, c}, true},
		{"b back with m1 and m2", []registry.Worker{a, mw("b", "127.0.0.2", true, model("m1", true, "1"), model("m2", true, "2", "1")), c}, true},
		{"c leaves, m3 goes", []registry.Worker{a, b}, false},
		{"d comes with m4", []registry.Worker{a, b, mw("d", "127.0.0.4", true, model("m4", true, "1"))}, false},
		{"a moves", []registry.Worker{with(a, func(w *registry.Worker) { w.Address = "127.0.0.9" }), b, mw("d", "127.0.0.4", true, model("m4", true, "1"))}, true},
		{"a DNS name is left out", []registry.Worker{a, b, mw("d", "127.0.0.4", true, model("m4", true, "1")), mw("e", "worker.example", true, model("m1", true, "1"))}, true},
		{"an unloaded model makes no pool", []registry.Worker{a, mw("b", "127.0.0.2", true, model("m1", true, "1"), model("m9", false)), mw("d", "127.0.0.4", true, model("m4", true, "1"))}, true},
	}
	log := slog.New(slog.DiscardHandler)
	var last *lastBuild
	for _, s := range steps {
		next, err := translateWorkers(last, cfg, nil, s.workers, log)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		full, err := translateWorkers(nil, cfg, nil, s.workers, log)
		if err != nil {
			t.Fatalf("%s: full: %v", s.name, err)
		}
		equalResources(t, s.name, next.res, full.res)
		if last != nil {
			shared := slices.Equal(next.res.Clusters, last.res.Clusters) && slices.Equal(next.res.Routes, last.res.Routes) && slices.Equal(next.res.Listeners, last.res.Listeners)
			if shared != s.incremental {
				t.Errorf("%s: listeners, routes and clusters shared with the last build: %v, want %v", s.name, shared, s.incremental)
			}
		}
		last = next
	}
	// A new config (a reload) translates in full.
	cfg2, err := config.Load(writeConfig(t, gatewayYAML))
	if err != nil {
		t.Fatal(err)
	}
	next, err := translateWorkers(last, cfg2, nil, steps[len(steps)-1].workers, log)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(next.res.Clusters, last.res.Clusters) {
		t.Error("a new config reused the last build's clusters")
	}
}

// A change the model refuses (a version name no model may have) fails its
// rebuild, after patching the last build's pools in place; the next
// rebuild starts afresh and publishes what a full one would.
func TestRebuildAfterAFailedOneStartsAfresh(t *testing.T) {
	good := []registry.Worker{mw("a", "127.0.0.1", true, model("m1", true, "1")), mw("b", "127.0.0.2", true, model("m1", true, "1"))}
	src := &workers{table: good}
	pub := &publisher{got: make(chan []string, 10)}
	b, err := New(t.Context(), Config{ConfigPath: writeConfig(t, gatewayYAML), Workers: src, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	<-pub.got
	src.table = []registry.Worker{good[0], mw("b", "127.0.0.2", true, model("m1", true, "1/../2"))}
	if err := b.rebuild(t.Context()); err == nil {
		t.Fatal("a bad version name rebuilt")
	}
	if b.last != nil {
		t.Fatal("a failed rebuild kept its patched last build")
	}
	src.table = []registry.Worker{good[0], mw("b", "127.0.0.2", false, model("m1", true, "1"))}
	if err := b.rebuild(t.Context()); err != nil {
		t.Fatal(err)
	}
	full, err := translateWorkers(nil, b.cfg, nil, src.table, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	equalResources(t, "after a failed rebuild", b.last.res, full.res)
}

// seqModel is model with sequence batching, as a worker's registration
// says (registry.Model.Sequence).
func seqModel(name string, versions ...string) registry.Model {
	m := model(name, true, versions...)
	m.Sequence = true
	return m
}

// sequenceRouting reports whether res has model's Maglev twins, its
// sequence routes and a REST route that sends the body to authz.
func sequenceRouting(t *testing.T, res *translate.Resources, model string) (twins, routes, body bool) {
	t.Helper()
	for _, r := range res.Clusters {
		if n := r.(*clusterv3.Cluster).GetName(); n == translate.GRPCSequenceCluster(model) || n == translate.HTTPSequenceCluster(model) {
			twins = true
		}
	}
	for _, rt := range res.Routes[0].(*routev3.RouteConfiguration).GetVirtualHosts()[0].GetRoutes() {
		switch rt.GetName() {
		case "grpc-sequence/" + model, "rest-sequence/" + model:
			routes = true
		case "rest-model/" + model:
			var per extauthzv3.ExtAuthzPerRoute
			for _, a := range rt.GetTypedPerFilterConfig() {
				if err := a.UnmarshalTo(&per); err == nil && per.GetCheckSettings().GetWithRequestBody() != nil {
					body = true
				}
			}
		}
	}
	return twins, routes, body
}

// A pool is a sequence pool while any of its workers says so: a worker
// that re-registers a model with sequence batching gives its pool the
// twins, the sequence routes and the REST body (a full translation), and
// the pool loses them when no worker says so any more; churn that leaves
// the flag as it was stays incremental. Each rebuild equals a full one.
func TestSequencePoolsFollowRegistrations(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, gatewayYAML))
	if err != nil {
		t.Fatal(err)
	}
	a := func(ready bool, s1 registry.Model) registry.Worker {
		return mw("a", "127.0.0.1", ready, model("m1", true, "1"), s1)
	}
	b := func(s1 registry.Model) registry.Worker { return mw("b", "127.0.0.2", true, model("m1", true, "1"), s1) }
	plain, seq := model("s1", true, "1"), seqModel("s1", "1")
	steps := []struct {
		name        string
		workers     []registry.Worker
		incremental bool
		sequence    bool // s1's pool
	}{
		{"start, no sequence batching", []registry.Worker{a(true, plain), b(plain)}, false, false},
		{"b re-registers s1 with sequence batching", []registry.Worker{a(true, plain), b(seq)}, false, true},
		{"a not ready", []registry.Worker{a(false, plain), b(seq)}, true, true},
		{"a ready, now with sequence batching too", []registry.Worker{a(true, seq), b(seq)}, true, true},
		{"b without it again, a still with it", []registry.Worker{a(true, seq), b(plain)}, true, true},
		{"a leaves: no worker says so", []registry.Worker{b(plain)}, false, false},
		{"a back with it", []registry.Worker{a(true, seq), b(plain)}, false, true},
	}
	log := slog.New(slog.DiscardHandler)
	var last *lastBuild
	for _, s := range steps {
		next, err := translateWorkers(last, cfg, nil, s.workers, log)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		full, err := translateWorkers(nil, cfg, nil, s.workers, log)
		if err != nil {
			t.Fatalf("%s: full: %v", s.name, err)
		}
		equalResources(t, s.name, next.res, full.res)
		if last != nil {
			shared := slices.Equal(next.res.Clusters, last.res.Clusters) && slices.Equal(next.res.Routes, last.res.Routes)
			if shared != s.incremental {
				t.Errorf("%s: routes and clusters shared with the last build: %v, want %v", s.name, shared, s.incremental)
			}
		}
		if twins, routes, body := sequenceRouting(t, next.res, "s1"); twins != s.sequence || routes != s.sequence || body != s.sequence {
			t.Errorf("%s: s1 twins %v, sequence routes %v, REST body %v; want all %v", s.name, twins, routes, body, s.sequence)
		}
		if twins, routes, body := sequenceRouting(t, next.res, "m1"); twins || routes || body {
			t.Errorf("%s: m1 (no sequence batching) has twins %v, sequence routes %v, REST body %v", s.name, twins, routes, body)
		}
		last = next
	}
}
