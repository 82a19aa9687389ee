package server

import (
	"fmt"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/xds/config"
	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/translate"
	"github.com/helixflow/helixflow/xds/translate/translatetest"
)

// fullGateway is the example config (TLS everywhere, rate limits, CORS)
// with two models on three workers.
func fullGateway(t *testing.T) *ir.Gateway {
	t.Helper()
	cfg, err := config.Load("../config/testdata/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway()
	for w := range 3 {
		ep := ir.Endpoint{Address: fmt.Sprintf("10.0.0.%d", w+1), Port: 8001, HTTPPort: 8000, Ready: true, Versions: []string{"1"}, Worker: fmt.Sprintf("w%d", w)}
		g.DefaultPool.Endpoints = append(g.DefaultPool.Endpoints, ep)
		for _, m := range []string{"mlp", "simple"} {
			if w == 2 && m == "mlp" {
				continue
			}
			g.Pools = appendEndpoint(g.Pools, m, ep)
		}
	}
	return g
}

func appendEndpoint(pools []ir.Pool, model string, ep ir.Endpoint) []ir.Pool {
	for i := range pools {
		if pools[i].Model == model {
			pools[i].Endpoints = append(pools[i].Endpoints, ep)
			return pools
		}
	}
	return append(pools, ir.Pool{Model: model, Endpoints: []ir.Endpoint{ep}})
}

// Equal content must give equal versions, translation after translation:
// a map iterated in Go's random order anywhere in the bytes would not.
func TestContentVersionStable(t *testing.T) {
	g := fullGateway(t)
	var first map[string]string
	for i := range 30 {
		r, err := translate.Translate(g)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for name, list := range map[string][]types.Resource{
			"listeners": r.Listeners, "routes": r.Routes, "clusters": r.Clusters, "endpoints": r.Endpoints,
			"secrets": r.Secrets,
		} {
			v, err := contentVersion(map[string][]types.Resource{name: list})
			if err != nil {
				t.Fatal(err)
			}
			got[name] = v
		}
		if i == 0 {
			first = got
			continue
		}
		for k, v := range got {
			if first[k] != v {
				t.Fatalf("translation %d: %s version %s, first %s", i, k, v, first[k])
			}
		}
	}
}

// Built with the vtprotobuf tag, the fast marshalling must write what
// decodes to the same resource (its field order differs from proto.Marshal's
// around oneofs, which is fine for a hash: equal content, equal bytes, as
// TestContentVersionStable checks).
func TestVTMarshalRoundTrips(t *testing.T) {
	r, err := translate.Translate(fullGateway(t))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for typ, list := range map[string][]types.Resource{
		resourcev3.ListenerType: r.Listeners, resourcev3.RouteType: r.Routes, resourcev3.ClusterType: r.Clusters,
		resourcev3.EndpointType: r.Endpoints, resourcev3.SecretType: r.Secrets,
	} {
		for _, res := range list {
			vt, ok := res.(vtMarshaler)
			if !ok {
				continue
			}
			n++
			b, err := vt.MarshalVTStrict()
			if err != nil {
				t.Fatal(err)
			}
			back := res.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(b, back); err != nil || !proto.Equal(back, res) {
				t.Errorf("%s %s: MarshalVTStrict does not round-trip (%v)", typeLabel(typ), cachev3.GetResourceName(res), err)
			}
		}
	}
	if n == 0 {
		t.Log("built without the vtprotobuf tag: nothing to check (make builds and tests with it)")
	}
}

// translatedSet is the full resource set for 1,000 models on 100 workers,
// each model on all of them.
func translatedSet(b *testing.B) map[string][]types.Resource {
	b.Helper()
	r, err := translate.Translate(translatetest.Gateway(1000, 100, 100))
	if err != nil {
		b.Fatal(err)
	}
	return map[string][]types.Resource{
		resourcev3.ListenerType: r.Listeners, resourcev3.RouteType: r.Routes, resourcev3.ClusterType: r.Clusters,
		resourcev3.EndpointType: r.Endpoints, resourcev3.SecretType: r.Secrets,
	}
}

// BenchmarkMarshalForVersions compares, in one run, the two ways content
// versions can marshal the resources (go test -tags vtprotobuf -run '^$'
// -bench MarshalForVersions ./xds/server; without the tag only reflection
// runs).
func BenchmarkMarshalForVersions(b *testing.B) {
	set := translatedSet(b)
	b.Run("reflection", func(b *testing.B) {
		opts := proto.MarshalOptions{Deterministic: true}
		for b.Loop() {
			for _, list := range set {
				for _, r := range list {
					if _, err := opts.Marshal(r); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	})
	if _, ok := set[resourcev3.EndpointType][0].(vtMarshaler); !ok {
		b.Log("built without the vtprotobuf tag: no vtprotobuf run")
		return
	}
	b.Run("vtprotobuf", func(b *testing.B) {
		for b.Loop() {
			for _, list := range set {
				for _, r := range list {
					if _, err := r.(vtMarshaler).MarshalVTStrict(); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	})
}

// BenchmarkContentVersion is a whole version computation, as Publish does
// it for every cache.
func BenchmarkContentVersion(b *testing.B) {
	set := translatedSet(b)
	for b.Loop() {
		if _, err := contentVersion(set); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublish publishes, in turn, two translations of 1,000 models
// on 100 workers (each model on all of them) that differ in one endpoint,
// as the registry's churn does: every cache's version is computed (go test -tags vtprotobuf -run '^$' -bench
// Publish ./xds/server).
func BenchmarkPublish(b *testing.B) {
	s, err := New(b.Context(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	var rs [2]*translate.Resources
	for i := range rs {
		g := translatetest.Gateway(1000, 100, 100)
		if i == 1 {
			g.Pools[0].Endpoints = g.Pools[0].Endpoints[1:]
		}
		if rs[i], err = translate.Translate(g); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	for b.Loop() {
		if err := s.Publish(b.Context(), rs[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
