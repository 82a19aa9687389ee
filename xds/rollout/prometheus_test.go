package rollout

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/rolloutspec"
	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/xds/translate"
)

// TestPrometheusEnvoyGRPCErrors measures a canary the way helix-xds does:
// the real Envoy sends requests to the canary's gRPC and REST clusters
// (and errors to the stable one, which must not count), the real
// Prometheus scrapes Envoy, and Prometheus.Measure asks it. It also pins
// how Envoy charges gRPC answers to upstream_rq_xx, which the error ratio
// rests on.
func TestPrometheusEnvoyGRPCErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const model = "simple"
	grpcAddr := serveGRPC(t)
	httpAddr := serveHTTP(t)
	stableAddr := serveHTTP(t)
	decoyAddr := serveHTTP(t)
	listen := pickPort(t)
	envoy := envoytest.Start(t, writeBootstrap(t, listen, map[string]cluster{
		translate.GRPCVariantCluster(model, VariantCanary): {addr: grpcAddr, h2: true},
		translate.HTTPVariantCluster(model, VariantCanary): {addr: httpAddr},
		translate.HTTPVariantCluster(model, VariantStable): {addr: stableAddr, xVariant: "stable"},
		// Model "simple_canary"'s own cluster: its stat name must not be
		// the canary's (translate.ClusterStatName), nor its errors count.
		translate.HTTPCluster(model + "_" + VariantCanary): {addr: decoyAddr, xVariant: "decoy"},
	}))
	if err := envoy.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}
	promURL := startPrometheus(t, strings.TrimPrefix(envoy.AdminURL, "http://"))
	p, err := NewPrometheus(promURL)
	if err != nil {
		t.Fatal(err)
	}
	// Envoy scraped, no canary requests yet: nothing to judge.
	waitFor(t, ctx, "a first scrape of Envoy", func() (bool, string) {
		v, err := p.scalar(ctx, "up", `up{job="envoy"}`, time.Now(), 0)
		return err == nil && v == 1, fmt.Sprint(v, err)
	})
	if m, err := p.Measure(ctx, model, time.Minute); err != nil || m.Requests != 0 {
		t.Fatalf("before any request: %+v %v, want 0 requests", m, err)
	}

	conn, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	grpcCall := func(want string) codes.Code {
		err := conn.Invoke(metadata.AppendToOutgoingContext(ctx, "want", want), "/test.Canary/Call", &emptypb.Empty{}, &emptypb.Empty{})
		return status.Code(err)
	}
	httpCall := func(variant, want string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+listen+"/v2/models/simple/infer", nil)
		req.Header.Set("x-variant", variant)
		req.Header.Set("want", want)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// How Envoy charges each kind of gRPC answer (one at a time, read from
	// its own stats): upstream_rq_xx says 2xx whatever the status, even
	// when the status comes in a trailers-only answer; the grpc_stats
	// filter counts the status.
	for _, tc := range []struct {
		want string
		code codes.Code
	}{
		{"ok", codes.OK},
		{"unavailable", codes.Unavailable}, // trailers-only
		{"internal", codes.Internal},
		{"invalid", codes.InvalidArgument}, // the client's fault, not the canary's
		{"late", codes.Internal},           // a message, then the error in trailers
	} {
		before := grpcCounts(t, ctx, envoy)
		if c := grpcCall(tc.want); c != tc.code {
			t.Fatalf("%s: code %v, want %v", tc.want, c, tc.code)
		}
		after := grpcCounts(t, ctx, envoy)
		for _, stat := range []string{"upstream_rq_2xx", "upstream_rq_4xx", "upstream_rq_5xx", "grpc." + strconv.Itoa(int(tc.code))} {
			want := before[stat]
			if stat == "upstream_rq_2xx" || stat == "grpc."+strconv.Itoa(int(tc.code)) {
				want++
			}
			if after[stat] != want {
				t.Errorf("gRPC %s (%v): %s %d → %d, want %d", tc.want, tc.code, stat, before[stat], after[stat], want)
			}
		}
	}
	// So far: 5 gRPC requests, 3 of them server errors. Then the REST
	// cluster, and the stable one's and model simple_canary's errors,
	// which must not count.
	for range 10 {
		grpcCall("unavailable")
		httpCall("canary", "ok")
		httpCall("stable", "fail")
		httpCall("decoy", "fail")
	}
	for range 5 {
		if c := httpCall("canary", "fail"); c != http.StatusInternalServerError {
			t.Fatalf("REST canary: %d, want 500", c)
		}
	}
	const wantRequests, wantErrors = 5 + 10 + 10 + 5, 3 + 10 + 5
	var m Measurement
	waitFor(t, ctx, "Prometheus to see the canary's requests", func() (bool, string) {
		m, err = p.Measure(ctx, model, time.Minute)
		return err == nil && m.Requests == wantRequests && m.Errors == wantErrors && !math.IsNaN(m.P99Ms), fmt.Sprintf("%+v %v", m, err)
	})
	if m.P99Ms <= 0 {
		t.Errorf("p99 %v ms, want > 0 (the upstreams sleep)", m.P99Ms)
	}
	// The controller's decision on it.
	result, reason := judge(rolloutspec.SLO{ErrorRatio: ptr(0.01)}, time.Minute, m, nil)
	if result != ResultFail || !strings.Contains(reason, "error ratio 60% (18 of 30 requests) is not below 1%") {
		t.Errorf("judged %s %q", result, reason)
	}
}

