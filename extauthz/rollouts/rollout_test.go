package rollouts_test

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/rollouts"
	"github.com/helixflow/helixflow/internal/rolloutspec"
)

func ptr[T any](v T) *T { return &v }

func slo(er, p99 float64) *rolloutspec.SLO {
	s := &rolloutspec.SLO{}
	if er != 0 {
		s.ErrorRatio = &er
	}
	if p99 != 0 {
		s.P99Ms = &p99
	}
	return s
}

// valid is a request Check accepts against served.
func valid() rollouts.Request {
	return rollouts.Request{Model: "simple", ToVersion: "2", Steps: []int{1, 5, 25, 50, 100}, Interval: "5m", SLO: slo(0.01, 200)}
}

var served = rollouts.Served{Found: true, Versions: []string{"1", "2", "3", "10"}}

func TestRequestCheckRefuses(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*rollouts.Request)
		served rollouts.Served
		want   string // in the error
	}{
		{"bad model name", func(r *rollouts.Request) { r.Model = "" }, served, "model: "},
		{"no canary", func(r *rollouts.Request) { r.ToVersion = "" }, served, "to_version or to_pool: one is required"},
		{"bad to_version", func(r *rollouts.Request) { r.ToVersion = "v2" }, served, `to_version: "v2"`},
		{"bad from_version", func(r *rollouts.Request) { r.FromVersion = "-1" }, served, `from_version: "-1"`},
		{"bad to_pool", func(r *rollouts.Request) { r.ToPool = "Canary" }, served, `to_pool: "Canary"`},
		{"bad from_pool", func(r *rollouts.Request) { r.FromPool = strings.Repeat("p", 64) }, served, "from_pool: "},
		{"no steps", func(r *rollouts.Request) { r.Steps = nil }, served, "steps: required"},
		{"step 0", func(r *rollouts.Request) { r.Steps = []int{0, 100} }, served, "steps[0]: 0 is outside 1..100"},
		{"step 101", func(r *rollouts.Request) { r.Steps = []int{50, 101} }, served, "steps[1]: 101 is outside 1..100"},
		{"steps not increasing", func(r *rollouts.Request) { r.Steps = []int{5, 5, 100} }, served, "steps[1]: 5 is not above steps[0] (5)"},
		{"steps decreasing", func(r *rollouts.Request) { r.Steps = []int{50, 10, 100} }, served, "steps[1]: 10 is not above steps[0] (50)"},
		{"last step not 100", func(r *rollouts.Request) { r.Steps = []int{1, 50} }, served, "the last step is 100"},
		{"no interval", func(r *rollouts.Request) { r.Interval = "" }, served, "interval: required"},
		{"interval not a duration", func(r *rollouts.Request) { r.Interval = "5 minutes" }, served, `interval: "5 minutes" is not a Go duration`},
		{"interval under 1s", func(r *rollouts.Request) { r.Interval = "999ms" }, served, "interval: 999ms is outside 1s..24h0m0s"},
		{"interval negative", func(r *rollouts.Request) { r.Interval = "-5m" }, served, "interval: -5m0s is outside"},
		{"interval over 24h", func(r *rollouts.Request) { r.Interval = "25h" }, served, "interval: 25h0m0s is outside"},
		{"no slo", func(r *rollouts.Request) { r.SLO = nil }, served, "slo: required"},
		{"empty slo", func(r *rollouts.Request) { r.SLO = &rolloutspec.SLO{} }, served, "slo: required"},
		{"error_ratio 0", func(r *rollouts.Request) { r.SLO = &rolloutspec.SLO{ErrorRatio: ptr(0.0)} }, served, "slo.error_ratio: 0 is outside (0, 1]"},
		{"error_ratio over 1", func(r *rollouts.Request) { r.SLO = slo(1.5, 0) }, served, "slo.error_ratio: 1.5 is outside (0, 1]"},
		{"error_ratio NaN", func(r *rollouts.Request) { r.SLO = &rolloutspec.SLO{ErrorRatio: ptr(math.NaN())} }, served, "slo.error_ratio: NaN"},
		{"p99 negative", func(r *rollouts.Request) { r.SLO = slo(0, -1) }, served, "slo.p99_ms: -1 is outside"},
		{"p99 over an hour", func(r *rollouts.Request) { r.SLO = slo(0, 3_600_001) }, served, "slo.p99_ms: 3.600001e+06 is outside"},
		{"model not served", nil, rollouts.Served{}, `model: "simple" is not served: no worker has it loaded`},
		{"to_version not served", func(r *rollouts.Request) { r.ToVersion = "4" }, served,
			`to_version: no ready worker serves version 4 of model "simple" (served: 1, 2, 3, 10)`},
		{"from_version not served", func(r *rollouts.Request) { r.FromVersion = "7" }, served, "from_version: no ready worker serves version 7"},
		{"nothing below to_version", func(r *rollouts.Request) { r.ToVersion = "1" }, served,
			`from_version: no served version of model "simple" is below 1 (served: 1, 2, 3, 10)`},
		{"served with no versions", nil, rollouts.Served{Found: true}, "to_version: no ready worker serves version 2 of model \"simple\" (served: none)"},
		{"same variant", func(r *rollouts.Request) { r.FromVersion = "2" }, served, "from and to are the same variant (version 2, pool any)"},
		{"same pool only", func(r *rollouts.Request) { r.ToVersion, r.ToPool = "", "default" }, served, "from and to are the same variant (version any, pool default)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := valid()
			if tt.edit != nil {
				tt.edit(&req)
			}
			ro, err := req.Check(tt.served, "alice")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check = %+v, %v; want an error with %q", ro, err, tt.want)
			}
		})
	}
}

