package translatetest

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime is the process's user+system CPU time. On a shared 2-core
// machine wall time per op swings with the neighbours' load; CPU time per
// op (GC included) is the steadier figure, and equals wall time on an idle
// machine when the work is single-threaded.
func CPUTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPU reports the CPU time since start per op, as cpu-ms/op.
func ReportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(CPUTime(b)-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}
