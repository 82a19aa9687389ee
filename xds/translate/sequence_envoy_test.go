package translate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/helixflow/helixflow/envoy/envoytest"
	authzcheck "github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/xds/ir"
)

const (
	seqModel  = "simple_sequence"
	seqAPIKey = "hx_sequencetest"
)

// seqKeys accepts seqAPIKey for a client allowed every model.
type seqKeys struct{}

func (seqKeys) CheckAPIKey(_ context.Context, key string) (*authzcheck.Principal, error) {
	if key != seqAPIKey {
		return nil, authzcheck.ErrInvalidKey
	}
	return &authzcheck.Principal{ClientID: "seq-client", Plan: "free", Scopes: []string{authzcheck.ScopeInfer, authzcheck.ScopeRead}, Models: []string{authzcheck.AllModels}}, nil
}

// seqBackend stands in for a worker (gRPC and REST ports): it answers
// every inference with its own name, after checking that the gateway's
// x-helix-sequence matches the request's sequence_id, and counts anything
// else that reaches it.
type seqBackend struct {
	inference.UnimplementedGRPCInferenceServiceServer
	t                  *testing.T
	name               string
	grpcPort, httpPort uint32
	mu                 sync.Mutex
	mismatches         []string
	shm                int
	// plain: the model is published without sequence batching, so a
	// REST request reaches the worker without x-helix-sequence (authz
	// saw no body); gRPC's still has it (authz reads every unary body).
	plain bool
	// sent is closed by the test once it read generate_stream's first
	// event: the second is written only then.
	sent chan struct{}
}

func (b *seqBackend) mismatch(format string, args ...any) {
	b.mu.Lock()
	b.mismatches = append(b.mismatches, fmt.Sprintf(format, args...))
	b.mu.Unlock()
}

func (b *seqBackend) ModelInfer(ctx context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var want string
	switch p := req.GetParameters()["sequence_id"].GetParameterChoice().(type) {
	case *inference.InferParameter_Int64Param:
		want = wire.SequenceHeaderValue(uint64(p.Int64Param), "")
	case *inference.InferParameter_StringParam:
		want = wire.SequenceHeaderValue(0, p.StringParam)
	}
	if got := strings.Join(md.Get(wire.HeaderSequence), ","); got != want {
		b.mismatch("gRPC %s: %s %q, want %q", req.GetId(), wire.HeaderSequence, got, want)
	}
	return &inference.ModelInferResponse{ModelName: req.GetModelName(), Id: b.name}, nil
}

func (b *seqBackend) SystemSharedMemoryRegister(context.Context, *inference.SystemSharedMemoryRegisterRequest) (*inference.SystemSharedMemoryRegisterResponse, error) {
	b.mu.Lock()
	b.shm++
	b.mu.Unlock()
	return &inference.SystemSharedMemoryRegisterResponse{}, nil
}

func (b *seqBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/ready"):
		return
	case r.URL.Path == wire.RESTModelPath(seqModel, "", "infer"):
		// tritonclient's shape: the JSON head, then the binary tensors.
		body, _ := io.ReadAll(r.Body)
		if n, err := strconv.Atoi(r.Header.Get("Inference-Header-Content-Length")); err == nil && n <= len(body) {
			body = body[:n]
		}
		var req struct {
			ID         string         `json:"id"`
			Parameters map[string]any `json:"parameters"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var want string
		switch id := req.Parameters["sequence_id"].(type) {
		case float64:
			want = wire.SequenceHeaderValue(uint64(id), "")
		case string:
			want = wire.SequenceHeaderValue(0, id)
		}
		b.mu.Lock()
		if b.plain {
			want = ""
		}
		b.mu.Unlock()
		if got := r.Header.Get(wire.HeaderSequence); got != want {
			b.mismatch("REST %s: %s %q, want %q", req.ID, wire.HeaderSequence, got, want)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"model_name":%q,"id":%q,"outputs":[]}`, seqModel, b.name)
	case r.URL.Path == wire.RESTModelPath(seqModel, "", "generate_stream"):
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: {\"worker\":%q,\"n\":1}\n\n", b.name)
		w.(http.Flusher).Flush()
		select {
		case <-b.sent:
		case <-time.After(10 * time.Second):
		}
		fmt.Fprintf(w, "data: {\"worker\":%q,\"n\":2}\n\n", b.name)
	default:
		b.mu.Lock()
		b.shm++ // nothing else may reach a worker in this test
		b.mu.Unlock()
		http.NotFound(w, r)
	}
}

