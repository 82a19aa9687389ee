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
