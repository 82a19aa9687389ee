package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

// A detailed stats dump as Envoy 1.40 writes it (/stats?format=json&
// histogram_buckets=detailed): counters and one histograms object.
const envoyDetailed = `{"stats":[{"name":"http.helix.downstream_rq_completed","value":60},
{"histograms":{"supported_percentiles":[0,50,100],"details":[
{"name":"cluster.helix-authz.upstream_rq_time","totals":[{"lower_bound":2,"width":0.1,"count":10},{"lower_bound":0,"width":0,"count":30},{"lower_bound":12,"width":1,"count":20}],"intervals":[],"percentiles":[]},
{"name":"http.helix.downstream_rq_time","totals":[{"lower_bound":150,"width":10,"count":4}],"intervals":[],"percentiles":[]}]}}]}`

func TestStatName(t *testing.T) {
	// As Envoy 1.40's /stats names the simple model's gRPC cluster.
	if histWorker != "cluster.helix-model-grpc_simple.upstream_rq_time" {
		t.Errorf("histWorker = %q", histWorker)
	}
}

func TestParseHistograms(t *testing.T) {
	hs, err := parseHistograms([]byte(envoyDetailed))
	if err != nil {
		t.Fatal(err)
	}
	h := hs[histAuthzCall]
	if len(h) != 3 || h[0].lower != 0 || h[1].lower != 2 || h[2].lower != 12 || h.count() != 60 {
		t.Fatalf("helix-authz histogram = %+v, want 3 buckets in order, 60 values", h)
	}
	if _, err := parseHistograms([]byte("not json")); err == nil {
		t.Error("a broken dump parsed")
	}
}

func TestHistogramSubQuantileMean(t *testing.T) {
	earlier := histogram{{0, 0, 10}, {2, 0.1, 5}}
	now := histogram{{0, 0, 40}, {2, 0.1, 5}, {12, 1, 20}}
	d := now.sub(earlier)
	if len(d) != 2 || d.count() != 50 || d[0] != (bucket{0, 0, 30}) || d[1] != (bucket{12, 1, 20}) {
		t.Fatalf("sub = %+v, want 30 in [0,1) and 20 in [12,13)", d)
	}
	// 30 values in [0,1), 20 in [12,13): whole milliseconds, truncated.
	tests := []struct {
		name      string
		got, want float64
	}{
		{"p50", d.quantile(0.5), 25.0 / 30},
		{"p60", d.quantile(0.6), 1},
		{"p99", d.quantile(0.99), 12 + 19.5/20},
		{"p100", d.quantile(1), 13},
		{"mean", d.mean(), (30*0.5 + 20*12.5) / 50},
		{"empty quantile", histogram(nil).quantile(0.5), 0},
		{"empty mean", histogram(nil).mean(), 0},
		{"wide bucket", histogram{{150, 10, 4}}.quantile(0.5), 155},
	}
	for _, tt := range tests {
		if math.Abs(tt.got-tt.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

const authzMetricsText = `# HELP helix_authz_ratelimit_decisions_total Plan rate-limit decisions.
# TYPE helix_authz_ratelimit_decisions_total counter
helix_authz_ratelimit_decisions_total{result="allowed"} 1000
helix_authz_ratelimit_decisions_total{result="error"} 2
helix_authz_ratelimit_decisions_total{result="over_limit"} 0
# HELP helix_authz_check_duration_seconds Time to answer.
# TYPE helix_authz_check_duration_seconds histogram
helix_authz_check_duration_seconds_bucket{le="5e-05"} 0
helix_authz_check_duration_seconds_bucket{le="+Inf"} 1002
helix_authz_check_duration_seconds_sum 0.2004
helix_authz_check_duration_seconds_count 1002
# HELP helix_authz_ratelimit_redis_seconds Redis.
# TYPE helix_authz_ratelimit_redis_seconds histogram
helix_authz_ratelimit_redis_seconds_bucket{le="+Inf"} 1000
helix_authz_ratelimit_redis_seconds_sum 0.1
helix_authz_ratelimit_redis_seconds_count 1000
`

func TestHistogramAdd(t *testing.T) {
	got := histogram{{2, 0.1, 1}, {0, 0, 3}}.add(histogram{{0, 0, 2}, {1, 0.1, 4}})
	want := histogram{{0, 0, 5}, {1, 0.1, 4}, {2, 0.1, 1}}
	if len(got) != len(want) {
		t.Fatalf("add = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("add = %+v, want %+v", got, want)
		}
	}
}

func TestParseAuthzMetrics(t *testing.T) {
	m, err := parseAuthzMetrics(strings.NewReader(authzMetricsText))
	if err != nil {
		t.Fatal(err)
	}
	if m.decisions[decisionAllowed] != 1000 || m.decisions[decisionError] != 2 || m.checkCount != 1002 || m.redisCount != 1000 {
		t.Fatalf("parsed %+v", m)
	}
	near := func(d, want time.Duration) bool { return (d - want).Abs() < time.Microsecond }
	if got := m.meanCheck(); !near(got, 200*time.Microsecond) {
		t.Errorf("mean Check = %v, want 200us", got)
	}
	before := &authzMetrics{decisions: map[string]float64{decisionAllowed: 400}, checkSum: 0.1004, checkCount: 502, redisSum: 0.05, redisCount: 500}
	d := m.sub(before)
	if d.decisions[decisionAllowed] != 600 || d.decisions[decisionError] != 2 || !near(d.meanCheck(), 200*time.Microsecond) || !near(d.meanRedis(), 100*time.Microsecond) {
		t.Errorf("difference %+v: mean Check %v, Redis %v", d, d.meanCheck(), d.meanRedis())
	}
	if (&authzMetrics{}).meanRedis() != 0 {
		t.Error("no Redis round trips should mean 0")
	}
	if _, err := parseAuthzMetrics(strings.NewReader("helix_authz_checks_total{ 3\n")); err == nil {
		t.Error("broken metrics parsed")
	}
}

func TestReadingSince(t *testing.T) {
	earlier := &reading{hists: map[string]histogram{histDownstream: {{1, 0.1, 10}}}}
	now := &reading{hists: map[string]histogram{
		histDownstream:    {{1, 0.1, 30}},
		histAuthzCall:     {{0, 0, 20}},
		histWorker:        {{0, 0, 15}},
		histWorkerDefault: {{0, 0, 5}}, // routed by the default pool
	}}
	b := now.since(earlier)
	if b.downstream.count() != 20 || b.worker.count() != 20 || b.authz != nil {
		t.Fatalf("breakdown %+v", b)
	}
	// Request 1.5 ms on average, each call 0.5: the rest of Envoy 0.5.
	if got := b.restOfEnvoy(); math.Abs(got-0.5) > 1e-9 {
		t.Errorf("rest of Envoy = %v ms, want 0.5", got)
	}
}
