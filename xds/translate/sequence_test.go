package translate

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"

	"github.com/helixflow/helixflow/internal/wire"
)

// The invariants routes.go's order comment promises for sequences and
// generate_stream, with retries on: for a sequence model (bert.base in the
// input) each sequence route comes before its model's plain route, hashes
// x-helix-sequence to the model's Maglev twin and never retries, and its
// REST route sends authz.rest_body_bytes of the body; any other model has
// no sequence routes, no twins and sends no body; the plain routes keep
// their retries; generate_stream comes before the REST route and has no
// request timeout.
func TestSequenceAndStreamRoutes(t *testing.T) {
	g := loadIR(t, "testdata/three-models-shared-workers.in.yaml")
	g.Retry.NumRetries = 2
	r, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	byName := map[string]*routev3.Route{}
	for i, rt := range r.Routes[0].(*routev3.RouteConfiguration).VirtualHosts[0].Routes {
		pos[rt.Name], byName[rt.Name] = i, rt
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range r.Clusters {
		c := c.(*clusterv3.Cluster)
		clusters[c.Name] = c
	}
	sequencePools := 0
	for _, p := range g.Pools {
		m := p.Model
		if !p.Sequence {
			for _, name := range []string{"grpc-sequence/" + m, "rest-sequence/" + m} {
				if byName[name] != nil {
					t.Errorf("%s: a route for a model without sequence batching", name)
				}
			}
			for _, name := range []string{GRPCSequenceCluster(m), HTTPSequenceCluster(m)} {
				if clusters[name] != nil {
					t.Errorf("%s: a twin for a model without sequence batching", name)
				}
			}
			var per extauthzv3.ExtAuthzPerRoute
			if err := byName["rest-model/"+m].TypedPerFilterConfig[filterExtAuthz].UnmarshalTo(&per); err != nil {
				t.Fatal(err)
			}
			if !per.GetCheckSettings().GetDisableRequestBodyBuffering() || per.GetCheckSettings().GetWithRequestBody() != nil {
				t.Errorf("rest-model/%s sends a body to authz: %v", m, per.GetCheckSettings())
			}
			if byName["grpc-model/"+m].GetRoute().GetRetryPolicy() == nil || byName["rest-model/"+m].GetRoute().GetRetryPolicy() == nil {
				t.Errorf("%s's routes lost their retries", m)
			}
			continue
		}
		sequencePools++
		for _, tc := range []struct{ seq, plain, cluster, of string }{
			{"grpc-sequence/" + m, "grpc-model/" + m, GRPCSequenceCluster(m), GRPCCluster(m)},
			{"rest-sequence/" + m, "rest-model/" + m, HTTPSequenceCluster(m), HTTPCluster(m)},
		} {
			seq, plain := byName[tc.seq], byName[tc.plain]
			if seq == nil || plain == nil || pos[tc.seq] > pos[tc.plain] {
				t.Fatalf("%s must come before %s: %v", tc.seq, tc.plain, pos)
			}
			a := seq.GetRoute()
			if a.GetCluster() != tc.cluster || a.GetRetryPolicy() != nil ||
				len(a.GetHashPolicy()) != 1 || a.GetHashPolicy()[0].GetHeader().GetHeaderName() != wire.HeaderSequence {
				t.Errorf("%s: %v", tc.seq, a)
			}
			if plain.GetRoute().GetRetryPolicy() == nil {
				t.Errorf("%s lost its retries", tc.plain)
			}
			c := clusters[tc.cluster]
			if c == nil || c.LbPolicy != clusterv3.Cluster_MAGLEV || c.GetEdsClusterConfig().GetServiceName() != tc.of || len(c.HealthChecks) != 0 {
				t.Errorf("cluster %s: %v", tc.cluster, c)
			}
		}
		var per extauthzv3.ExtAuthzPerRoute
		if err := byName["rest-model/"+m].TypedPerFilterConfig[filterExtAuthz].UnmarshalTo(&per); err != nil {
			t.Fatal(err)
		}
		if b := per.GetCheckSettings().GetWithRequestBody(); b.GetMaxRequestBytes() != g.AuthZ.RESTBodyBytes || !b.GetAllowPartialMessage() || !b.GetPackAsBytes() {
			t.Errorf("rest-model/%s body settings %v", m, b)
		}
		sse := byName["sse-model/"+m]
		if sse == nil || pos["sse-model/"+m] > pos["rest-model/"+m] || sse.GetRoute().GetTimeout().AsDuration() != g.Timeouts.Stream ||
			sse.GetRoute().GetRetryPolicy() != nil || sse.GetRoute().GetCluster() != HTTPCluster(m) {
			t.Errorf("sse-model/%s: %v", m, sse)
		}
	}
	if sequencePools != 1 {
		t.Fatalf("%d sequence pools in the input, want 1 (bert.base)", sequencePools)
	}
	if pos["sse-default"] > pos["rest-default"] {
		t.Error("sse-default after rest-default")
	}
}
