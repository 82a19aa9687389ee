package translate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/xds/ir"
)

const trModel = "simple"

// trAuthz stands in for helix-authz's Check as docs/rollouts.md and
// internal/wire/traffic.go describe its answer on an inference: the
// client is its API key; it sets x-helix-model (gRPC: from the helix-model
// header; REST: from the path), x-helix-assignment
// (wire.AssignmentHeaderValue of client and model), x-helix-requested-version
// (gRPC: ModelInferRequest.model_version from the body Envoy sends;
// REST: /versions/{v}) and x-helix-variant from helix-variant. The
// override scope and everything else are helix-authz's own tests'.
type trAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (trAuthz) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := req.GetAttributes().GetRequest().GetHttp()
	hdr := h.GetHeaders()
	client, model, version := hdr[wire.HeaderAPIKey], hdr[wire.HeaderStreamModel], ""
	if segs, err := wire.SplitPath(strings.SplitN(h.GetPath(), "?", 2)[0]); err == nil && len(segs) > 2 && segs[0] == "v2" && segs[1] == "models" {
		if r, ok := wire.ParseModelRoute(segs[2:]); ok {
			model, version = r.Model, r.Version
		}
	}
	if body := h.GetRawBody(); strings.HasPrefix(h.GetPath(), wire.GRPCModelInfer) && len(body) > 5 {
		var m inference.ModelInferRequest
		if err := proto.Unmarshal(body[5:], &m); err == nil {
			model, version = m.GetModelName(), m.GetModelVersion()
		}
	}
	set := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
	headers := []*corev3.HeaderValueOption{set(wire.HeaderModel, model), set(wire.HeaderAssignment, wire.AssignmentHeaderValue(client, model))}
	if version != "" {
		headers = append(headers, set(wire.HeaderRequestedVersion, version))
	}
	if v := hdr[wire.HeaderVariantRequest]; v != "" {
		headers = append(headers, set(wire.HeaderVariant, v))
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: headers}},
	}, nil
}

// trSeen is what a worker saw of one request.
type trSeen struct {
	client    string // from the request id (gRPC) or query (REST)
	version   string // wire.HeaderModelVersion
	requested string // the version the request named
	shadow    string // wire.HeaderShadow
}

// trBackend stands in for a worker of model trModel (gRPC and REST): it
// answers with its name and records what each request carried. fail and
// delay make it an erroring or slow shadow.
type trBackend struct {
	inference.UnimplementedGRPCInferenceServiceServer
	name               string
	grpcPort, httpPort uint32
	versions           []string
	pool               string
	mu                 sync.Mutex
	seen               []trSeen
	fail               bool
	delay              time.Duration
}

func (b *trBackend) record(s trSeen) (fail bool, delay time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = append(b.seen, s)
	return b.fail, b.delay
}

func (b *trBackend) take() []trSeen {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.seen
	b.seen = nil
	return s
}

func (b *trBackend) set(fail bool, delay time.Duration) {
	b.mu.Lock()
	b.fail, b.delay = fail, delay
	b.mu.Unlock()
}