func startSeqBackend(t *testing.T, name string) *seqBackend {
	t.Helper()
	b := &seqBackend{t: t, name: name, sent: make(chan struct{})}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	inference.RegisterGRPCInferenceServiceServer(gs, b)
	hs := health.NewServer()
	hs.SetServingStatus(seqModel, healthpb.HealthCheckResponse_SERVING)
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

func (b *seqBackend) endpoint() ir.Endpoint {
	return ir.Endpoint{Address: "127.0.0.1", Port: b.grpcPort, HTTPPort: b.httpPort, Ready: true, Worker: b.name}
}

// seqGateway is a real Envoy fed the translated resources over ADS (so the
// sequence clusters really share their pool's EDS assignment), with the
// real helix-authz Check in front of two workers.
type seqGateway struct {
	t     *testing.T
	g     *ir.Gateway
	cache cachev3.SnapshotCache
	ver   int
	addr  string
	envoy *envoytest.Proc
	// plain publishes the pool without sequence batching (ir.Pool.Sequence).
	plain bool
}

func (s *seqGateway) publish(backends ...*seqBackend) {
	s.t.Helper()
	var eps []ir.Endpoint
	for _, b := range backends {
		eps = append(eps, b.endpoint())
	}
	s.g.Pools = []ir.Pool{{Model: seqModel, Endpoints: eps, Sequence: !s.plain}}
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
	if err := s.cache.SetSnapshot(context.Background(), "sequence-test", snap); err != nil {
		s.t.Fatal(err)
	}
}

// waitRoutes waits until Envoy has the pool's sequence route and twin
// cluster (sequence) or has neither (!sequence).
func (s *seqGateway) waitRoutes(t *testing.T, sequence bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		routes, err1 := s.envoy.Admin(ctx, "/config_dump?resource=dynamic_route_configs")
		clusters, err2 := s.envoy.Admin(ctx, "/clusters")
		if err1 == nil && err2 == nil &&
			strings.Contains(routes, "rest-sequence/"+seqModel) == sequence &&
			strings.Contains(clusters, HTTPSequenceCluster(seqModel)+"::") == sequence {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Envoy did not apply sequence routing %v: %v %v", sequence, err1, err2)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func startSeqGateway(t *testing.T, backends ...*seqBackend) *seqGateway {
	t.Helper()
	envoytest.Binary(t)
	// helix-authz's real Check.
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	as := grpc.NewServer()
	authzcheck.New(authzcheck.Config{APIKeys: seqKeys{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).Register(as)
	go func() { _ = as.Serve(al) }()
	t.Cleanup(as.Stop)

	// The ADS server.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &seqGateway{t: t, cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)}
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
	s.publish(backends...)

	xdsCluster, err := serviceCluster("xds", "xds", ir.Upstream{Address: "127.0.0.1", Port: uint32(xl.Addr().(*net.TCPAddr).Port)}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b := &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: "sequence-test", Cluster: "helix"},
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

	// Ready when both workers answer through Envoy (health checks passed).
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.addr+wire.RESTModelPath(seqModel, "", "ready"), nil)
		req.Header.Set(wire.HeaderAPIKey, seqAPIKey)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("Envoy did not route to the workers")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// seqID is sequence i's id: numbers for half, strings for the others.
func seqID(i int) *inference.InferParameter {
	if i%2 == 0 {
		return &inference.InferParameter{ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: int64(1000 + i)}}
	}
	return &inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: fmt.Sprintf("seq-%d-%s", i, strings.Repeat("x", i))}}
}

func grpcStep(ctx context.Context, c inference.GRPCInferenceServiceClient, i, step, steps int) (string, error) {
	req := &inference.ModelInferRequest{
		ModelName: seqModel, Id: fmt.Sprintf("%d/%d", i, step),
		Parameters: map[string]*inference.InferParameter{
			"sequence_start": {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: step == 0}},
			"sequence_end":   {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: step == steps-1}},
		},
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "INPUT", Datatype: "INT32", Shape: []int64{1, 1}}},
		RawInputContents: [][]byte{{byte(step), 0, 0, 0}},
	}
	if i >= 0 {
		req.Parameters["sequence_id"] = seqID(i)
	}
	resp, err := c.ModelInfer(ctx, req)
	return resp.GetId(), err
}

