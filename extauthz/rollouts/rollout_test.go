package rollouts_test

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/rollouts"
)

func ptr[T any](v T) *T { return &v }

func slo(er, p99 float64) *rollouts.SLO {
	s := &rollouts.SLO{}
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
		{"empty slo", func(r *rollouts.Request) { r.SLO = &rollouts.SLO{} }, served, "slo: required"},
		{"error_ratio 0", func(r *rollouts.Request) { r.SLO = &rollouts.SLO{ErrorRatio: ptr(0.0)} }, served, "slo.error_ratio: 0 is outside (0, 1]"},
		{"error_ratio over 1", func(r *rollouts.Request) { r.SLO = slo(1.5, 0) }, served, "slo.error_ratio: 1.5 is outside (0, 1]"},
		{"error_ratio NaN", func(r *rollouts.Request) { r.SLO = &rollouts.SLO{ErrorRatio: ptr(math.NaN())} }, served, "slo.error_ratio: NaN"},
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
			if ro.State != rollouts.StateRunning || ro.Step != -1 || ro.Weight != 0 || ro.CreatedBy != "alice" || ro.Interval != 5*time.Minute ||
				!slices.Equal(ro.Steps, req.Steps) {
				t.Errorf("rollout %+v", ro)
			}
		})
	}
}

func TestParseSLO(t *testing.T) {
	tests := []struct {
		in       string
		er, p99  float64 // 0: absent
		wantErr  string
		asString string
	}{
		{in: "error_ratio<0.01,p99_ms<200", er: 0.01, p99: 200, asString: "error_ratio<0.01,p99_ms<200"},
		{in: " p99_ms < 250.5 , error_ratio<0.05 ", er: 0.05, p99: 250.5, asString: "error_ratio<0.05,p99_ms<250.5"},
		{in: "error_ratio<1", er: 1, asString: "error_ratio<1"},
		{in: "p99_ms<200", p99: 200, asString: "p99_ms<200"},
		{in: "", wantErr: "empty"},
		{in: "error_ratio<=0.01", wantErr: `"error_ratio<=0.01": want name<number`},
		{in: "error_ratio>0.01", wantErr: "want name<number"},
		{in: "error_ratio=0.01", wantErr: "want name<number"},
		{in: "error_ratio<abc", wantErr: `"abc" is not a number`},
		{in: "error_ratio<Inf", wantErr: "is not a number"},
		{in: "latency<200", wantErr: `unknown SLO "latency" (error_ratio or p99_ms)`},
		{in: "p99_ms<200,p99_ms<100", wantErr: "p99_ms is given twice"},
		{in: "error_ratio<2", wantErr: "slo.error_ratio: 2 is outside (0, 1]"},
		{in: "p99_ms<0", wantErr: "slo.p99_ms: 0 is outside"},
		{in: "error_ratio<0.01,", wantErr: `"": want name<number`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := rollouts.ParseSLO(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSLO = %v, %v; want an error with %q", s, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tt.er == 0) != (s.ErrorRatio == nil) || (s.ErrorRatio != nil && *s.ErrorRatio != tt.er) ||
				(tt.p99 == 0) != (s.P99Ms == nil) || (s.P99Ms != nil && *s.P99Ms != tt.p99) {
				t.Errorf("ParseSLO = %v", s)
			}
			if s.String() != tt.asString {
				t.Errorf("String = %q, want %q", s.String(), tt.asString)
			}
		})
	}
}

func TestParseSteps(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr string
	}{
		{in: "1,5,25,50,100", want: []int{1, 5, 25, 50, 100}},
		{in: " 10%, 100% ", want: []int{10, 100}},
		{in: "100", want: []int{100}},
		{in: "", wantErr: `steps[0]: "" is not a whole percentage`},
		{in: "1,x,100", wantErr: `steps[1]: "x" is not a whole percentage`},
		{in: "1.5,100", wantErr: `steps[0]: "1.5" is not a whole percentage`},
		{in: "10,5,100", wantErr: "steps[1]: 5 is not above steps[0] (10)"},
		{in: "1,5,50", wantErr: "the last step is 100"},
		{in: "0,100", wantErr: "steps[0]: 0 is outside 1..100"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := rollouts.ParseSteps(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSteps = %v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseSteps = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
