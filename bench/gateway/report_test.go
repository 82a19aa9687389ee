package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	helixstack "github.com/helixflow/helixflow/internal/stack"
	xdsserver "github.com/helixflow/helixflow/xds/server"
	"github.com/helixflow/helixflow/xds/translate"
)

func TestParsePerfCSV(t *testing.T) {
	const good = "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait\n" +
		"16,4210.5,10,1500,20,3,40,3,5,3601,4500,5000,9876,3700,0,0\n"
	tests := []struct {
		name, csv      string
		rate, p50, p99 float64
		wantErr        bool
	}{
		{"perf_analyzer's columns", good, 4210.5, 3601, 9876, false},
		{"header only", strings.SplitAfter(good, "\n")[0], 0, 0, 0, true},
		{"missing p99", "Inferences/Second,p50 latency\n1,2\n", 0, 0, 0, true},
		{"not a number", "Inferences/Second,p50 latency,p99 latency\nx,2,3\n", 0, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rate, p50, p99, err := parsePerfCSV(strings.NewReader(tt.csv))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && (rate != tt.rate || p50 != tt.p50 || p99 != tt.p99) {
				t.Errorf("got %v %v %v, want %v %v %v", rate, p50, p99, tt.rate, tt.p50, tt.p99)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}}
	for _, tt := range tests {
		if got := quantile(ds, tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(nil) = %v", got)
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("quantile sorted its input")
	}
}

func TestParseStats(t *testing.T) {
	got := parseStats("http.helix.ext_authz.ok: 12\ncluster.x.ratelimit.ok: 3\nserver.version: 1.40\nhist: P0(nan,1)\n")
	if got["http.helix.ext_authz.ok"] != 12 || got["cluster.x.ratelimit.ok"] != 3 || len(got) != 2 {
		t.Errorf("parseStats = %v", got)
	}
}

func TestRedactArgs(t *testing.T) {
	got := redactArgs([]string{"-u", "127.0.0.1:1", "-H", "authorization:Bearer secret.jwt.value"})
	if strings.Contains(got, "secret") || !strings.Contains(got, "authorization:Bearer $TOKEN") {
		t.Errorf("redactArgs = %q", got)
	}
}

func TestDisplayArgs(t *testing.T) {
	o := &options{window: 5 * time.Second}
	got := displayArgs(perfArgs(o, &target{url: "127.0.0.1:24862", tls: true}, 16, "/tmp/x/pa.csv", "secret.jwt", "/tmp/x/ca.crt"))
	want := "-m simple -u HOST:PORT -i grpc -a --concurrency-range C:C --measurement-mode time_windows -p 5000 -s 1000 " +
		"--warmup-request-count max(20,20*C) -f out.csv --ssl-grpc-use-ssl true --ssl-grpc-root-certifications-file ca.crt " +
		"-H authorization:Bearer $TOKEN"
	if got != want {
		t.Errorf("displayArgs =\n%s\nwant\n%s", got, want)
	}
}

// The TLS-only gateway is the translator's output without ext_authz
// (the one side call left, which also applies the plans' rate limits):
// nothing of it may remain, every other filter stays, the rest must still
// be a valid, consistent snapshot, and a translator without ext_authz must
// be noticed.
func TestWithoutAuthz(t *testing.T) {
	res, err := translate.Translate(snapshotGateway(3, 2, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	before := httpFilters(t, res)
	if !hasType(before, extAuthzType) {
		t.Fatalf("the translator's filters lack ext_authz: %v", before)
	}
	if err := withoutAuthz(res); err != nil {
		t.Fatal(err)
	}
	after := httpFilters(t, res)
	var want []string
	for _, f := range before {
		if f != extAuthzType {
			want = append(want, f)
		}
	}
	if !slices.Equal(after, want) {
		t.Errorf("filters after: %v, want %v", after, want)
	}
	for _, r := range res.Routes {
		for _, vh := range r.(*routev3.RouteConfiguration).GetVirtualHosts() {
			for name := range vh.GetTypedPerFilterConfig() {
				if strings.Contains(name, "ext_authz") {
					t.Errorf("virtual host %s keeps per-filter config %s", vh.GetName(), name)
				}
			}
			for _, rt := range vh.GetRoutes() {
				for name := range rt.GetTypedPerFilterConfig() {
					if strings.Contains(name, "ext_authz") {
						t.Errorf("route %s keeps per-filter config %s", rt.GetName(), name)
					}
				}
			}
		}
	}
	srv, err := xdsserver.New(context.Background(), xdsserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Publish(context.Background(), res); err != nil {
		t.Errorf("publish the TLS-only resources: %v", err)
	}
	if err := withoutAuthz(res); !errors.Is(err, errNoFilter) {
		t.Errorf("second strip = %v, want errNoFilter", err)
	}
}

func httpFilters(t *testing.T, res *translate.Resources) []string {
	t.Helper()
	var out []string
	for _, r := range res.Listeners {
		for _, fc := range r.(*listenerv3.Listener).GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig().GetTypeUrl() != hcmType {
					continue
				}
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					t.Fatal(err)
				}
				for _, hf := range hcm.GetHttpFilters() {
					out = append(out, hf.GetTypedConfig().GetTypeUrl())
				}
			}
		}
	}
	return out
}

func hasType(types []string, typ string) bool { return slices.Contains(types, typ) }

func TestParseConcurrencies(t *testing.T) {
	if got, err := parseConcurrencies("1, 16,64"); err != nil || len(got) != 3 || got[2] != 64 {
		t.Errorf("parseConcurrencies = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "1,x", "2000"} {
		if _, err := parseConcurrencies(bad); err == nil {
			t.Errorf("parseConcurrencies(%q) accepted", bad)
		}
	}
}

func TestChainGoals(t *testing.T) {
	// 10 s runs; CPU per inference = CPU / (rate * 10 s).
	run := func(path string, c int, rate, p50 float64, cpu map[string]time.Duration) *perfResult {
		return &perfResult{path: path, concurrency: c, rate: rate, p50: p50, elapsed: 10 * time.Second, cpu: cpu}
	}
	gw := map[string]time.Duration{procWorker: time.Second, helixstack.Envoy: 1500 * time.Millisecond, helixstack.Authz: 800 * time.Millisecond, helixstack.Redis: 200 * time.Millisecond}
	out := &outcome{perf: []*perfResult{
		run(pathDirect, 1, 4000, 250, nil), run(pathFull, 1, 1000, 700, nil),
		run(pathDirect, 64, 10000, 5000, nil), run(pathFull, 64, 6500, 9000, gw),
	}}
	got := chainGoals(out)
	want := []string{
		"met: full chain p50 <= direct + 500µs at concurrency 1: +450 us",
		"met: full chain throughput >= 0.6x direct at concurrency 64: 0.65x",
	}
	if len(got) != 3 || !strings.HasPrefix(got[0], want[0]) || !strings.HasPrefix(got[1], want[1]) {
		t.Fatalf("chainGoals =\n%s", strings.Join(got, "\n"))
	}
	// 2.5 s of gateway CPU over 65,000 inferences: 38 us, met.
	if !strings.HasPrefix(got[2], "met: gateway-side CPU") || !strings.Contains(got[2], ": 38 us") {
		t.Errorf("gateway CPU goal = %q", got[2])
	}
	out.perf[1].p50 = 800
	out.perf[3].rate = 5000
	got = chainGoals(out)
	if !strings.HasPrefix(got[0], "MISSED") || !strings.HasPrefix(got[1], "MISSED") {
		t.Errorf("missed goals read:\n%s", strings.Join(got, "\n"))
	}
	got = chainGoals(&outcome{perf: []*perfResult{run(pathDirect, 16, 1, 1, nil)}})
	for _, g := range got {
		if !strings.HasPrefix(g, "not measured") {
			t.Errorf("goal without its concurrency: %q", g)
		}
	}
}

func TestFullyChecked(t *testing.T) {
	ok := func() *perfResult {
		return &perfResult{
			stats:     map[string]int64{ctrRequests: 100, ctrAuthzOK: 100},
			breakdown: &breakdown{authz: &authzMetrics{decisions: map[string]float64{decisionAllowed: 100}}},
		}
	}
	if !fullyChecked(ok()) {
		t.Error("every request checked and counted: not fully checked")
	}
	tests := []struct {
		name  string
		spoil func(*perfResult)
	}{
		{"a request passed without Check", func(r *perfResult) { r.stats[ctrAuthzOK] = 99 }},
		{"Envoy's failure mode let one pass", func(r *perfResult) { r.stats[ctrAuthzAllowed] = 1 }},
		{"one denied", func(r *perfResult) { r.stats[ctrAuthzDenied] = 1 }},
		{"Redis failed once (failure mode open)", func(r *perfResult) { r.breakdown.authz.decisions[decisionError] = 1 }},
		{"a request not counted", func(r *perfResult) { r.breakdown.authz.decisions[decisionAllowed] = 99 }},
		{"helix-authz's metrics not read", func(r *perfResult) { r.breakdown = nil }},
	}
	for _, tt := range tests {
		r := ok()
		tt.spoil(r)
		if fullyChecked(r) {
			t.Errorf("%s: fully checked", tt.name)
		}
	}
}

func TestOptionsRuns(t *testing.T) {
	tests := []struct {
		o    options
		part string
		want bool
	}{
		{options{}, onlyPerf, true},
		{options{}, onlyLoad, true},
		{options{noLoad: true}, onlyLoad, false},
		{options{noLoad: true}, onlyConvergence, true},
		{options{only: onlyLoad}, onlyLoad, true},
		{options{only: onlyLoad}, onlyPerf, false},
		{options{only: onlyConvergence}, onlySnapshot, false},
	}
	for _, tt := range tests {
		if got := tt.o.runs(tt.part); got != tt.want {
			t.Errorf("%+v runs(%s) = %v, want %v", tt.o, tt.part, got, tt.want)
		}
	}
}
