package builder

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/config"
	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/server"
	"github.com/helixflow/helixflow/xds/translate"
)

// trafficYAML: simple 90/10 between version 1 and version 2 in pool
// canary.
const trafficYAML = gatewayYAML + `traffic:
  simple:
    variants:
      - {name: stable, version: "1", weight: 90}
      - {name: canary, version: "2", pool: canary, weight: 10}
`

// pw is a worker in pool with the models given, sorted by name as the
// registry keeps them.
func pw(id, addr, pool string, ready bool, models ...registry.Model) registry.Worker {
	slices.SortFunc(models, func(a, b registry.Model) int { return strings.Compare(a.Name, b.Name) })
	w := mw(id, addr, ready, models...)
	w.Pool = pool
	return w
}

func rollout(stable, canary uint32) *ir.Traffic {
	return &ir.Traffic{Sticky: true, Variants: []ir.Variant{
		{Name: "stable", Version: "1", Weight: stable}, {Name: "canary", Version: "2", Pool: "canary", Weight: canary},
	}}
}

func TestApplyTraffic(t *testing.T) {
	stable := pw("a", "127.0.0.1", wire.DefaultPool, true, model("simple", true, "1"), model("mlp", true, "1"))
	canary := pw("b", "127.0.0.2", "canary", true, model("simple", true, "2"), model("mlp", true, "2"))
	canaryDown := pw("b", "127.0.0.2", "canary", false, model("simple", true, "2"), model("mlp", true, "2"))
	seq := pw("a", "127.0.0.1", wire.DefaultPool, true, model("simple", true, "1"), registry.Model{Name: "acc", Ready: true, Versions: []string{"1"}, Sequence: true})
	type want struct {
		model, source, reason, detail string
	}
	tests := []struct {
		name      string
		yaml      string
		overrides map[string]*ir.Traffic
		workers   []registry.Worker
		want      []want
	}{
		{"no policies", gatewayYAML, nil, []registry.Worker{stable, canary}, nil},
		{"config policy applied", trafficYAML, nil, []registry.Worker{stable, canary}, []want{{"simple", "config", "", ""}}},
		{"canary missing", trafficYAML, nil, []registry.Worker{stable}, []want{{"simple", "config", ir.InactiveNoEndpoints, `variant "canary" (version 2 in pool canary) matches no ready endpoint`}}},
		{"canary not ready", trafficYAML, nil, []registry.Worker{stable, canaryDown}, []want{{"simple", "config", ir.InactiveNoEndpoints, `"canary"`}}},
		{"canary in the wrong pool", trafficYAML, nil, []registry.Worker{stable, pw("b", "127.0.0.2", "gpu", true, model("simple", true, "2"))},
			[]want{{"simple", "config", ir.InactiveNoEndpoints, `"canary"`}}},
		{"model not served", trafficYAML, nil, []registry.Worker{pw("a", "127.0.0.1", "", true, model("mlp", true, "1"))},
			[]want{{"simple", "config", InactiveNotServed, "no worker serves the model"}}},
		{"sequence model", gatewayYAML + "traffic:\n  acc: {variants: [{name: one, version: '1', weight: 100}]}\n", nil, []registry.Worker{seq},
			[]want{{"acc", "config", ir.InactiveSequence, "traffic policy on sequence model"}}},
		{"a rollout replaces the config's", trafficYAML, map[string]*ir.Traffic{"simple": rollout(99, 1)}, []registry.Worker{stable, canary},
			[]want{{"simple", "rollout", "", ""}}},
		{"a rolled back canary at 0 needs no endpoint", trafficYAML, map[string]*ir.Traffic{"simple": rollout(100, 0)}, []registry.Worker{stable},
			[]want{{"simple", "rollout", "", ""}}},
		{"a rollout of a model without a config policy", gatewayYAML, map[string]*ir.Traffic{"mlp": rollout(50, 50)}, []registry.Worker{stable, canary},
			[]want{{"mlp", "rollout", "", ""}}},
		{"a nil override is none", trafficYAML, map[string]*ir.Traffic{"simple": nil}, []registry.Worker{stable, canary},
			[]want{{"simple", "config", "", ""}}},
		{"an invalid rollout policy", trafficYAML, map[string]*ir.Traffic{"simple": rollout(50, 10)}, []registry.Worker{stable, canary},
			[]want{{"simple", "rollout", InactiveInvalid, "variants: weights add up to 60, want 100"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.yaml), "g.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var ov *overrides
			if tc.overrides != nil {
				b := &Builder{}
				b.SetTrafficOverrides(tc.overrides)
				ov = b.overrides
			}
			next, err := translateWorkers(nil, cfg, ov, tc.workers, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if len(next.traffic) != len(tc.want) {
				t.Fatalf("traffic = %+v, want %d policies", next.traffic, len(tc.want))
			}
			for i, w := range tc.want {
				got := next.traffic[i]
				if got.Model != w.model || got.Source != w.source || got.InactiveReason != w.reason || !strings.Contains(got.Detail, w.detail) || got.Active != (w.reason == "") {
					t.Errorf("traffic[%d] = %+v, want %+v", i, got, w)
				}
				// On the pool, and so in Envoy's clusters, only when active.
				pool := slices.IndexFunc(next.g.Pools, func(p ir.Pool) bool { return p.Model == w.model })
				onPool := pool >= 0 && next.g.Pools[pool].Traffic != nil
				hasClusters := slices.ContainsFunc(next.res.Clusters, func(c types.Resource) bool {
					return cache.GetResourceName(c) == translate.GRPCVariantCluster(w.model, got.Variants[0].Name)
				})
				if onPool != got.Active || hasClusters != got.Active {
					t.Errorf("%s: on the pool %v, variant clusters %v; want %v", w.model, onPool, hasClusters, got.Active)
				}
			}
		})
	}
}

// The status carries the policy as in force, the rollout's weights when it
// replaces the config's.
func TestTrafficStatusContent(t *testing.T) {
	cfg, err := config.Parse([]byte(trafficYAML+"    shadow: {name: mirror, pool: shadow, percent: 5}\n"), "g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ws := []registry.Worker{pw("a", "127.0.0.1", "", true, model("simple", true, "1")), pw("b", "127.0.0.2", "canary", true, model("simple", true, "2"))}
	next, err := translateWorkers(nil, cfg, nil, ws, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	want := []server.TrafficPolicy{{Model: "simple", Source: "config", Active: true, Sticky: true,
		Variants: []server.TrafficVariant{{Name: "stable", Version: "1", Weight: 90}, {Name: "canary", Version: "2", Pool: "canary", Weight: 10}},
		Shadow:   &server.TrafficShadow{Name: "mirror", Pool: "shadow", Percent: 5}}}
	if !reflect.DeepEqual(next.traffic, want) {
		t.Errorf("traffic = %+v, want %+v", next.traffic, want)
	}
}

// A change to the workers of a model with a policy translates in full
// (its variants may start or stop applying) and equals a full
// translation; the others' stay incremental.
func TestRebuildWithTrafficEqualsAFullOne(t *testing.T) {
	cfg, err := config.Parse([]byte(trafficYAML), "g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stable := pw("a", "127.0.0.1", "", true, model("simple", true, "1"), model("mlp", true, "1"))
	canary := func(ready bool) registry.Worker {
		return pw("b", "127.0.0.2", "canary", ready, model("simple", true, "2"))
	}
	other := func(ready bool) registry.Worker { return pw("c", "127.0.0.3", "", ready, model("mlp", true, "1")) }
	steps := []struct {
		name        string
		workers     []registry.Worker
		incremental bool
		active      bool
	}{
		{"start", []registry.Worker{stable, canary(true), other(true)}, false, true},
		{"mlp's other worker not ready", []registry.Worker{stable, canary(true), other(false)}, true, true},
		{"the canary not ready: policy off", []registry.Worker{stable, canary(false), other(false)}, false, false},
		{"the canary ready: policy on", []registry.Worker{stable, canary(true), other(false)}, false, true},
		{"the canary moves pools: policy off", []registry.Worker{stable, pw("b", "127.0.0.2", "gpu", true, model("simple", true, "2")), other(false)}, false, false},
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
		if !reflect.DeepEqual(next.traffic, full.traffic) {
			t.Errorf("%s: traffic %+v, a full translation %+v", s.name, next.traffic, full.traffic)
		}
		if last != nil {
			shared := slices.Equal(next.res.Clusters, last.res.Clusters) && slices.Equal(next.res.Routes, last.res.Routes)
			if shared != s.incremental {
				t.Errorf("%s: routes and clusters shared with the last build: %v, want %v", s.name, shared, s.incremental)
			}
		}
		if len(next.traffic) != 1 || next.traffic[0].Active != s.active {
			t.Errorf("%s: traffic %+v, want active %v", s.name, next.traffic, s.active)
		}
		last = next
	}
	// New overrides translate in full, even with the same workers.
	ov := &overrides{m: map[string]*ir.Traffic{"simple": rollout(100, 0)}}
	next, err := translateWorkers(last, cfg, ov, steps[len(steps)-1].workers, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(next.traffic) != 1 || !next.traffic[0].Active || next.traffic[0].Source != server.TrafficSourceRollout {
		t.Errorf("after an override: %+v", next.traffic)
	}
}

// SetTrafficOverrides rebuilds a running builder; TrafficStatus and the
// gauge follow, and clearing the overrides brings the config's back.
func TestSetTrafficOverrides(t *testing.T) {
	src := &workers{changed: make(chan struct{}), table: []registry.Worker{
		pw("a", "127.0.0.1", "", true, model("simple", true, "1")), pw("b", "127.0.0.2", "canary", true, model("simple", true, "2")),
	}}
	pub := &publisher{got: make(chan []string, 100)}
	reg := prometheus.NewRegistry()
	b, err := New(t.Context(), Config{ConfigPath: writeConfig(t, trafficYAML), Workers: src, Publisher: pub, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor := func(what string, ok func([]server.TrafficPolicy) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok(b.TrafficStatus()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: traffic status %+v", what, b.TrafficStatus())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the config's policy", func(p []server.TrafficPolicy) bool {
		return len(p) == 1 && p[0].Source == server.TrafficSourceConfig && p[0].Active
	})
	gauge := func(model, reason string) float64 {
		return testutil.ToFloat64(b.report.gauge.WithLabelValues(model, reason))
	}

	// A rollout whose canary pins a version nobody serves: not applied.
	in := map[string]*ir.Traffic{"simple": {Variants: []ir.Variant{{Name: "stable", Version: "1", Weight: 95}, {Name: "canary", Version: "7", Weight: 5}}}}
	b.SetTrafficOverrides(in)
	in["simple"].Variants[1].Weight = 50 // the builder keeps a copy
	waitFor("an inactive rollout", func(p []server.TrafficPolicy) bool {
		return len(p) == 1 && p[0].Source == server.TrafficSourceRollout && p[0].InactiveReason == ir.InactiveNoEndpoints && p[0].Variants[1].Weight == 5
	})
	if g := gauge("simple", ir.InactiveNoEndpoints); g != 1 {
		t.Errorf("helix_xds_traffic_policy_inactive = %v, want 1", g)
	}
	if n := testutil.CollectAndCount(reg, "helix_xds_traffic_policy_inactive"); n != 1 {
		t.Errorf("%d inactive series, want 1", n)
	}

	b.SetTrafficOverrides(nil)
	waitFor("the config's policy back", func(p []server.TrafficPolicy) bool {
		return len(p) == 1 && p[0].Source == server.TrafficSourceConfig && p[0].Active
	})
	if n := testutil.CollectAndCount(reg, "helix_xds_traffic_policy_inactive"); n != 0 {
		t.Errorf("%d inactive series after the policy applied again, want 0", n)
	}
}

// The same overrides again keep the builder's value (and so the next
// rebuild incremental); other ones replace it.
func TestSetTrafficOverridesUnchanged(t *testing.T) {
	b := &Builder{}
	b.SetTrafficOverrides(map[string]*ir.Traffic{"simple": rollout(90, 10)})
	first := b.overrides
	b.SetTrafficOverrides(map[string]*ir.Traffic{"simple": rollout(90, 10), "mlp": nil})
	if b.overrides != first {
		t.Error("the same policies replaced the overrides")
	}
	b.SetTrafficOverrides(map[string]*ir.Traffic{"simple": rollout(80, 20)})
	if b.overrides == first || b.overrides.m["simple"].Variants[1].Weight != 20 {
		t.Errorf("new weights not taken: %+v", b.overrides.m)
	}
	b.SetTrafficOverrides(nil)
	if len(b.overrides.m) != 0 {
		t.Errorf("nil did not clear: %+v", b.overrides.m)
	}
}
