package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/translate"
)

// FuzzLoad feeds arbitrary bytes to the loader. It must never panic; an
// error must wrap ErrInvalidConfig; and a config it accepts must give a
// gateway model that validates and translates into Envoy resources, its
// traffic policies included.
func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile("testdata/gateway.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(base))
	f.Add([]byte(base + "plans:\n  free: {requests_per_second: 5}\nratelimit: {failure_mode: closed, default_plan: free}\n"))
	f.Add([]byte(base + "cors: {allow_origins: ['*'], max_age: 1h}\nretry: {on: [unavailable], num_retries: 0}\n"))
	f.Add([]byte(base + "tracing: {collector: 127.0.0.1:4317, sampling: 0.5, service_name: edge}\n"))
	f.Add([]byte(base + "tracing: {collector: otel:4317, ca_file: ca.crt, sampling: 1}\n"))
	f.Add([]byte(base + "traffic:\n  m:\n    sticky: false\n    variants: [{name: a, version: '1', weight: 90}, {name: b, pool: gpu, weight: 10}]\n    shadow: {name: s, version: '2', percent: 5}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("listener: !!binary aGVsbG8=\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "/etc/helix/gateway.yaml")
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error does not wrap ErrInvalidConfig: %v", err)
			}
			return
		}
		g := c.Gateway()
		if err := g.ValidateStatic(); err != nil {
			t.Fatalf("accepted config gives an invalid model: %v", err)
		}
		g.DefaultPool = ir.Pool{Endpoints: []ir.Endpoint{{Address: "127.0.0.1", Port: 8001, HTTPPort: 8000, Ready: true}}}
		g.Pools = []ir.Pool{{Model: "m", Endpoints: g.DefaultPool.Endpoints}}
		// Each accepted policy, on a pool with a worker for each of its
		// variants, translates too.
		for model, p := range c.TrafficPolicies() {
			if err := ir.ValidateTraffic(p); err != nil {
				t.Fatalf("accepted traffic.%s is invalid: %v", model, err)
			}
			pool := ir.Pool{Model: model, Endpoints: variantEndpoints(p), Traffic: p}
			if model == g.Pools[0].Model {
				g.Pools[0] = pool
				continue
			}
			g.Pools = append(g.Pools, pool)
		}
		if _, err := translate.Translate(g); err != nil {
			t.Fatalf("accepted config does not translate: %v", err)
		}
	})
}

// variantEndpoints is one ready loopback worker per variant of t (and its
// shadow), serving what the variant selects.
func variantEndpoints(t *ir.Traffic) []ir.Endpoint {
	vs := t.Variants
	if t.Shadow != nil {
		vs = append(slices.Clone(vs), t.Shadow.Variant)
	}
	eps := make([]ir.Endpoint, len(vs))
	for i, v := range vs {
		eps[i] = ir.Endpoint{Address: fmt.Sprintf("127.0.0.%d", i+2), Port: 8001, HTTPPort: 8000, Ready: true,
			Versions: []string{cmp.Or(v.Version, "1")}, Pool: v.Pool}
	}
	return eps
}
