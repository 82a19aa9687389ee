package translate

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/helixflow/helixflow/xds/ir"
)

// benchGateway is 1,000 models on 100 workers, each model loaded on
// perModel workers, every worker with gRPC and REST, mTLS on.
func benchGateway(models, workers, perModel int) *ir.Gateway {
	tls := &ir.UpstreamTLS{CAFile: "/etc/helix/ca.crt", CertFile: "/etc/helix/tls.crt", KeyFile: "/etc/helix/tls.key", ServerName: "helix-worker"}
	g := &ir.Gateway{
		Listener:  ir.Listener{Address: "0.0.0.0", Port: 443, TLS: &ir.ListenerTLS{CertFile: "/etc/helix/server.crt", KeyFile: "/etc/helix/server.key"}},
		AuthZ:     ir.AuthZ{Upstream: ir.Upstream{Address: "10.0.0.2", Port: 9001, TLS: tls}},
		RateLimit: &ir.RateLimit{Upstream: ir.Upstream{Address: "10.0.0.3", Port: 8081, TLS: tls}},
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

// BenchmarkTranslate1000Models100Workers measures a full snapshot build
// (validate, sort, build, ValidateAll every resource). The goal
// is 100 ms on the 2-core machine.
func BenchmarkTranslate1000Models100Workers(b *testing.B) {
	for _, perModel := range []int{10, 100} {
		b.Run(fmt.Sprintf("workers-per-model=%d", perModel), func(b *testing.B) {
			g := benchGateway(1000, 100, perModel)
			b.ReportAllocs()
			start := cpuTime(b)
			for b.Loop() {
				if _, err := Translate(g); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
	}
}

// BenchmarkTranslateEndpoints1000Models100Workers is the EDS-only rebuild.
func BenchmarkTranslateEndpoints1000Models100Workers(b *testing.B) {
	g := benchGateway(1000, 100, 100)
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		if _, err := TranslateEndpoints(g); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// cpuTime is the process's user+system CPU time. On a shared 2-core
// machine wall time per op swings with the neighbours' load; CPU time per
// op (GC included) is the steadier figure, and equals wall time on an idle
// machine when the work is single-threaded.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}
