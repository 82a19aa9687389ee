package builder

import (
	"log/slog"
	"slices"
	"testing"

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
		next, err := translateWorkers(last, cfg, s.workers, log)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		full, err := translateWorkers(nil, cfg, s.workers, log)
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
	next, err := translateWorkers(last, cfg2, steps[len(steps)-1].workers, log)
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
	full, err := translateWorkers(nil, b.cfg, src.table, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	equalResources(t, "after a failed rebuild", b.last.res, full.res)
}
