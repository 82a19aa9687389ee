package builder

import (
	"cmp"
	"log/slog"
	"net"
	"slices"

	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/registry"
)

// addWorkers fills g's pools from the workers (registered or discovered): one pool per model that a
// worker has loaded (endpoint ready when the worker serves it), and the
// default pool with every worker once. A worker Envoy could not be sent to
// under g's rules (EDS takes IP addresses only; plaintext to workers only on
// loopback) is left out with a warning, so that one bad registration does
// not block every update.
func addWorkers(g *ir.Gateway, workers []registry.Worker, log *slog.Logger) {
	byModel := map[string][]ir.Endpoint{}
	var all []ir.Endpoint
	for _, w := range workers {
		ip := net.ParseIP(w.Address)
		switch {
		case ip == nil:
			log.Warn("worker left out: its address is not an IP address", "worker", w.ID, "address", w.Address)
			continue
		case g.Workers == nil && !ip.IsLoopback():
			log.Warn("worker left out: plaintext to workers is allowed on loopback only (configure workers_tls)", "worker", w.ID, "address", w.Address)
			continue
		}
		for _, m := range w.Models {
			// A registered model has versions; one from Kubernetes has
			// none (the Service names models only) and is ready.
			if len(m.Versions) == 0 && !m.Ready {
				continue
			}
			byModel[m.Name] = append(byModel[m.Name], ir.Endpoint{
				Address: w.Address, Port: w.GRPCPort, HTTPPort: w.HTTPPort,
				Ready: w.Serves(m.Name), Versions: slices.Clone(m.Versions), Worker: w.ID,
			})
		}
		all = append(all, ir.Endpoint{Address: w.Address, Port: w.GRPCPort, HTTPPort: w.HTTPPort, Ready: w.Ready, Worker: w.ID})
	}
	g.Pools = g.Pools[:0]
	for model, eps := range byModel {
		g.Pools = append(g.Pools, ir.Pool{Model: model, Endpoints: eps})
	}
	slices.SortFunc(g.Pools, func(a, b ir.Pool) int { return cmp.Compare(a.Model, b.Model) })
	g.DefaultPool = ir.Pool{Endpoints: all}
}