// restStep sends one step as tritonclient's HTTP client does: the JSON
// head with "parameters" after the inputs and outputs, then the binary
// tensor.
func restStep(c *http.Client, addr string, i, step, steps int) (string, error) {
	params := map[string]any{"sequence_start": step == 0, "sequence_end": step == steps-1}
	switch p := seqID(i).GetParameterChoice().(type) {
	case *inference.InferParameter_Int64Param:
		params["sequence_id"] = p.Int64Param
	case *inference.InferParameter_StringParam:
		params["sequence_id"] = p.StringParam
	}
	pj, _ := json.Marshal(params)
	head := fmt.Sprintf(`{"id":"%d/%d","inputs":[{"name":"INPUT","shape":[1,1],"datatype":"INT32","parameters":{"binary_data_size":4}}],`+
		`"outputs":[{"name":"OUTPUT","parameters":{"binary_data":true}}],"parameters":%s}`, i, step, pj)
	body := append([]byte(head), byte(step), 0, 0, 0)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+wire.RESTModelPath(seqModel, "", "infer"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(head)))
	req.Header.Set(wire.HeaderAPIKey, seqAPIKey)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return out.ID, json.Unmarshal(b, &out)
}

// runSequences runs n sequences of steps steps each, the sequences side by
// side and the steps of one in order, and returns the workers that
// served each sequence's steps.
func runSequences(t *testing.T, n, steps int, step func(i, s int) (string, error)) []map[string]int {
	t.Helper()
	served := make([]map[string]int, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		served[i] = map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range steps {
				w, err := step(i, s)
				if err != nil {
					errs <- fmt.Errorf("sequence %d step %d: %w", i, s, err)
					return
				}
				served[i][w]++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return served
}

// oneWorkerEach checks that every sequence stayed on one worker and that
// the sequences used both, and returns each sequence's worker.
func oneWorkerEach(t *testing.T, served []map[string]int, workers int) []string {
	t.Helper()
	out := make([]string, len(served))
	used := map[string]int{}
	for i, m := range served {
		if len(m) != 1 {
			t.Errorf("sequence %d was served by %v", i, m)
		}
		for w := range m {
			out[i] = w
			used[w]++
		}
	}
	if len(used) != workers {
		t.Errorf("sequences per worker %v, want all %d workers used", used, workers)
	}
	return out
}

// The real Envoy with the translated routes and clusters (over ADS) and the
// real helix-authz Check, in front of two workers: 50 sequences of 6 steps
// over gRPC and 50 of 6 over REST (tritonclient's body, the sequence_id
// after the inputs) each stay on one worker, while requests without a
// sequence spread over both. A pool published without sequence batching
// (its workers re-registered so) loses the affinity and its REST checks
// get no body, and gains both back with it. When a worker leaves the pool, its sequences
// move to the other (whose "unknown sequence" error is then what their
// next step gets from a real worker). Shared-memory
// calls are refused by helix-authz and never reach a worker, and
// generate_stream's events pass through Envoy one by one.
func TestEnvoySequenceRouting(t *testing.T) {
	a, b := startSeqBackend(t, "worker-a"), startSeqBackend(t, "worker-b")
	gw := startSeqGateway(t, a, b)

	cc, err := grpc.NewClient(gw.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	gc := inference.NewGRPCInferenceServiceClient(cc)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), wire.HeaderAPIKey, seqAPIKey), 2*time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 10 * time.Second}

	const n, steps = 50, 6
	var grpcWorkers []string
	t.Run("gRPC", func(t *testing.T) {
		grpcWorkers = oneWorkerEach(t, runSequences(t, n, steps, func(i, s int) (string, error) {
			return grpcStep(ctx, gc, i, s, steps)
		}), 2)
	})
	t.Run("REST", func(t *testing.T) {
		oneWorkerEach(t, runSequences(t, n, steps, func(i, s int) (string, error) {
			return restStep(hc, gw.addr, i, s, steps)
		}), 2)
	})
	t.Run("without a sequence requests spread", func(t *testing.T) {
		used := map[string]int{}
		for i := range 60 {
			w, err := grpcStep(ctx, gc, -1, i, 60)
			if err != nil {
				t.Fatal(err)
			}
			used[w]++
		}
		if len(used) != 2 {
			t.Errorf("requests without a sequence went to %v only: the sequence routing, not chance, keeps sequences together", used)
		}
	})

	t.Run("shared memory refused before any worker", func(t *testing.T) {
		_, err := gc.SystemSharedMemoryRegister(ctx, &inference.SystemSharedMemoryRegisterRequest{Name: "input0", Key: "/input0_simple", ByteSize: 64})
		if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != wire.SharedMemoryThroughGateway {
			t.Errorf("gRPC register: %v, want FAILED_PRECONDITION %q", err, wire.SharedMemoryThroughGateway)
		}
		for _, p := range []string{"/v2/systemsharedmemory/region/input0/register", "/v2/systemsharedmemory/status", "/v2/cudasharedmemory/unregister"} {
			req, _ := http.NewRequest(http.MethodPost, "http://"+gw.addr+p, strings.NewReader(`{"key":"/input0_simple","offset":0,"byte_size":64}`))
			req.Header.Set(wire.HeaderAPIKey, seqAPIKey)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct {
				Error string `json:"error"`
			}
			if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Error != wire.SharedMemoryThroughGateway {
				t.Errorf("REST %s: %d %s", p, resp.StatusCode, body)
			}
		}
		for _, w := range []*seqBackend{a, b} {
			w.mu.Lock()
			if w.shm != 0 {
				t.Errorf("%s was reached by %d shared-memory requests", w.name, w.shm)
			}
			w.mu.Unlock()
		}
	})

	t.Run("generate_stream is not buffered", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+gw.addr+wire.RESTModelPath(seqModel, "", "generate_stream"), strings.NewReader(`{"INPUT":[1]}`))
		req.Header.Set(wire.HeaderAPIKey, seqAPIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
		br := bufio.NewReader(resp.Body)
		first, err := br.ReadString('\n')
		if err != nil || !strings.Contains(first, `"n":1`) {
			t.Fatalf("first event %q, %v", first, err)
		}
		// The worker writes the second event only now: had Envoy buffered
		// the response, the first would not have come.
		close(a.sent)
		close(b.sent)
		rest, _ := io.ReadAll(br)
		if !strings.Contains(string(rest), `"n":2`) {
			t.Fatalf("rest of the stream %q", rest)
		}
	})

	// The pool's workers re-register without sequence batching, then with
	// it again: the sequence routes, the twins and the REST body go and
	// come back with it.
	t.Run("sequence batching off and on again", func(t *testing.T) {
		setPlain := func(plain bool) {
			for _, w := range []*seqBackend{a, b} {
				w.mu.Lock()
				w.plain = plain
				w.mu.Unlock()
			}
		}
		gw.plain = true
		gw.publish(a, b)
		gw.waitRoutes(t, false)
		setPlain(true)
		spread := 0
		for _, m := range runSequences(t, n, steps, func(i, s int) (string, error) {
			return grpcStep(ctx, gc, i, s, steps)
		}) {
			if len(m) > 1 {
				spread++
			}
		}
		if spread == 0 {
			t.Error("without sequence batching every sequence still stayed on one worker: the plain route balances")
		}
		// The REST steps reach the workers without x-helix-sequence (the
		// workers check): authz got no body to read it from.
		runSequences(t, 10, 2, func(i, s int) (string, error) { return restStep(hc, gw.addr, i, s, 2) })

		gw.plain = false
		gw.publish(a, b)
		gw.waitRoutes(t, true)
		setPlain(false)
		oneWorkerEach(t, runSequences(t, n, steps, func(i, s int) (string, error) {
			return restStep(hc, gw.addr, i, s, steps)
		}), 2)
	})

	t.Run("a worker leaves: its sequences move to the other", func(t *testing.T) {
		gw.publish(b)
		// Until Envoy applies the update, steps may still reach worker-a.
		deadline := time.Now().Add(15 * time.Second)
		for {
			w, err := grpcStep(ctx, gc, -1, 0, 1)
			if err == nil && w == b.name {
				if w, err := restStep(hc, gw.addr, 0, 1, 3); err == nil && w == b.name {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("Envoy kept routing to worker-a")
			}
			time.Sleep(100 * time.Millisecond)
		}
		after := oneWorkerEach(t, runSequences(t, n, 2, func(i, s int) (string, error) {
			return grpcStep(ctx, gc, i, s+1, steps)
		}), 1)
		for i, w := range after {
			if w != b.name {
				t.Errorf("sequence %d on %s (before: %s)", i, w, grpcWorkers[i])
			}
		}
	})

	for _, w := range []*seqBackend{a, b} {
		w.mu.Lock()
		if len(w.mismatches) > 0 {
			t.Errorf("%s: %d requests with a wrong %s, first: %s", w.name, len(w.mismatches), wire.HeaderSequence, w.mismatches[0])
		}
		w.mu.Unlock()
	}
}
