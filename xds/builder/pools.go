package builder

import (
	"cmp"
	"log/slog"
	"net"
	"slices"

	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/registry"
)

// addWorkers fills g's pools from the workers (registered or discovered):
// one pool per model that a worker has loaded (endpoint ready when the
// worker serves it), and the default pool with every worker once. A pool
// is a sequence pool (ir.Pool.Sequence) when any of its endpoints' workers
// says the model uses sequence batching: while workers disagree (a model
// rolled out with a new config) a sequence must still stay on one worker.
// A worker Envoy could not be sent to under g's rules (admitted) is left
// out with a warning, so that one bad registration does not block every
// update.
func addWorkers(g *ir.Gateway, workers []registry.Worker, log *slog.Logger) {
	byModel := map[string][]ir.Endpoint{}
	sequence := map[string]bool{}
	var all []ir.Endpoint
	for _, w := range workers {
		if !admitted(g, w, log) {
			continue
		}
		for _, m := range w.Models {
			if e, ok := modelEndpoint(w, m); ok {
				byModel[m.Name] = append(byModel[m.Name], e)
				if m.Sequence {
					sequence[m.Name] = true
				}
			}
		}
		all = append(all, defaultEndpoint(w))
	}
	g.Pools = g.Pools[:0]
	for model, eps := range byModel {
		g.Pools = append(g.Pools, ir.Pool{Model: model, Endpoints: eps, Sequence: sequence[model]})
	}
	slices.SortFunc(g.Pools, func(a, b ir.Pool) int { return cmp.Compare(a.Model, b.Model) })
	g.DefaultPool = ir.Pool{Endpoints: all}
}

// admitted reports whether Envoy could be sent to w under g's rules (EDS
// takes IP addresses only; plaintext to workers only on loopback), and
// logs why not.
func admitted(g *ir.Gateway, w registry.Worker, log *slog.Logger) bool {
	ip := net.ParseIP(w.Address)
	switch {
	case ip == nil:
		log.Warn("worker left out: its address is not an IP address", "worker", w.ID, "address", w.Address)
		return false
	case g.Workers == nil && !ip.IsLoopback():
		log.Warn("worker left out: plaintext to workers is allowed on loopback only (configure workers_tls)", "worker", w.ID, "address", w.Address)
		return false
	}
	return true
}

// modelEndpoint is w's endpoint in the pool of its model m, ready when w
// serves m; none for a registered model without versions that is not
// ready (a model from Kubernetes has no versions and is ready).
func modelEndpoint(w registry.Worker, m registry.Model) (ir.Endpoint, bool) {
	if len(m.Versions) == 0 && !m.Ready {
		return ir.Endpoint{}, false
	}
	return ir.Endpoint{
		Address: w.Address, Port: w.GRPCPort, HTTPPort: w.HTTPPort,
		Ready: w.Serves(m.Name), Versions: slices.Clone(m.Versions), Worker: w.ID, Pool: w.Pool,
	}, true
}

// sequenceModel reports whether w says its model is a sequence model.
func sequenceModel(w registry.Worker, model string) bool {
	i, ok := slices.BinarySearchFunc(w.Models, model, func(m registry.Model, name string) int { return cmp.Compare(m.Name, name) })
	return ok && w.Models[i].Sequence
}

// defaultEndpoint is w's endpoint in the default pool.
func defaultEndpoint(w registry.Worker) ir.Endpoint {
	return ir.Endpoint{Address: w.Address, Port: w.GRPCPort, HTTPPort: w.HTTPPort, Ready: w.Ready, Worker: w.ID, Pool: w.Pool}
}
