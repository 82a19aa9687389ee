package builder

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/helixflow/helixflow/xds/server"
	"github.com/helixflow/helixflow/xds/translate/translatetest"
)

// Gateway size of issue 13's goal: publishing one worker's change into a
// gateway of 1,000 models x 100 workers.
const (
	benchModels  = 1000
	benchWorkers = 100
)

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
			src := &workers{table: translatetest.Workers(benchModels, benchWorkers, perModel)}
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
