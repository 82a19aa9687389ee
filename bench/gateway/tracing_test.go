package main

import (
	"strings"
	"testing"
	"time"
)

func TestTracingApplied(t *testing.T) {
	const tracer = `"name": "envoy.tracers.opentelemetry"`
	for _, tt := range []struct {
		name     string
		dump     string
		sampling float64
		ok       bool
	}{
		{"off and absent", `{"configs": []}`, -1, true},
		{"off but present", tracer, -1, false},
		{"on, not yet", `{"configs": []}`, 0.01, false},
		{"1 % on both HCMs", tracer + `"random_sampling": {"value": 1}, "random_sampling": {"value": 1}`, 0.01, true},
		{"1 % on one HCM only", tracer + `"random_sampling": {"value": 1}, "random_sampling": {"value": 100}`, 0.01, false},
		{"100 % by default", tracer, 1, true},
		{"100 % explicit", tracer + `"random_sampling": {"value": 100}`, 1, true},
		{"1 % wanted, default there", tracer, 0.01, false},
	} {
		err := tracingApplied(tt.dump, tt.sampling)
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestTracingReport(t *testing.T) {
	r := &tracingResult{c: 64, d: 15 * time.Second,
		rates:  map[string][]float64{"off": {1000, 1100, 900}, "1 %": {980, 990, 970}, "100 %": {700, 800, 750}},
		errors: map[string]int64{}}
	if got := r.median("off"); got != 1000 {
		t.Errorf("median off = %v, want 1000", got)
	}
	g := tracingGoal(r)
	if !strings.HasPrefix(g, "met:") || !strings.Contains(g, "0.980x") {
		t.Errorf("goal = %q", g)
	}
	var b strings.Builder
	tracingReport(&b, r)
	for _, want := range []string{"| off | 1,000 |", "| 1 % | 980 |", "0.750x"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	if g := tracingGoal(nil); !strings.HasPrefix(g, "not measured") {
		t.Errorf("goal without a run = %q", g)
	}
}
