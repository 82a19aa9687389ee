package translate

import (
	"errors"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// trafficGateway is testdata/traffic-policy.in.yaml: "simple" with a
// sticky 90/10 policy and a 25% shadow, "resnet" without a policy.
func trafficGateway(t *testing.T) *ir.Gateway {
	t.Helper()
	return loadIR(t, "testdata/traffic-policy.in.yaml")
}

func routesByName(t *testing.T, r *Resources) ([]string, map[string]*routev3.Route) {
	t.Helper()
	rc := r.Routes[0].(*routev3.RouteConfiguration)
	var names []string
	by := map[string]*routev3.Route{}
	for _, rt := range rc.VirtualHosts[0].Routes {
		names = append(names, rt.Name)
		by[rt.Name] = rt
	}
	return names, by
}

func assignmentAddrs(r types.Resource) []string {
	var out []string
	for _, l := range r.(*endpointv3.ClusterLoadAssignment).Endpoints {
		for _, e := range l.LbEndpoints {
			out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	return out
}

func resourceName(r types.Resource) string {
	switch m := r.(type) {
	case *clusterv3.Cluster:
		return m.Name
	case *endpointv3.ClusterLoadAssignment:
		return m.ClusterName
	}
	return ""
}

// A model without a policy gets what it got before policies existed, byte
// for byte, next to one with a policy; the policy's model gets its own
// clusters too, unchanged, plus its variants'.
func TestTrafficLeavesOtherModelsAlone(t *testing.T) {
	g := trafficGateway(t)
	with, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	plain := *g
	plain.Pools = slices.Clone(g.Pools)
	for i := range plain.Pools {
		plain.Pools[i].Traffic = nil
	}
	without, err := Translate(&plain)
	if err != nil {
		t.Fatal(err)
	}
	// Every cluster and assignment of the translation without the policy
	// is in the one with it, equal, in the same order.
	for _, kind := range []struct {
		name      string
		with, not []types.Resource
	}{{"clusters", with.Clusters, without.Clusters}, {"endpoints", with.Endpoints, without.Endpoints}} {
		byName := map[string]types.Resource{}
		var order []string
		for _, r := range kind.with {
			byName[resourceName(r)] = r
			order = append(order, resourceName(r))
		}
		var kept []string
		for _, r := range kind.not {
			n := resourceName(r)
			if !proto.Equal(byName[n], r) {
				t.Errorf("%s %q differs with a policy on simple", kind.name, n)
			}
			kept = append(kept, n)
		}
		var added []string
		for _, n := range order {
			if !slices.Contains(kept, n) {
				added = append(added, n)
			}
		}
		wantAdded := []string{
			GRPCVariantCluster("simple", "stable"), HTTPVariantCluster("simple", "stable"),
			GRPCVariantCluster("simple", "canary"), HTTPVariantCluster("simple", "canary"),
			GRPCVariantCluster("simple", "mirror"), HTTPVariantCluster("simple", "mirror"),
		}
		if !slices.Equal(added, wantAdded) {
			t.Errorf("%s added by the policy: %q, want %q", kind.name, added, wantAdded)
		}
	}
	// resnet's routes are the same messages.
	_, a := routesByName(t, with)
	names, b := routesByName(t, without)
	for _, n := range names {
		if strings.Contains(n, "/simple") {
			continue
		}
		if !proto.Equal(a[n], b[n]) {
			t.Errorf("route %q differs with a policy on simple", n)
		}
	}
	if !proto.Equal(with.Listeners[0], without.Listeners[0]) {
		t.Error("the listener changed with a policy")
	}
}

// Each variant's assignment holds the model's ready endpoints that serve
// its version in its pool ("" is any pool; an endpoint without a pool is
// in wire.DefaultPool), its EDS service name its own cluster's.
func TestTrafficVariantEndpoints(t *testing.T) {
	g := trafficGateway(t)
	// w4: version 2 in the canary pool but not ready; w5: version 2 in no
	// pool (the default one): neither is the canary's.
	g.Pools[0].Endpoints = append(g.Pools[0].Endpoints,
		ir.Endpoint{Address: "127.0.0.4", Port: 8001, HTTPPort: 8000, Versions: []string{"2"}, Pool: "canary", Worker: "w4"},
		ir.Endpoint{Address: "127.0.0.5", Port: 8001, HTTPPort: 8000, Ready: true, Versions: []string{"2"}, Pool: wire.DefaultPool, Worker: "w5"},
		ir.Endpoint{Address: "127.0.0.6", Port: 8001, Ready: true, Versions: []string{"02"}, Pool: "canary", Worker: "w6"},
	)
	r, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, e := range r.Endpoints {
		got[resourceName(e)] = assignmentAddrs(e)
	}
	for _, tc := range []struct {
		cluster string
		want    []string
	}{
		{GRPCVariantCluster("simple", "stable"), []string{"127.0.0.1", "127.0.0.2"}},
		{GRPCVariantCluster("simple", "canary"), []string{"127.0.0.2", "127.0.0.6"}},
		{HTTPVariantCluster("simple", "canary"), []string{"127.0.0.2"}}, // w6 serves no REST
		{GRPCVariantCluster("simple", "mirror"), []string{"127.0.0.3"}},
		{GRPCCluster("simple"), []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.5", "127.0.0.6"}},
	} {
		if !slices.Equal(got[tc.cluster], tc.want) {
			t.Errorf("%s: %q, want %q", tc.cluster, got[tc.cluster], tc.want)
		}
	}
	for _, c := range r.Clusters {
		c := c.(*clusterv3.Cluster)
		if strings.HasSuffix(c.Name, "/canary") && c.EdsClusterConfig.GetServiceName() != c.Name {
			t.Errorf("%s reads EDS %q, want its own", c.Name, c.EdsClusterConfig.GetServiceName())
		}
		if strings.HasSuffix(c.Name, "/canary") && c.AltStatName != ClusterStatName(c.Name) {
			t.Errorf("%s stats as %q, want %q", c.Name, c.AltStatName, ClusterStatName(c.Name))
		}
	}
}

// The routes of a model with a policy, per kind of route, in the design's
// order: overrides, named versions, other versions, the split; the split
// is weighted over the variants with weight > 0 (by x-helix-assignment
// when sticky), a shadow is mirrored on the unary routes' overrides and
// split only.
func TestTrafficRoutes(t *testing.T) {
	for _, sticky := range []bool{true, false} {
		g := trafficGateway(t)
		tr := *g.Pools[0].Traffic
		tr.Sticky = sticky
		// A third variant at weight 0 (a rolled-back canary): clusters and
		// an override, nothing of the split.
		tr.Variants = []ir.Variant{tr.Variants[0], tr.Variants[1], {Name: "old", Version: "1", Pool: "canary", Weight: 0}}
		g.Pools[0].Traffic = &tr
		r, err := Translate(g)
		if err != nil {
			t.Fatal(err)
		}
		names, by := routesByName(t, r)
		for _, base := range []string{"grpc-stream/simple", "grpc-model/simple", "ws-model/simple", "sse-model/simple", "rest-model/simple"} {
			var got []string
			for _, n := range names {
				if n == base || strings.HasPrefix(n, base+"/") {
					got = append(got, strings.TrimPrefix(n, base))
				}
			}
			want := []string{"/variant/stable", "/variant/canary", "/variant/old", "/unknown-variant", "/version/1", "/version/2", "/versions", "/split"}
			if !slices.Equal(got, want) {
				t.Errorf("%s routes %q, want %q", base, got, want)
			}
			rest := !strings.HasPrefix(base, "grpc")
			cluster := GRPCVariantCluster
			if rest {
				cluster = HTTPVariantCluster
			}
			unary := base == "grpc-model/simple" || base == "rest-model/simple"

			split := by[base+"/split"].GetRoute()
			wc := split.GetWeightedClusters()
			if len(wc.GetClusters()) != 2 || wc.Clusters[0].Name != cluster("simple", "stable") || wc.Clusters[0].Weight.GetValue() != 90 ||
				wc.Clusters[1].Name != cluster("simple", "canary") || wc.Clusters[1].Weight.GetValue() != 10 {
				t.Errorf("%s/split: %v", base, wc)
			}
			if got := wc.GetHeaderName(); (got == wire.HeaderAssignment) != sticky || (!sticky && got != "") {
				t.Errorf("%s/split sticky %v: header_name %q", base, sticky, got)
			}
			if h := wc.GetClusters()[1].GetRequestHeadersToAdd(); len(h) != 1 || h[0].Header.Key != wire.HeaderModelVersion || h[0].Header.Value != "2" {
				t.Errorf("%s/split canary adds %v", base, h)
			}
			mirrored := func(n string) bool { return len(by[n].GetRoute().GetRequestMirrorPolicies()) > 0 }
			if mirrored(base+"/split") != unary || mirrored(base+"/variant/canary") != unary || mirrored(base+"/version/2") || mirrored(base+"/versions") {
				t.Errorf("%s: mirrored split %v, override %v, version %v, versions %v; want %v, %v, false, false", base,
					mirrored(base+"/split"), mirrored(base+"/variant/canary"), mirrored(base+"/version/2"), mirrored(base+"/versions"), unary, unary)
			}
			if unary {
				m := split.GetRequestMirrorPolicies()[0]
				if m.Cluster != cluster("simple", "mirror") || m.GetRuntimeFraction().GetDefaultValue().GetNumerator() != 250000 {
					t.Errorf("%s/split mirror %v", base, m)
				}
				var muts []string
				for _, mu := range m.GetRequestHeadersMutations() {
					muts = append(muts, mu.GetAppend().GetHeader().GetKey()+"="+mu.GetAppend().GetHeader().GetValue())
				}
				if want := []string{wire.HeaderShadow + "=1", wire.HeaderModelVersion + "=3"}; !slices.Equal(muts, want) {
					t.Errorf("%s/split mirror sets %q, want %q", base, muts, want)
				}
			}
			// Any other x-helix-variant: 400 / INVALID_ARGUMENT naming
			// the variants, never the split.
			unknown := by[base+"/unknown-variant"]
			hs := unknown.GetMatch().GetHeaders()
			if last := hs[len(hs)-1]; last.Name != wire.HeaderVariant || !last.GetPresentMatch() {
				t.Errorf("%s/unknown-variant matches %v", base, hs)
			}
			dr := unknown.GetDirectResponse()
			body := dr.GetBody().GetInlineString()
			if dr.GetStatus() != 400 || !strings.Contains(body, "unknown variant for model") || !strings.Contains(body, "simple") || !strings.Contains(body, "(its variants: stable, canary, old)") {
				t.Errorf("%s/unknown-variant answers %d %s", base, dr.GetStatus(), body)
			}
			var respHeaders []string
			for _, h := range unknown.GetResponseHeadersToAdd() {
				respHeaders = append(respHeaders, h.Header.Key+"="+h.Header.Value)
			}
			wantHeaders := []string{"grpc-status=3"}
			if rest {
				wantHeaders = []string{"content-type=application/json", "cache-control=no-store"}
				if !strings.HasPrefix(body, `{"error":"unknown_variant","error_description":"helix-variant: `) {
					t.Errorf("%s/unknown-variant body %s", base, body)
				}
			}
			if !slices.Equal(respHeaders, wantHeaders) {
				t.Errorf("%s/unknown-variant adds %q, want %q", base, respHeaders, wantHeaders)
			}
			if c := by[base+"/variant/old"].GetRoute().GetCluster(); c != cluster("simple", "old") {
				t.Errorf("%s/variant/old -> %q", base, c)
			}
			if h := by[base+"/variant/old"].GetRequestHeadersToAdd(); len(h) != 1 || h[0].Header.Value != "1" {
				t.Errorf("%s/variant/old adds %v", base, h)
			}
			// Version 1 is stable's (the first with it), not old's.
			if c := by[base+"/version/1"].GetRoute().GetCluster(); c != cluster("simple", "stable") {
				t.Errorf("%s/version/1 -> %q", base, c)
			}
			if h := by[base+"/version/1"].GetRequestHeadersToAdd(); len(h) != 0 {
				t.Errorf("%s/version/1 adds %v: the request names its version", base, h)
			}
			own := GRPCCluster("simple")
			if rest {
				own = HTTPCluster("simple")
			}
			if c := by[base+"/versions"].GetRoute().GetCluster(); c != own {
				t.Errorf("%s/versions -> %q, want the model's own %q", base, c, own)
			}
			// Retries and timeouts as the model's route.
			if !proto.Equal(split.GetRetryPolicy(), by[base+"/versions"].GetRoute().GetRetryPolicy()) ||
				!proto.Equal(split.GetTimeout(), by[base+"/versions"].GetRoute().GetTimeout()) {
				t.Errorf("%s/split: retries or timeout differ from the model's route", base)
			}
		}
	}
}

// A policy whose translation would collide or route nowhere is refused
// with an error, whichever check sees it first (ir.Validate refuses it
// too).
func TestTrafficRefused(t *testing.T) {
	for name, mod := range map[string]func(*ir.Traffic){
		"shadow named as a variant": func(tr *ir.Traffic) { tr.Shadow.Variant.Name = "canary" },
		"no weight":                 func(tr *ir.Traffic) { tr.Variants[0].Weight, tr.Variants[1].Weight = 0, 0 },
	} {
		t.Run(name, func(t *testing.T) {
			g := trafficGateway(t)
			tr := *g.Pools[0].Traffic
			tr.Variants = slices.Clone(tr.Variants)
			sh := *tr.Shadow
			tr.Shadow = &sh
			mod(&tr)
			g.Pools[0].Traffic = &tr
			if _, err := Translate(g); err == nil {
				t.Fatal("translated")
			}
			p := g.Pools[0]
			if err := checkTraffic(&p); !errors.Is(err, ErrInvalidResource) || !strings.Contains(err.Error(), `"simple"`) {
				t.Errorf("checkTraffic: %v, want ErrInvalidResource naming the model", err)
			}
		})
	}
}

// UpdateEndpoints rebuilds a policy's variants' assignments with their
// pool's and gives what Translate gives.
func TestTrafficUpdateEndpoints(t *testing.T) {
	g := trafficGateway(t)
	prev, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	// w2 (in stable and canary) unloads version 1: it leaves stable.
	g2 := *g
	g2.Pools = slices.Clone(g.Pools)
	simple := slices.IndexFunc(g2.Pools, func(p ir.Pool) bool { return p.Model == "simple" })
	g2.Pools[simple].Endpoints = slices.Clone(g2.Pools[simple].Endpoints)
	for i, e := range g2.Pools[simple].Endpoints {
		if e.Worker == "w2" {
			g2.Pools[simple].Endpoints[i].Versions = []string{"2"}
		}
	}
	got, err := UpdateEndpoints(prev, &g2, []string{"simple"}, false)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Translate(&g2)
	if err != nil {
		t.Fatal(err)
	}
	sameResources(t, "endpoints", got.Endpoints, want.Endpoints)
	for _, e := range got.Endpoints {
		if resourceName(e) == GRPCVariantCluster("simple", "stable") && !slices.Equal(assignmentAddrs(e), []string{"127.0.0.1"}) {
			t.Errorf("stable after the change: %q", assignmentAddrs(e))
		}
	}
	// A pool after the policy's: its assignments are found past the
	// variants'.
	g4 := *g
	g4.Pools = append(slices.Clone(g.Pools), ir.Pool{Model: "zeta", Endpoints: slices.Clone(g.Pools[0].Endpoints)})
	prev4, err := Translate(&g4)
	if err != nil {
		t.Fatal(err)
	}
	g5, models := withWorkerReady(&g4, "w1", false)
	got5, err := UpdateEndpoints(prev4, g5, models, true)
	if err != nil {
		t.Fatal(err)
	}
	want5, err := Translate(g5)
	if err != nil {
		t.Fatal(err)
	}
	sameResources(t, "endpoints", got5.Endpoints, want5.Endpoints)

	// A policy gone since prev: the layout tells.
	g3 := g2
	g3.Pools = slices.Clone(g2.Pools)
	g3.Pools[simple].Traffic = nil
	if _, err := UpdateEndpoints(prev, &g3, []string{"simple"}, false); err == nil {
		t.Error("a policy removed since the last translation: no error")
	}
}

// A variant cluster's stat name is never a model's: model "simple_canary"
// would otherwise share stats (and a rollout's SLO queries) with variant
// "canary" of model "simple". Each cluster's alt_stat_name is
// ClusterStatName, which the rollout controller's queries match.
func TestClusterStatName(t *testing.T) {
	for _, tc := range []struct{ cluster, want string }{
		{GRPCCluster("simple"), "helix-model-grpc_simple"},
		{GRPCCluster("simple_canary"), "helix-model-grpc_simple_canary"},
		{GRPCVariantCluster("simple", "canary"), "helix-model-grpc_simple/canary"},
		{HTTPVariantCluster("simple", "canary"), "helix-model-http_simple/canary"},
		{HTTPCluster("simple_canary"), "helix-model-http_simple_canary"},
		{GRPCVariantCluster("mlp.v2:x", "stable-1"), "helix-model-grpc_mlp_v2_x/stable-1"},
		{GRPCSequenceCluster("a.b"), "helix-model-grpc-seq_a_b"},
		{ClusterAuthZ, "helix-authz"},
	} {
		if got := ClusterStatName(tc.cluster); got != tc.want {
			t.Errorf("ClusterStatName(%q) = %q, want %q", tc.cluster, got, tc.want)
		}
	}
	seen := map[string]string{}
	for _, c := range []string{GRPCCluster("simple_canary"), HTTPCluster("simple_canary"), GRPCVariantCluster("simple", "canary"),
		HTTPVariantCluster("simple", "canary"), GRPCCluster("simple"), GRPCVariantCluster("simple_canary", "x")} {
		if other, ok := seen[ClusterStatName(c)]; ok {
			t.Errorf("%s and %s both stat as %q", c, other, ClusterStatName(c))
		}
		seen[ClusterStatName(c)] = c
	}
}
