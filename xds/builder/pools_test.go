package builder

import (
	"log/slog"
	"testing"

	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/registry"
)

func TestAddWorkers(t *testing.T) {
	ws := []registry.Worker{
		{ID: "a", Address: "127.0.0.1", GRPCPort: 8001, HTTPPort: 8000, Ready: true, Models: []registry.Model{
			{Name: "mlp", Versions: []string{"1"}, Ready: true},
			{Name: "simple", Versions: []string{"1", "2"}, Ready: false},
			{Name: "unloaded"},
		}},
		{ID: "b", Address: "127.0.0.2", GRPCPort: 8011, Ready: false, Models: []registry.Model{{Name: "simple", Versions: []string{"1"}, Ready: true}}},
		{ID: "dns", Address: "worker.example", GRPCPort: 8001, Ready: true, Models: []registry.Model{{Name: "simple", Versions: []string{"1"}, Ready: true}}},
		{ID: "remote", Address: "10.1.2.3", GRPCPort: 8001, Ready: true, Models: []registry.Model{{Name: "simple", Versions: []string{"1"}, Ready: true}}},
	}
	log := slog.New(slog.DiscardHandler)

	t.Run("plaintext keeps loopback workers only", func(t *testing.T) {
		g := &ir.Gateway{}
		addWorkers(g, ws, log)
		if len(g.Pools) != 2 || g.Pools[0].Model != "mlp" || g.Pools[1].Model != "simple" {
			t.Fatalf("pools = %+v", g.Pools)
		}
		simple := g.Pools[1].Endpoints
		if len(simple) != 2 || simple[0].Worker != "a" || simple[0].Ready || simple[1].Worker != "b" || simple[1].Ready {
			t.Fatalf("simple endpoints = %+v (a's model is not ready, b is not ready)", simple)
		}
		if mlp := g.Pools[0].Endpoints; len(mlp) != 1 || !mlp[0].Ready || mlp[0].HTTPPort != 8000 {
			t.Fatalf("mlp endpoints = %+v", mlp)
		}
		if d := g.DefaultPool.Endpoints; len(d) != 2 || !d[0].Ready || d[1].Ready || g.DefaultPool.Model != "" {
			t.Fatalf("default pool = %+v", g.DefaultPool)
		}
	})
	t.Run("TLS to workers admits remote IPs, never DNS names", func(t *testing.T) {
		g := &ir.Gateway{Workers: &ir.UpstreamTLS{CAFile: "ca", CertFile: "c", KeyFile: "k"}}
		addWorkers(g, ws, log)
		if d := g.DefaultPool.Endpoints; len(d) != 3 || d[2].Worker != "remote" {
			t.Fatalf("default pool = %+v", g.DefaultPool)
		}
	})
}
