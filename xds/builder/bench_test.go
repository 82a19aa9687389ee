package builder

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/server"
	"github.com/helixflow/helixflow/xds/translate/translatetest"
)

// Gateway size of issue 13's goal: publishing one worker's change into a
// gateway of 1,000 models x 100 workers.
const (
	benchModels  = 1000
	benchWorkers = 100
)

// benchTable is translatetest.Gateway's shape as a source's table: model
// m on workers (m+i) mod workers for i < perModel, every worker ready with
// gRPC and REST, on loopback (plaintext to workers).
func benchTable(models, workers, perModel int) []registry.Worker {
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

// newBenchBuilder is a builder over table publishing into a real ADS
// server (no Envoy connected), after its first build.
func newBenchBuilder(b *testing.B, src *workers) *Builder {
	b.Helper()
	srv, err := server.New(b.Context(), server.Options{})
	if err != nil {
		b.Fatal(err)
	}
	bl, err := New(b.Context(), Config{ConfigPath: writeConfig(b, gatewayYAML), Workers: src, Publisher: srv})
	if err != nil {
		b.Fatal(err)
	}
	return bl
}

// BenchmarkPublishOneWorkerChange is one worker's change published into a
// gateway of 1,000 models x 100 workers: the source's table read, the
// gateway model, translation and Publish into xds/server. The worker
// turns not ready and ready again in turn: the endpoints of every pool it
// is in change, the set of models does not (issue 13's goal: 10 ms).
func BenchmarkPublishOneWorkerChange(b *testing.B) {
	for _, perModel := range []int{10, 100} {
		b.Run(fmt.Sprintf("workers-per-model=%d", perModel), func(b *testing.B) {
			src := &workers{table: benchTable(benchModels, benchWorkers, perModel)}
			bl := newBenchBuilder(b, src)
			ctx := context.Background()
			b.ReportAllocs()
			start := translatetest.CPUTime(b)
			i := 0
			for b.Loop() {
				// A new table, as the registry's Snapshot gives.
				t := slices.Clone(src.table)
				t[0].Ready = i%2 == 1
				src.table = t
				i++
				if err := bl.rebuild(ctx); err != nil {
					b.Fatal(err)
				}
			}
			translatetest.ReportCPU(b, start)
		})
	}
}
