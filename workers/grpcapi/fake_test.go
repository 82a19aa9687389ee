package grpcapi

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
)

// fakeService is an infer.Service for testing the front end alone. Its
// Infer echoes the inputs of a known model back as outputs unless inferFn
// is set, and it records the last request and repository call it saw.
type fakeService struct {
	mu      sync.Mutex
	ready   bool
	models  map[string]bool // model name → ready
	inferFn func(ctx context.Context, req *infer.Request) (*infer.Response, error)

	lastInfer  *infer.Request
	lastLoad   string
	loadOpts   infer.LoadOptions
	lastUnload string
	dependents bool
}

func newFakeService() *fakeService {
	return &fakeService{ready: true, models: map[string]bool{"simple": true, "cold": false}}
}

func (f *fakeService) setReady(ready bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready = ready
}

func (f *fakeService) lastRequest() *infer.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastInfer
}

func (f *fakeService) known(model string) error {
	if _, ok := f.models[model]; !ok {
		return infer.Errorf(infer.CodeNotFound, "Request for unknown model: '%s' is not found", model)
	}
	return nil
}

func (f *fakeService) ServerMetadata() infer.ServerMetadata {
	return infer.ServerMetadata{Name: "triton", Version: "2.0.0", Extensions: []string{"classification", "model_repository"}}
}

func (f *fakeService) Live() bool { return true }

func (f *fakeService) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeService) ModelReady(_ context.Context, model, _ string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.known(model); err != nil {
		return false, err
	}
	return f.models[model], nil
}

func (f *fakeService) ModelMetadata(_ context.Context, model, _ string) (*infer.ModelMetadata, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.known(model); err != nil {
		return nil, err
	}
	return &infer.ModelMetadata{
		Name: model, Versions: []string{"1", "3"}, Platform: "onnxruntime_onnx",
		Inputs:  []infer.TensorMetadata{{Name: "INPUT0", DataType: "INT32", Shape: []int64{-1, 16}}},
		Outputs: []infer.TensorMetadata{{Name: "OUTPUT0", DataType: "FP32", Shape: []int64{-1, 16}}},
	}, nil
}

func (f *fakeService) ModelConfig(_ context.Context, model, _ string) (*pb.ModelConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.known(model); err != nil {
		return nil, err
	}
	return &pb.ModelConfig{Name: model, MaxBatchSize: 8}, nil
}

func (f *fakeService) ModelStatistics(_ context.Context, model, version string) ([]*pb.ModelStatistics, error) {
	return []*pb.ModelStatistics{{Name: model, Version: version, InferenceCount: 7}}, nil
}

func (f *fakeService) RepositoryIndex(_ context.Context, readyOnly bool) ([]infer.IndexEntry, error) {
	entries := []infer.IndexEntry{
		{Name: "simple", Version: "1", State: infer.StateReady},
		{Name: "cold", State: infer.StateUnavailable, Reason: "unloaded"},
	}
	if readyOnly {
		return entries[:1], nil
	}
	return entries, nil
}

func (f *fakeService) LoadModel(_ context.Context, model string, opts infer.LoadOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastLoad, f.loadOpts = model, opts
	return nil
}

func (f *fakeService) UnloadModel(_ context.Context, model string, unloadDependents bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastUnload, f.dependents = model, unloadDependents
	return nil
}

func (f *fakeService) Infer(ctx context.Context, req *infer.Request) (*infer.Response, error) {
	f.mu.Lock()
	f.lastInfer = req
	fn := f.inferFn
	unknown := f.known(req.Model)
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, req)
	}
	if unknown != nil {
		return nil, unknown
	}
	return echo(req), nil
}

// echo answers with the inputs as outputs, from version "3".
func echo(req *infer.Request) *infer.Response {
	return &infer.Response{Model: req.Model, Version: "3", ID: req.ID, Outputs: req.Inputs}
}

type testClients struct {
	infer  pb.GRPCInferenceServiceClient
	health healthpb.HealthClient
}

// startServer serves svc on an in-memory listener with the given server
// options and returns clients connected to it.
func startServer(t testing.TB, svc infer.Service, opts ...grpc.ServerOption) testClients {
	t.Helper()
	return startServerOptions(t, svc, Options{}, opts...)
}

// startServerOptions is startServer with the front end's Options.
func startServerOptions(t testing.TB, svc infer.Service, o Options, opts ...grpc.ServerOption) testClients {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(opts...)
	NewServer(svc, o).Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return testClients{infer: pb.NewGRPCInferenceServiceClient(conn), health: healthpb.NewHealthClient(conn)}
}