func (b *trBackend) ModelInfer(ctx context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(k string) string { return strings.Join(md.Get(k), ",") }
	fail, delay := b.record(trSeen{
		client: req.GetId(), version: get(wire.HeaderModelVersion), requested: req.GetModelVersion(), shadow: get(wire.HeaderShadow),
	})
	time.Sleep(delay)
	if fail {
		return nil, status.Error(codes.Internal, b.name+" fails")
	}
	return &inference.ModelInferResponse{ModelName: trModel, ModelVersion: cmpOr(req.GetModelVersion(), get(wire.HeaderModelVersion)), Id: b.name}, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (b *trBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	upgrade := r.Header.Get("Upgrade") != ""
	if r.Method == http.MethodGet && !upgrade {
		return // readiness
	}
	segs, _ := wire.SplitPath(r.URL.Path)
	mr, _ := wire.ParseModelRoute(segs[2:])
	fail, delay := b.record(trSeen{
		client: r.URL.Query().Get("client"), version: r.Header.Get(wire.HeaderModelVersion), requested: mr.Version, shadow: r.Header.Get(wire.HeaderShadow),
	})
	if upgrade {
		(&wsBackend{}).ServeHTTP(w, r) // accepts and echoes
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	time.Sleep(delay)
	if fail {
		http.Error(w, b.name+" fails", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"model_name":%q,"model_version":%q,"id":%q,"outputs":[]}`, trModel, cmpOr(mr.Version, r.Header.Get(wire.HeaderModelVersion)), b.name)
}

func startTrBackend(t *testing.T, name, pool string, versions ...string) *trBackend {
	t.Helper()
	b := &trBackend{name: name, pool: pool, versions: versions}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	inference.RegisterGRPCInferenceServiceServer(gs, b)
	hs := health.NewServer()
	hs.SetServingStatus(trModel, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(gl) }()
	t.Cleanup(gs.Stop)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(hl) }()
	t.Cleanup(func() { _ = srv.Close() })
	b.grpcPort, b.httpPort = uint32(gl.Addr().(*net.TCPAddr).Port), uint32(hl.Addr().(*net.TCPAddr).Port)
	return b
}

func (b *trBackend) endpoint() ir.Endpoint {
	return ir.Endpoint{Address: "127.0.0.1", Port: b.grpcPort, HTTPPort: b.httpPort, Ready: true, Worker: b.name, Versions: b.versions, Pool: b.pool}
}

// trGateway is a real Envoy fed the translated resources over ADS.
type trGateway struct {
	t        *testing.T
	g        *ir.Gateway
	backends []*trBackend
	cache    cachev3.SnapshotCache
	ver      int
	addr     string
	envoy    *envoytest.Proc
	grpc     inference.GRPCInferenceServiceClient
	http     *http.Client
	routes   types.Resource // the last published
}

// publish translates the gateway with policy tr on trModel and waits
// until Envoy has the routes (their names and the weights say which).
func (s *trGateway) publish(tr *ir.Traffic) {
	s.t.Helper()
	var eps []ir.Endpoint
	for _, b := range s.backends {
		eps = append(eps, b.endpoint())
	}
	s.g.Pools = []ir.Pool{{Model: trModel, Endpoints: eps, Traffic: tr}}
	s.g.DefaultPool = ir.Pool{Endpoints: eps}
	r, err := Translate(s.g)
	if err != nil {
		s.t.Fatal(err)
	}
	s.ver++
	snap, err := cachev3.NewSnapshot(strconv.Itoa(s.ver), map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: r.Listeners, resourcev3.RouteType: r.Routes,
		resourcev3.ClusterType: r.Clusters, resourcev3.EndpointType: r.Endpoints,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.cache.SetSnapshot(context.Background(), "traffic-test", snap); err != nil {
		s.t.Fatal(err)
	}
	// Envoy has it when its route configuration's version is ours (unless
	// the routes did not change: the cache need not send them again) and
	// every variant cluster has a healthy host.
	same := s.routes != nil && proto.Equal(s.routes, r.Routes[0])
	s.routes = r.Routes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		routes, err1 := s.envoy.Admin(ctx, "/config_dump?resource=dynamic_route_configs")
		clusters, err2 := s.envoy.Admin(ctx, "/clusters")
		ok := err1 == nil && err2 == nil && (same || strings.Contains(routes, `"version_info": "`+strconv.Itoa(s.ver)+`"`))
		if ok && tr != nil {
			for _, v := range trafficVariants(&s.g.Pools[0]) {
				for _, c := range []string{GRPCVariantCluster(trModel, v.Name), HTTPVariantCluster(trModel, v.Name)} {
					ok = ok && healthy(clusters, c)
				}
			}
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("Envoy did not apply version %d: %v %v\n%s", s.ver, err1, err2, clusters)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// healthy: every host of cluster c in Envoy's /clusters text passed its
// health check.
func healthy(clusters, c string) bool {
	n := 0
	for _, l := range strings.Split(clusters, "\n") {
		if strings.HasPrefix(l, c+"::127.0.0.1:") && strings.Contains(l, "::health_flags::") {
			if !strings.HasSuffix(l, "::health_flags::healthy") {
				return false
			}
			n++
		}
	}
	return n > 0
}

func startTrGateway(t *testing.T, backends ...*trBackend) *trGateway {
	t.Helper()
	envoytest.Binary(t)
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	as := grpc.NewServer()
	authv3.RegisterAuthorizationServer(as, trAuthz{})
	go func() { _ = as.Serve(al) }()
	t.Cleanup(as.Stop)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &trGateway{t: t, backends: backends, cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)}
	xl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(xs, serverv3.NewServer(ctx, s.cache, nil))
	go func() { _ = xs.Serve(xl) }()
	t.Cleanup(xs.Stop)

	port := freeTCPPort(t)
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.g = &ir.Gateway{
		Listener: ir.Listener{Address: "127.0.0.1", Port: port},
		AuthZ:    ir.AuthZ{Upstream: ir.Upstream{Address: "127.0.0.1", Port: uint32(al.Addr().(*net.TCPAddr).Port)}},
		Retry:    ir.Retry{NumRetries: 2},
	}
	s.g.ApplyDefaults()

	xdsCluster, err := serviceCluster("xds", "xds", ir.Upstream{Address: "127.0.0.1", Port: uint32(xl.Addr().(*net.TCPAddr).Port)}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b := &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: "traffic-test", Cluster: "helix"},
		Admin: &bootstrapv3.Admin{Address: socketAddress("127.0.0.1", 0)},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices:        []*corev3.GrpcService{grpcService("xds", time.Second)},
			},
			CdsConfig: adsSource(),
			LdsConfig: adsSource(),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{xdsCluster}},
	}
	js, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(path, js, 0o600); err != nil {
		t.Fatal(err)
	}
	s.envoy = envoytest.Start(t, path)
	s.publish(nil)

	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	s.grpc = inference.NewGRPCInferenceServiceClient(cc)
	s.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	return s
}

// trReq is one inference through the gateway.
type trReq struct {
	rest    bool
	client  string
	version string // the version the request names
	variant string // helix-variant
	tail    string // REST: the path after the model and version; default infer
}

// do sends r and returns the worker that answered and the version it
// says it served.
func (s *trGateway) do(ctx context.Context, r trReq) (worker, version string, err error) {
	if !r.rest {
		md := metadata.Pairs(wire.HeaderAPIKey, r.client, wire.HeaderStreamModel, trModel)
		if r.variant != "" {
			md.Append(wire.HeaderVariantRequest, r.variant)
		}
		resp, err := s.grpc.ModelInfer(metadata.NewOutgoingContext(ctx, md), &inference.ModelInferRequest{
			ModelName: trModel, ModelVersion: r.version, Id: r.client,
		})
		return resp.GetId(), resp.GetModelVersion(), err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.addr+wire.RESTModelPath(trModel, r.version, cmpOr(r.tail, "infer"))+"?client="+r.client,
		strings.NewReader(`{"inputs":[]}`))
	req.Header.Set(wire.HeaderAPIKey, r.client)
	req.Header.Set("Content-Type", "application/json")
	if r.variant != "" {
		req.Header.Set(wire.HeaderVariantRequest, r.variant)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var out struct {
		ID      string `json:"id"`
		Version string `json:"model_version"`
	}
	return out.ID, out.Version, json.Unmarshal(body, &out)
}

// run sends reqs, 16 at a time, and returns each one's worker and the
// slowest answer; any error fails the test.
func (s *trGateway) run(t *testing.T, reqs []trReq) ([]string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := make([]string, len(reqs))
	lat := make([]time.Duration, len(reqs))
	errs := make([]error, len(reqs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				start := time.Now()
				out[i], _, errs[i] = s.do(ctx, reqs[i])
				lat[i] = time.Since(start)
			}
		}()
	}
	for i := range reqs {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d %+v: %v", i, reqs[i], err)
		}
	}
	return out, slices.Max(lat)
}

func count(workers []string) map[string]int {
	m := map[string]int{}
	for _, w := range workers {
		m[w]++
	}
	return m
}

// The real Envoy with the translated routes, clusters and assignments
// (over ADS), in front of four workers: "old" (version 1, default pool),
// "new" (versions 1 and 2, pool canary), "shadow" (version 3, pool
// shadow) and "other" (version 7 only, default pool). A policy splits by
// weight (per request, or sticky per client by x-helix-assignment), adds
// the variant's version for the worker, obeys an override and a
// requested version, and mirrors a share to a shadow whose errors and
// slowness the client never sees; over gRPC and REST alike.
func TestEnvoyTrafficPolicy(t *testing.T) {
	oldW := startTrBackend(t, "old", "", "1")
	newW := startTrBackend(t, "new", "canary", "1", "2")
	shadowW := startTrBackend(t, "shadow", "shadow", "3")
	otherW := startTrBackend(t, "other", "", "7")
	all := []*trBackend{oldW, newW, shadowW, otherW}
	gw := startTrGateway(t, all...)
	takeAll := func() {
		for _, b := range all {
			b.take()
		}
	}
	stable := ir.Variant{Name: "stable", Version: "1", Pool: wire.DefaultPool, Weight: 80}
	canary := ir.Variant{Name: "canary", Version: "2", Pool: "canary", Weight: 20}

	t.Run("split by weight per request", func(t *testing.T) {
		gw.publish(&ir.Traffic{Variants: []ir.Variant{stable, canary}})
		takeAll()
		for _, rest := range []bool{false, true} {
			const n = 2000
			reqs := make([]trReq, n)
			for i := range reqs {
				// One client: without stickiness its requests spread anyway.
				reqs[i] = trReq{rest: rest, client: "client-1"}
			}
			got, _ := gw.run(t, reqs)
			c := count(got)
			share := float64(c["new"]) / n
			// 20% of 2,000: the binomial's standard deviation is 0.9 pp.
			if c["old"]+c["new"] != n || math.Abs(share-0.2) > 0.04 {
				t.Errorf("rest %v: %v over %d requests, canary share %.3f, want 0.20 ± 0.04", rest, c, n, share)
			}
		}
		// The version each variant pins reached its workers.
		for _, b := range []*trBackend{oldW, newW} {
			want := map[string]string{"old": "1", "new": "2"}[b.name]
			for _, s := range b.take() {
				if s.version != want || s.shadow != "" || s.requested != "" {
					t.Fatalf("%s saw %+v, want %s %s and nothing else", b.name, s, wire.HeaderModelVersion, want)
				}
			}
		}
		if s := otherW.take(); len(s) != 0 {
			t.Errorf("a worker in no variant got %d requests", len(s))
		}
	})

	t.Run("sticky by assignment", func(t *testing.T) {
		gw.publish(&ir.Traffic{Sticky: true, Variants: []ir.Variant{
			{Name: "stable", Version: "1", Pool: wire.DefaultPool, Weight: 50},
			{Name: "canary", Version: "2", Pool: "canary", Weight: 50},
		}})
		takeAll()
		for _, rest := range []bool{false, true} {
			const clients, each = 50, 10
			var reqs []trReq
			for c := range clients {
				for range each {
					reqs = append(reqs, trReq{rest: rest, client: fmt.Sprintf("client-%02d", c)})
				}
			}
			got, _ := gw.run(t, reqs)
			per := map[string]map[string]int{}
			for i, w := range got {
				if per[reqs[i].client] == nil {
					per[reqs[i].client] = map[string]int{}
				}
				per[reqs[i].client][w]++
			}
			used := map[string]int{}
			for client, ws := range per {
				if len(ws) != 1 {
					t.Errorf("rest %v: %s was served by %v", rest, client, ws)
				}
				// Envoy takes the assignment modulo the total weight and
				// walks the clusters in order: the client's variant is
				// known in advance (helix-xds's /status and the e2e tests
				// rely on it).
				want := "old"
				if wire.AssignmentValue(client, trModel)%100 >= 50 {
					want = "new"
				}
				for w := range ws {
					used[w]++
					if w != want {
						t.Errorf("rest %v: %s on %s, want %s (assignment %d mod 100)", rest, client, w, want, wire.AssignmentValue(client, trModel)%100)
					}
				}
			}
			if used["old"] == 0 || used["new"] == 0 {
				t.Errorf("rest %v: clients per variant %v: both variants must get some of 50 clients", rest, used)
			}
		}
	})

	t.Run("override and requested version", func(t *testing.T) {
		gw.publish(&ir.Traffic{Sticky: true, Variants: []ir.Variant{stable, canary}})
		// A client the sticky split puts on stable.
		client := ""
		for i := 0; client == ""; i++ {
			if c := fmt.Sprintf("c%d", i); wire.AssignmentValue(c, trModel)%100 < 80 {
				client = c
			}
		}
		for _, rest := range []bool{false, true} {
			for _, tc := range []struct {
				req           trReq
				worker        string
				header, serve string // the version header the worker sees, the version served
			}{
				{trReq{}, "old", "1", "1"},
				{trReq{variant: "canary"}, "new", "2", "2"},
				{trReq{variant: "stable"}, "old", "1", "1"},
				{trReq{version: "2"}, "new", "", "2"},
				{trReq{version: "02"}, "new", "", "02"},
				{trReq{version: "1"}, "old", "", "1"},
				{trReq{version: "7"}, "", "", "7"}, // the model's own cluster: any of its workers
				{trReq{variant: "canary", version: "1"}, "new", "2", "1"},
			} {
				takeAll()
				r := tc.req
				r.rest, r.client = rest, client
				for range 5 {
					w, v, err := gw.do(context.Background(), r)
					if err != nil {
						t.Fatalf("%+v: %v", r, err)
					}
					if (tc.worker != "" && w != tc.worker) || v != tc.serve {
						t.Errorf("%+v: %s served version %q, want %s %q", r, w, v, cmpOr(tc.worker, "any worker"), tc.serve)
					}
					b := all[slices.IndexFunc(all, func(b *trBackend) bool { return b.name == w })]
					if s := b.take(); len(s) != 1 || s[0].version != tc.header {
						t.Errorf("%+v: %s saw %+v, want %s %q", r, w, s, wire.HeaderModelVersion, tc.header)
					}
				}
			}
		}
	})

	// A name that is no variant of the policy is refused, never split: a
	// tester must not believe they reached a variant. gRPC gets
	// INVALID_ARGUMENT, REST 400 with a JSON body; no worker sees it.
	t.Run("unknown variant refused", func(t *testing.T) {
		gw.publish(&ir.Traffic{Sticky: true, Variants: []ir.Variant{stable, canary}})
		const msg = `helix-variant: unknown variant for model "` + trModel + `" (its variants: stable, canary)`
		for _, r := range []trReq{{variant: "nope"}, {variant: "nope", version: "2"}, {variant: "mirror"}} {
			takeAll()
			r.client = "c"
			_, _, err := gw.do(context.Background(), r)
			if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || st.Message() != msg {
				t.Errorf("gRPC %+v: %v, want %v %q", r, err, codes.InvalidArgument, msg)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+gw.addr+wire.RESTModelPath(trModel, r.version, "infer")+"?client=c",
				strings.NewReader(`{"inputs":[]}`))
			req.Header.Set(wire.HeaderAPIKey, "c")
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(wire.HeaderVariantRequest, r.variant)
			resp, err := gw.http.Do(req)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			var got struct {
				Error            string `json:"error"`
				ErrorDescription string `json:"error_description"`
			}
			if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != http.StatusBadRequest ||
				resp.Header.Get("Content-Type") != "application/json" || got.Error != "unknown_variant" || got.ErrorDescription != msg {
				t.Errorf("REST %+v: %d %s %s, want 400 application/json unknown_variant %q", r, resp.StatusCode, resp.Header.Get("Content-Type"), body, msg)
			}
			for _, b := range all {
				if s := b.take(); len(s) != 0 {
					t.Errorf("%+v reached %s", r, b.name)
				}
			}
		}
	})

	// WebSocket and generate_stream take the same policy: their routes
	// are the model's too (without a mirror: streams are not copied).
	t.Run("WebSocket and generate_stream", func(t *testing.T) {
		gw.publish(&ir.Traffic{Sticky: true, Variants: []ir.Variant{stable, canary},
			Shadow: &ir.Shadow{Variant: ir.Variant{Name: "mirror", Version: "3", Pool: "shadow"}, Percent: 100}})
		// upgrade sends no API key: the client is "".
		want, version := oldW, "1"
		if wire.AssignmentValue("", trModel)%100 >= 80 {
			want, version = newW, "2"
		}
		for _, tc := range []struct {
			path          string
			worker        *trBackend
			header, named string
		}{
			{wire.RESTModelPath(trModel, "", "infer", "ws"), want, version, ""},
			{wire.RESTModelPath(trModel, "2", "infer", "ws"), newW, "", "2"},
			{wire.RESTModelPath(trModel, "7", "infer", "ws"), nil, "", "7"},
		} {
			takeAll()
			if code := upgrade(t, gw.addr, tc.path, wire.WSProtocol); code != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade %s: %d", tc.path, code)
			}
			var got []string
			for _, b := range all {
				for _, s := range b.take() {
					got = append(got, b.name)
					if s.version != tc.header || s.requested != tc.named || s.shadow != "" {
						t.Errorf("upgrade %s: %s saw %+v, want %s %q", tc.path, b.name, s, wire.HeaderModelVersion, tc.header)
					}
				}
			}
			if len(got) != 1 || (tc.worker != nil && got[0] != tc.worker.name) {
				t.Errorf("upgrade %s reached %q, want one request at %v", tc.path, got, tc.worker)
			}
		}
		takeAll()
		for _, tc := range []struct {
			req    trReq
			worker string
		}{
			{trReq{rest: true, client: "x", variant: "canary", tail: "generate_stream"}, "new"},
			{trReq{rest: true, client: "x", variant: "stable", tail: "generate_stream"}, "old"},
		} {
			if w, _, err := gw.do(context.Background(), tc.req); err != nil || w != tc.worker {
				t.Errorf("%+v: %s, %v; want %s", tc.req, w, err, tc.worker)
			}
		}
		time.Sleep(200 * time.Millisecond)
		if s := shadowW.take(); len(s) != 0 {
			t.Errorf("streams were mirrored: %d copies", len(s))
		}
	})

	t.Run("shadow gets its share", func(t *testing.T) {
		gw.publish(&ir.Traffic{Variants: []ir.Variant{stable, canary},
			Shadow: &ir.Shadow{Variant: ir.Variant{Name: "mirror", Version: "3", Pool: "shadow"}, Percent: 50}})
		takeAll()
		for _, rest := range []bool{false, true} {
			const n = 1000
			reqs := make([]trReq, n)
			for i := range reqs {
				reqs[i] = trReq{rest: rest, client: "client-" + strconv.Itoa(i)}
			}
			got, _ := gw.run(t, reqs)
			if c := count(got); c["shadow"] != 0 {
				t.Errorf("rest %v: the shadow answered clients: %v", rest, c)
			}
			// Envoy does not wait for the mirror: its requests may still
			// be arriving.
			var seen []trSeen
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				seen = append(seen, shadowW.take()...)
				if len(seen) >= n/2-100 {
					time.Sleep(200 * time.Millisecond)
					seen = append(seen, shadowW.take()...)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			// 50% of 1,000: the binomial's standard deviation is 1.6 pp.
			if share := float64(len(seen)) / n; math.Abs(share-0.5) > 0.08 {
				t.Errorf("rest %v: the shadow got %d copies of %d requests (%.2f), want 0.50 ± 0.08", rest, len(seen), n, share)
			}
			for _, s := range seen {
				if s.shadow != "1" || s.version != "3" {
					t.Fatalf("rest %v: the shadow saw %+v, want %s 1 and %s 3", rest, s, wire.HeaderShadow, wire.HeaderModelVersion)
				}
			}
			for _, b := range []*trBackend{oldW, newW} {
				for _, s := range b.take() {
					if s.shadow != "" {
						t.Fatalf("%s saw %s %q", b.name, wire.HeaderShadow, s.shadow)
					}
				}
			}
		}
		// A request naming a version is not mirrored.
		takeAll()
		for range 20 {
			if _, _, err := gw.do(context.Background(), trReq{client: "v", version: "1"}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		if s := shadowW.take(); len(s) != 0 {
			t.Errorf("requests naming version 1 were mirrored %d times", len(s))
		}
	})

	// stat is a counter of a cluster in Envoy's stats.
	stat := func(cluster, name string) int {
		t.Helper()
		full := "cluster." + ClusterStatName(cluster) + "." + name
		out, err := gw.envoy.Admin(context.Background(), "/stats?filter=^"+regexp.QuoteMeta(full)+"$")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), full+":")))
		return n
	}
	// A rollout's SLO reads a canary's errors from its clusters' stats
	// (xds/rollout): REST's as upstream_rq_5xx, gRPC's by status code from
	// the grpc_stats filter (hcm.go), since upstream_rq_xx has a gRPC
	// error as the HTTP 200 it came in.
	t.Run("a failing variant's errors in its stats", func(t *testing.T) {
		gw.publish(&ir.Traffic{Variants: []ir.Variant{stable, canary}})
		newW.set(true, 0)
		defer newW.set(false, 0)
		g, h := GRPCVariantCluster(trModel, "canary"), HTTPVariantCluster(trModel, "canary")
		before := []int{stat(g, "grpc.13"), stat(g, "grpc.failure"), stat(g, "upstream_rq_2xx"), stat(h, "upstream_rq_5xx")}
		const n = 20
		for range n {
			if _, _, err := gw.do(context.Background(), trReq{client: "c", variant: "canary"}); status.Code(err) != codes.Internal {
				t.Fatalf("gRPC to the failing canary: %v, want INTERNAL", err)
			}
			if _, _, err := gw.do(context.Background(), trReq{rest: true, client: "c", variant: "canary"}); err == nil || !strings.Contains(err.Error(), "status 500") {
				t.Fatalf("REST to the failing canary: %v, want 500", err)
			}
		}
		for i, c := range []struct{ cluster, stat string }{{g, "grpc.13"}, {g, "grpc.failure"}, {g, "upstream_rq_2xx"}, {h, "upstream_rq_5xx"}} {
			if got := stat(c.cluster, c.stat) - before[i]; got != n {
				t.Errorf("%s %s: %d more, want %d", c.cluster, c.stat, got, n)
			}
		}
		takeAll()
	})

	t.Run("a failing or slow shadow is invisible", func(t *testing.T) {
		gw.publish(&ir.Traffic{Variants: []ir.Variant{stable, canary},
			Shadow: &ir.Shadow{Variant: ir.Variant{Name: "mirror", Version: "3", Pool: "shadow"}, Percent: 100}})
		defer shadowW.set(false, 0)
		for _, mode := range []struct {
			name  string
			fail  bool
			delay time.Duration
		}{{"failing", true, 0}, {"slow", false, 4 * time.Second}} {
			shadowW.set(mode.fail, mode.delay)
			takeAll()
			before := []int{stat(HTTPVariantCluster(trModel, "mirror"), "upstream_rq_5xx"), stat(GRPCVariantCluster(trModel, "mirror"), "upstream_rq_2xx")}
			for _, rest := range []bool{false, true} {
				reqs := make([]trReq, 300)
				for i := range reqs {
					reqs[i] = trReq{rest: rest, client: "client-" + strconv.Itoa(i)}
				}
				// run fails the test on any client error.
				got, slowest := gw.run(t, reqs)
				if c := count(got); c["shadow"] != 0 {
					t.Errorf("%s shadow, rest %v: %v", mode.name, rest, c)
				}
				if mode.delay > 0 && slowest >= mode.delay/2 {
					t.Errorf("%s shadow, rest %v: the slowest answer took %v: the client waited for the mirror", mode.name, rest, slowest)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			n := 0
			for n < 600 && time.Now().Before(deadline) {
				n += len(shadowW.take())
				time.Sleep(50 * time.Millisecond)
			}
			if n < 600 {
				t.Errorf("%s shadow got %d of 600 copies", mode.name, n)
			}
			if !mode.fail {
				continue
			}
			// What the shadow's clusters' stats say of the failures: REST's
			// 500 is a 5xx; a gRPC error (HTTP 200, grpc-status 13 in a
			// trailers-only answer) is a 2xx in Envoy 1.40's
			// upstream_rq_xx. (A mirror's requests pass no filter, so
			// grpc_stats does not see them; for a variant's, see "a
			// failing variant's errors in its stats".)
			for i, c := range []struct{ cluster, stat string }{
				{HTTPVariantCluster(trModel, "mirror"), "upstream_rq_5xx"},
				{GRPCVariantCluster(trModel, "mirror"), "upstream_rq_2xx"},
			} {
				deadline := time.Now().Add(5 * time.Second)
				for {
					got := stat(c.cluster, c.stat) - before[i]
					if got >= 300 {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%s %s: %d more, want at least 300", c.cluster, c.stat, got)
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
	})

	t.Run("without a policy the model's workers share its requests", func(t *testing.T) {
		gw.publish(nil)
		takeAll()
		reqs := make([]trReq, 200)
		for i := range reqs {
			reqs[i] = trReq{client: "client-1", version: "7"}
		}
		got, _ := gw.run(t, reqs)
		if c := count(got); len(c) != 4 {
			t.Errorf("without a policy: %v, want all four workers", c)
		}
		for _, b := range all {
			for _, s := range b.take() {
				if s.version != "" || s.shadow != "" {
					t.Fatalf("%s saw %+v without a policy", b.name, s)
				}
			}
		}
	})
}
