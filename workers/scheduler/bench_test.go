package scheduler

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

// echoInstance answers every output with a copy of the first input's
// header: the cheapest instance possible, so the benchmark measures the
// scheduler.
type echoInstance struct{}

func (echoInstance) Execute(_ context.Context, in []tensor.Tensor, out []string) ([]tensor.Tensor, error) {
	res := make([]tensor.Tensor, len(out))
	for i, name := range out {
		res[i] = tensor.Tensor{Name: name, DataType: in[0].DataType, Shape: in[0].Shape, Data: in[0].Data}
	}
	return res, nil
}

func (echoInstance) Close() error { return nil }

// BenchmarkScheduler measures the per-request overhead of Do with a trivial
// instance, with 1 and 64 concurrent callers.
func BenchmarkScheduler(b *testing.B) {
	configs := []struct {
		name string
		cfg  Config
	}{
		{"direct", Config{MaxBatchSize: 8}},
		{"dynamic", Config{MaxBatchSize: 64, Dynamic: &DynamicBatching{}}},
	}
	for _, c := range configs {
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", c.name, callers), func(b *testing.B) {
				cfg := c.cfg
				cfg.Instances = []backend.Instance{echoInstance{}, echoInstance{}}
				s := start(b, cfg)
				req := rowsRequest(1, 0)
				ctx := context.Background()
				b.ReportAllocs()
				if callers == 1 {
					for b.Loop() {
						if _, err := s.Do(ctx, req); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				// RunParallel starts parallelism × GOMAXPROCS goroutines.
				b.SetParallelism((callers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					req := rowsRequest(1, 0) // Do writes req.Usage: one per caller
					for pb.Next() {
						if _, err := s.Do(ctx, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkQueueDelay reports, for lone requests, the median time they
// spend queued (queue-µs) against their max_queue_delay and the process's
// CPU time per request (cpu-µs/op), waiting included.
func BenchmarkQueueDelay(b *testing.B) {
	for _, delay := range []time.Duration{200 * time.Microsecond, 1500 * time.Microsecond} {
		b.Run(fmt.Sprint(delay), func(b *testing.B) {
			cpu0 := processCPU(b)
			median := loneRequests(b, delay, b.N)
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(median.Microseconds()), "queue-µs")
		})
	}
}
