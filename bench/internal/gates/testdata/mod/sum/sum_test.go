package sum

import "testing"

func BenchmarkSum(b *testing.B) {
	s := make([]int, 100)
	b.ReportAllocs()
	for b.Loop() {
		Sum(s)
	}
}
