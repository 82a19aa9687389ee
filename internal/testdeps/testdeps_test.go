package testdeps

import "testing"

// recorder is a testing.TB that records how Missing ended the test.
type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Skip(...any)           { r.skipped = true }

func TestMissingFailsOnlyInCI(t *testing.T) {
	for _, tt := range []struct {
		ci                 string
		wantFail, wantSkip bool
	}{
		{"true", true, false},
		{"", false, true},
		{"false", false, true},
	} {
		t.Setenv("CI", tt.ci)
		r := &recorder{TB: t}
		Missing(r, "tool %s not found", "x")
		if r.failed != tt.wantFail || r.skipped != tt.wantSkip {
			t.Errorf("CI=%q: failed %v, skipped %v; want %v, %v", tt.ci, r.failed, r.skipped, tt.wantFail, tt.wantSkip)
		}
	}
}
