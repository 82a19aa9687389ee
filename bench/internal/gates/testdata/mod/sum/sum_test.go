package sum

import (
	"os"
	"testing"
)

// BenchmarkSum adds up 10,000 ints; GATES_SLOWER=1 makes it 4 times the
// work, GATES_ALLOC=1 allocates once an operation (TestGateCatchesRealSlowdown).
func BenchmarkSum(b *testing.B) {
	n := 10000
	if os.Getenv("GATES_SLOWER") != "" {
		n *= 4
	}
	s := make([]int, n)
	alloc := os.Getenv("GATES_ALLOC") != ""
	b.ReportAllocs()
	var keep []int
	for b.Loop() {
		Sum(s)
		if alloc {
			keep = make([]int, 1+len(keep)%2)
		}
	}
	_ = keep
}
