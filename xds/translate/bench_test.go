package translate

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/helixflow/helixflow/xds/translate/translatetest"
)

// BenchmarkTranslate1000Models100Workers measures a full snapshot build
// (validate, sort, build, ValidateAll every resource). The goal
// is 100 ms on the 2-core machine.
func BenchmarkTranslate1000Models100Workers(b *testing.B) {
	for _, perModel := range []int{10, 100} {
		b.Run(fmt.Sprintf("workers-per-model=%d", perModel), func(b *testing.B) {
			g := translatetest.Gateway(1000, 100, perModel)
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
	g := translatetest.Gateway(1000, 100, 100)
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
