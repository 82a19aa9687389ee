package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseGhzReport(t *testing.T) {
	const good = `{"count":60000,"total":60100000000,"rps":998.3,"slowest":250000000,
"errorDistribution":{"rpc error: code = Unavailable desc = x":3},
"statusCodeDistribution":{"OK":59995,"Unavailable":3},
"latencyDistribution":[{"percentage":10,"latency":1000000},{"percentage":50,"latency":2500000},{"percentage":95,"latency":40000000},{"percentage":99,"latency":90000000}],
"options":{"metadata":{"authorization":"Bearer secret"}}}`
	var st loadStep
	if err := parseGhzReport([]byte(good), &st); err != nil {
		t.Fatal(err)
	}
	// 3 Unavailable, and 2 requests without any status (failed before an answer).
	if st.count != 60000 || st.errors != 5 || st.p50 != 2500*time.Microsecond || st.p95 != 40*time.Millisecond || st.p99 != 90*time.Millisecond || st.achieved != 998.3 {
		t.Errorf("parsed %+v", st)
	}
	if !st.broken() {
		t.Error("a step with errors is not broken")
	}
	tests := []struct{ name, report string }{
		{"not JSON", "{"},
		{"no p95", `{"count":10,"statusCodeDistribution":{"OK":10},"latencyDistribution":[{"percentage":50,"latency":1}]}`},
	}
	for _, tt := range tests {
		if err := parseGhzReport([]byte(tt.report), &loadStep{}); !errors.Is(err, errGhz) {
			t.Errorf("%s: err = %v, want errGhz", tt.name, err)
		}
	}
	// Every request failed: no latencies, and that is no parse error.
	st = loadStep{}
	if err := parseGhzReport([]byte(`{"count":5,"statusCodeDistribution":{"DeadlineExceeded":5}}`), &st); err != nil || st.errors != 5 {
		t.Errorf("all failed: %v, %+v", err, st)
	}
}

func TestLoadStepBroken(t *testing.T) {
	tests := []struct {
		st   loadStep
		want bool
	}{
		{loadStep{rate: 1000, duration: time.Second, count: 1000, total: time.Second, p95: 99 * time.Millisecond}, false},
		{loadStep{rate: 1000, duration: time.Second, count: 900, total: time.Second, p95: 99 * time.Millisecond}, false},
		{loadStep{rate: 1000, duration: time.Second, count: 1000, total: time.Second, p95: 101 * time.Millisecond}, true},
		{loadStep{rate: 1000, duration: time.Second, count: 1000, total: time.Second, p95: time.Millisecond, errors: 1}, true},
		// ghz behind its schedule: too few requests, or sent over too long
		// (the slowest answer's wait at the end does not count).
		{loadStep{rate: 1000, duration: time.Second, count: 899, total: time.Second, p95: time.Millisecond}, true},
		{loadStep{rate: 1000, duration: time.Second, count: 1000, total: 1200 * time.Millisecond, p95: time.Millisecond}, true},
		{loadStep{rate: 1000, duration: time.Second, count: 1000, total: 1200 * time.Millisecond, slow: 200 * time.Millisecond, p95: time.Millisecond}, false},
	}
	for _, tt := range tests {
		if got := tt.st.broken(); got != tt.want {
			t.Errorf("%+v broken = %v, want %v", tt.st, got, tt.want)
		}
	}
}

// The token never reaches ghz's command line: it is in the metadata file.
func TestGhzArgs(t *testing.T) {
	o := &options{loadConnections: 1000}
	args := strings.Join(ghzArgs(o, "127.0.0.1:8443", 1500, 20*time.Second, "/t/ca.crt", "/t/simple.bin", "/t/token.json", "/t/out.json"), " ")
	for _, want := range []string{"--async --rps 1500", "--connections 1000 -c 1000", "-n 30000 -t 10s", "-M /t/token.json", "-B /t/simple.bin", "--cacert /t/ca.crt", "127.0.0.1:8443"} {
		if !strings.Contains(args, want) {
			t.Errorf("ghz args %q lack %q", args, want)
		}
	}
	if strings.Contains(strings.ToLower(args), "bearer") {
		t.Errorf("ghz args carry a token: %q", args)
	}
	if got := displayGhzArgs(o); !strings.Contains(got, "--rps RATE") || !strings.Contains(got, "-n RATE*LENGTH -t 10s") || !strings.Contains(got, "HOST:PORT") {
		t.Errorf("displayGhzArgs = %q", got)
	}
}