func TestRequestCheckDefaults(t *testing.T) {
	tests := []struct {
		name                string
		edit                func(*rollouts.Request)
		fromVersion, toPool string
		fromPool            string
		sticky              bool
	}{
		// The highest served version below to_version, numerically (10 > 3).
		{"from the version below", nil, "1", "", "", true},
		{"from below 10 is 3", func(r *rollouts.Request) { r.ToVersion = "10" }, "3", "", "", true},
		{"from given", func(r *rollouts.Request) { r.ToVersion, r.FromVersion = "3", "1" }, "1", "", "", true},
		// A rollback to an older version is a rollout too.
		{"from above to", func(r *rollouts.Request) { r.ToVersion, r.FromVersion = "2", "3" }, "3", "", "", true},
		{"with a pool, the version still pinned", func(r *rollouts.Request) { r.ToPool, r.FromPool = "canary", "default" }, "1", "canary", "default", true},
		{"by pool alone: from the default pool", func(r *rollouts.Request) { r.ToVersion, r.ToPool = "", "canary" }, "", "canary", "default", true},
		{"by pool alone, from named", func(r *rollouts.Request) { r.ToVersion, r.ToPool, r.FromPool = "", "canary", "blue" }, "", "canary", "blue", true},
		{"not sticky", func(r *rollouts.Request) { r.Sticky = ptr(false) }, "1", "", "", false},
		{"one step", func(r *rollouts.Request) { r.Steps = []int{100} }, "1", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := valid()
			if tt.edit != nil {
				tt.edit(&req)
			}
			ro, err := req.Check(served, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if ro.FromVersion != tt.fromVersion || ro.FromPool != tt.fromPool || ro.ToPool != tt.toPool || ro.Sticky != tt.sticky {
				t.Errorf("from %q/%q to pool %q sticky %v; want %q/%q, %q, %v", ro.FromVersion, ro.FromPool, ro.ToPool, ro.Sticky,
					tt.fromVersion, tt.fromPool, tt.toPool, tt.sticky)
			}
			if ro.State != rolloutspec.StateRunning || ro.Step != -1 || ro.Weight != 0 || ro.CreatedBy != "alice" || ro.Interval != 5*time.Minute ||
				!slices.Equal(ro.Steps, req.Steps) {
				t.Errorf("rollout %+v", ro)
			}
		})
	}
}
