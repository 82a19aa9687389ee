package translatetest

import (
	"fmt"

	"github.com/helixflow/helixflow/xds/registry"
)

// Workers is Gateway's shape as a worker source's table (what the
// registry's Snapshot gives the builder): models models on workers
// workers, model m on workers (m+i) mod workers for i < perModel, every
// worker ready with gRPC and REST, on loopback (plaintext to workers
// passes there).
func Workers(models, workers, perModel int) []registry.Worker {
	ws := make([]registry.Worker, workers)
	for w := range ws {
		ws[w] = registry.Worker{
			ID: fmt.Sprintf("worker-%03d", w), Address: fmt.Sprintf("127.1.%d.%d", w/250, w%250+1),
			GRPCPort: 8001, HTTPPort: 8000, Ready: true,
		}
	}
	for m := range models {
		for i := range perModel {
			w := &ws[(m+i)%workers]
			w.Models = append(w.Models, registry.Model{Name: fmt.Sprintf("model-%04d", m), Versions: []string{"1"}, Ready: true})
		}
	}
	return ws
}
