package rolloutspec_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/rolloutspec"
)

// FuzzParseSLO: helixctl's --slo never panics, and what it accepts is a
// valid SLO that String writes back into the same SLO.
func FuzzParseSLO(f *testing.F) {
	for _, s := range []string{"error_ratio<0.01,p99_ms<200", "p99_ms<1e3", "error_ratio<1", "x<1", "error_ratio<<1", ",", "p99_ms<NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := rolloutspec.ParseSLO(in)
		if err != nil {
			return
		}
		if err := s.Check(); err != nil {
			t.Fatalf("ParseSLO(%q) accepted an invalid SLO: %v", in, err)
		}
		again, err := rolloutspec.ParseSLO(s.String())
		if err != nil || again.String() != s.String() {
			t.Fatalf("ParseSLO(%q).String() = %q does not read back: %v, %v", in, s.String(), again, err)
		}
	})
}

// FuzzParseSteps: --steps never panics, and what it accepts is increasing
// percentages ending at 100, written back the same.
func FuzzParseSteps(f *testing.F) {
	for _, s := range []string{"1,5,25,50,100", "100", "0,100", "5,5,100", "1,,100", "-1,100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		steps, err := rolloutspec.ParseSteps(in)
		if err != nil {
			return
		}
		if rolloutspec.CheckSteps(steps) != nil || steps[len(steps)-1] != 100 || !slices.IsSorted(steps) {
			t.Fatalf("ParseSteps(%q) = %v", in, steps)
		}
		parts := make([]string, len(steps))
		for i, s := range steps {
			parts[i] = strconv.Itoa(s)
		}
		if again, err := rolloutspec.ParseSteps(strings.Join(parts, ",")); err != nil || !slices.Equal(again, steps) {
			t.Fatalf("ParseSteps(%q) = %v does not read back: %v, %v", in, steps, again, err)
		}
	})
}
