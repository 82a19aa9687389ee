// Package translatetest builds large gateway models, the same for the
// translator's benchmarks, the ADS server's and make bench-gateway.
package translatetest

import (
	"fmt"

	"github.com/helixflow/helixflow/xds/ir"
)

// Gateway is models models (model-0000, ...) on workers workers, each model
// loaded on perModel of them, every worker with gRPC and REST, mTLS to the
// workers, authz and plans; ApplyDefaults done.
func Gateway(models, workers, perModel int) *ir.Gateway {
	tls := &ir.UpstreamTLS{CAFile: "/etc/helix/ca.crt", CertFile: "/etc/helix/tls.crt", KeyFile: "/etc/helix/tls.key", ServerName: "helix-worker"}
	g := &ir.Gateway{
		Listener:  ir.Listener{Address: "0.0.0.0", Port: 443, TLS: &ir.ListenerTLS{CertFile: "/etc/helix/server.crt", KeyFile: "/etc/helix/server.key"}},
		AuthZ:     ir.AuthZ{Upstream: ir.Upstream{Address: "10.0.0.2", Port: 9001, TLS: tls}},
		RateLimit: &ir.RateLimit{Plans: []ir.Plan{{Name: "free", RequestsPerSecond: 5}}, DefaultPlan: "free"},
		Workers:   tls,
		Retry:     ir.Retry{NumRetries: 2},
	}
	eps := make([]ir.Endpoint, workers)
	for w := range eps {
		eps[w] = ir.Endpoint{
			Address: fmt.Sprintf("10.1.%d.%d", w/250, w%250+1), Port: 8001, HTTPPort: 8000,
			Ready: true, Versions: []string{"1"}, Worker: fmt.Sprintf("worker-%03d", w),
		}
	}
	g.DefaultPool.Endpoints = eps
	for m := range models {
		p := ir.Pool{Model: fmt.Sprintf("model-%04d", m)}
		for i := range perModel {
			p.Endpoints = append(p.Endpoints, eps[(m+i)%workers])
		}
		g.Pools = append(g.Pools, p)
	}
	g.ApplyDefaults()
	return g
}
