package config

import (
	"errors"
	"os"
	"testing"

	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/translate"
)

// FuzzLoad feeds arbitrary bytes to the loader. It must never panic; an
// error must wrap ErrInvalidConfig; and a config it accepts must give a
// gateway model that validates and translates into Envoy resources.
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
		for m, p := range c.TrafficPolicies() {
			if err := ir.ValidateTraffic(p); err != nil {
				t.Fatalf("accepted traffic.%s is invalid: %v", m, err)
			}
		}
		g := c.Gateway()
		if err := g.ValidateStatic(); err != nil {
			t.Fatalf("accepted config gives an invalid model: %v", err)
		}
		g.DefaultPool = ir.Pool{Endpoints: []ir.Endpoint{{Address: "127.0.0.1", Port: 8001, HTTPPort: 8000, Ready: true}}}
		g.Pools = []ir.Pool{{Model: "m", Endpoints: g.DefaultPool.Endpoints}}
		if _, err := translate.Translate(g); err != nil {
			t.Fatalf("accepted config does not translate: %v", err)
		}
	})
}