// grpcCounts reads the canary gRPC cluster's counters: upstream_rq_2xx,
// 4xx, 5xx and grpc.<code> (name → value).
func grpcCounts(t *testing.T, ctx context.Context, envoy *envoytest.Proc) map[string]int {
	t.Helper()
	prefix := "cluster." + translate.ClusterStatName(translate.GRPCVariantCluster("simple", VariantCanary)) + "."
	body, err := envoy.Admin(ctx, "/stats?filter="+regexp.QuoteMeta(prefix))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		name, value, ok := strings.Cut(line, ": ")
		if n, err := strconv.Atoi(value); ok && err == nil {
			out[strings.TrimPrefix(name, prefix)] = n
		}
	}
	return out
}

type cluster struct {
	addr string
	h2   bool
	// xVariant: REST requests with this x-variant header go here; ""
	// for the canary's REST cluster, which takes the rest.
	xVariant string
}

// writeBootstrap writes a static Envoy config as xds/translate makes the
// parts that matter here: clusters with alt_stat_name
// (translate.ClusterStatName) and the grpc_stats filter; gRPC requests go
// to the gRPC canary cluster, REST ones by their x-variant header.
func writeBootstrap(t *testing.T, listen string, clusters map[string]cluster) string {
	host, port, _ := net.SplitHostPort(listen)
	var cl strings.Builder
	var byHeader strings.Builder
	grpcName, httpName := "", ""
	for name, c := range clusters {
		h, p, _ := net.SplitHostPort(c.addr)
		proto := ""
		if c.h2 {
			grpcName = name
			proto = `
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}`
		} else if c.xVariant != "" {
			fmt.Fprintf(&byHeader, `
              - {match: {prefix: "/", headers: [{name: x-variant, string_match: {exact: %q}}]}, route: {cluster: %q}}`, c.xVariant, name)
		} else {
			httpName = name
		}
		fmt.Fprintf(&cl, `
  - name: %q
    alt_stat_name: %q
    type: STATIC%s
    load_assignment:
      cluster_name: %q
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]`, name, translate.ClusterStatName(name), proto, name, h, p)
	}
	yaml := fmt.Sprintf(`admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: in
    address: {socket_address: {address: %s, port_value: %s}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: helix
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {match: {prefix: "/", grpc: {}}, route: {cluster: %q}}%s
              - {match: {prefix: "/"}, route: {cluster: %q}}
          http_filters:
          - name: envoy.filters.http.grpc_stats
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig, stats_for_all_methods: false}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:%s
`, host, port, grpcName, byHeader.String(), httpName, cl.String())
	path := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveGRPC answers any unary method by its "want" metadata: ok, an error
// before any message (trailers-only), or after one ("late").
func serveGRPC(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
		md, _ := metadata.FromIncomingContext(stream.Context())
		switch strings.Join(md.Get("want"), "") {
		case "unavailable":
			return status.Error(codes.Unavailable, "canary down")
		case "internal":
			return status.Error(codes.Internal, "canary broken")
		case "invalid":
			return status.Error(codes.InvalidArgument, "bad input")
		case "late":
			if err := stream.SendMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			return status.Error(codes.Internal, "failed after a message")
		}
		return stream.SendMsg(&emptypb.Empty{})
	}))
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// serveHTTP answers 500 to "want: fail", 200 otherwise.
func serveHTTP(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		if r.Header.Get("want") == "fail" {
			http.Error(w, "canary broken", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "{}")
	})}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return lis.Addr().String()
}

func pickPort(t *testing.T) string {
	p, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// startPrometheus runs the real Prometheus (Debian's package, as make
// deps installs it) scraping Envoy's admin every 500 ms, and returns its
// URL once ready.
func startPrometheus(t *testing.T, envoyAdmin string) string {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		testdeps.Missing(t, "prometheus not found: run make deps (Debian's prometheus)")
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`global: {scrape_interval: 500ms, evaluation_interval: 1s}
scrape_configs:
- job_name: envoy
  metrics_path: /stats/prometheus
  static_configs: [{targets: [%q]}]
`, envoyAdmin)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := pickPort(t)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	url := "http://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitFor(t, ctx, "Prometheus ready", func() (bool, string) {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return url
}

func waitFor(t *testing.T, ctx context.Context, what string, f func() (bool, string)) {
	t.Helper()
	for {
		ok, last := f()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last: %s)", what, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
