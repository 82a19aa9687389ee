package translate

import (
	"fmt"
	"testing"

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
			start := translatetest.CPUTime(b)
			for b.Loop() {
				if _, err := Translate(g); err != nil {
					b.Fatal(err)
				}
			}
			translatetest.ReportCPU(b, start)
		})
	}
}

// BenchmarkTranslateEndpoints1000Models100Workers is the EDS-only rebuild.
func BenchmarkTranslateEndpoints1000Models100Workers(b *testing.B) {
	g := translatetest.Gateway(1000, 100, 100)
	b.ReportAllocs()
	start := translatetest.CPUTime(b)
	for b.Loop() {
		if _, err := TranslateEndpoints(g); err != nil {
			b.Fatal(err)
		}
	}
	translatetest.ReportCPU(b, start)
}
