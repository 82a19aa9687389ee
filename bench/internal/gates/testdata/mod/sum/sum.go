// Package sum is TestBuild's package: something to benchmark.
package sum

// Sum adds up s.
func Sum(s []int) int {
	t := 0
	for _, v := range s {
		t += v
	}
	return t
}