func TestBreakingPointAndLoadGoal(t *testing.T) {
	o := &options{loadConnections: 1000}
	target := &loadStep{rate: 1000, duration: time.Minute, count: 60000, total: time.Minute, p50: 2 * time.Millisecond, p95: 20 * time.Millisecond, p99: 50 * time.Millisecond}
	l := &loadResult{target: target, steps: []*loadStep{target, {rate: 1500}, {rate: 2000}}, lastGood: 1500, firstBad: 2000}
	if got := breakingPoint(o, l); !strings.Contains(got, "between 1,500 and 2,000 requests/s") {
		t.Errorf("breakingPoint = %q", got)
	}
	if got := loadGoal(o, l); !strings.HasPrefix(got, "met:") || !strings.Contains(got, "p95 20.0 ms") {
		t.Errorf("loadGoal = %q", got)
	}
	short := &loadStep{rate: 1000, duration: 10 * time.Second, count: 10000, total: 10 * time.Second, p95: time.Millisecond}
	if got := loadGoal(o, &loadResult{target: short, steps: []*loadStep{short}}); !strings.HasPrefix(got, "MISSED") {
		t.Errorf("a 10 s run meets the 60 s goal: %q", got)
	}
	if got := breakingPoint(o, &loadResult{target: target, steps: []*loadStep{target, {rate: 1500}}, lastGood: 1500}); !strings.Contains(got, "not reached up to 1,500") {
		t.Errorf("breakingPoint without a broken step = %q", got)
	}
	if got := breakingPoint(o, &loadResult{target: target, steps: []*loadStep{target}, firstBad: 1000}); !strings.Contains(got, "at or below 1,000") {
		t.Errorf("breakingPoint with the target broken = %q", got)
	}
	sorted := (&loadResult{target: target, steps: []*loadStep{target, {rate: 2000}, {rate: 1250}, {rate: 1500}}}).sortedSteps()
	if sorted[0] != target || sorted[1].rate != 1250 || sorted[3].rate != 2000 {
		t.Errorf("sortedSteps = %v %v %v %v", sorted[0].rate, sorted[1].rate, sorted[2].rate, sorted[3].rate)
	}
}

func TestFailureEvents(t *testing.T) {
	before := map[string]int64{"http.helix.ext_authz.error": 5, "http.helix.ext_authz.ok": 10}
	after := map[string]int64{
		"http.helix.ext_authz.error": 25, "http.helix.ext_authz.ok": 900, "http.helix.downstream_rq_5xx": 20,
		"cluster.helix-authz.upstream_rq_pending_overflow": 3, "cluster.helix-authz.upstream_rq_timeout": 0,
		"cluster.helix-model-grpc/simple.upstream_rq_timeout": 2, "cluster.helix-authz.upstream_rq_total": 900,
	}
	got := failureEvents(before, after)
	want := map[string]int64{"ext_authz.error": 20, "downstream_rq_5xx": 20,
		"cluster.helix-authz.upstream_rq_pending_overflow": 3, "cluster.helix-model-grpc/simple.upstream_rq_timeout": 2}
	if len(got) != len(want) {
		t.Fatalf("failureEvents = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	if s := eventSummary(got); s != "cluster.helix-authz.upstream_rq_pending_overflow 3, cluster.helix-model-grpc/simple.upstream_rq_timeout 2, downstream_rq_5xx 20, ext_authz.error 20" {
		t.Errorf("eventSummary = %q", s)
	}
	if eventSummary(nil) != "none" {
		t.Error("no events should read none")
	}
}

func TestCPUSummary(t *testing.T) {
	st := &loadStep{elapsed: 10 * time.Second, clientCPU: 2 * time.Second,
		cpu: map[string]time.Duration{"helix-authz": time.Second, "envoy": 15 * time.Second}}
	if got, want := st.cpuSummary(), "envoy 1.50, helix-authz 0.10, ghz 0.20"; got != want {
		t.Errorf("cpuSummary = %q, want %q", got, want)
	}
}
