package httpapi

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// fakeService is an infer.Service for testing the front end alone. Its
// Infer echoes each input back as an output of the same name (only the
// requested ones when outputs are named) unless inferFn is set; it records
// what it was called with.
type fakeService struct {
	mu sync.Mutex

	live, ready bool
	models      map[string]*fakeModel
	index       []infer.IndexEntry
	stats       []*pb.ModelStatistics
	inferFn     func(*infer.Request) (*infer.Response, error)
	err         error // returned by every model call when set

	lastInfer  *infer.Request
	lastLoad   *infer.LoadOptions
	lastLoaded string
	lastUnload struct {
		model      string
		dependents bool
	}
	lastIndexReady *bool
	lastStats      [2]string
}

type fakeModel struct {
	metadata infer.ModelMetadata
	config   *pb.ModelConfig
	ready    bool
}

func newFakeService() *fakeService {
	return &fakeService{
		live:  true,
		ready: true,
		models: map[string]*fakeModel{
			"simple": {
				ready: true,
				metadata: infer.ModelMetadata{
					Name: "simple", Versions: []string{"1"}, Platform: "onnxruntime_onnx",
					Inputs:  []infer.TensorMetadata{{Name: "INPUT0", DataType: tensor.FP32, Shape: []int64{-1, 16}}},
					Outputs: []infer.TensorMetadata{{Name: "OUTPUT0", DataType: tensor.FP32, Shape: []int64{-1, 16}}},
				},
				config: &pb.ModelConfig{
					Name: "simple", Backend: "onnxruntime", MaxBatchSize: 8,
					Input:  []*pb.ModelInput{{Name: "INPUT0", DataType: pb.DataType_TYPE_FP32, Dims: []int64{-1}}},
					Output: []*pb.ModelOutput{{Name: "OUTPUT0", DataType: pb.DataType_TYPE_FP32, Dims: []int64{-1}}},
				},
			},
			"unbatched": {
				ready:    true,
				metadata: infer.ModelMetadata{Name: "unbatched", Versions: []string{"1"}},
				config: &pb.ModelConfig{
					Name:  "unbatched",
					Input: []*pb.ModelInput{{Name: "TEXT", DataType: pb.DataType_TYPE_STRING, Dims: []int64{1}}},
				},
			},
			"loading": {metadata: infer.ModelMetadata{Name: "loading"}, config: &pb.ModelConfig{Name: "loading"}},
		},
	}
}

func (f *fakeService) model(name string) (*fakeModel, error) {
	if f.err != nil {
		return nil, f.err
	}
	m, ok := f.models[name]
	if !ok {
		return nil, infer.Errorf(infer.CodeNotFound, "Request for unknown model: '%s' is not found", name)
	}
	return m, nil
}

func (f *fakeService) ServerMetadata() infer.ServerMetadata {
	return infer.ServerMetadata{Name: "helix-worker", Version: "0.1.0", Extensions: []string{"classification", "binary_tensor_data"}}
}
func (f *fakeService) Live() bool  { return f.live }
func (f *fakeService) Ready() bool { return f.ready }

func (f *fakeService) ModelReady(_ context.Context, model, _ string) (bool, error) {
	m, err := f.model(model)
	if err != nil {
		return false, err
	}
	return m.ready, nil
}

func (f *fakeService) ModelMetadata(_ context.Context, model, version string) (*infer.ModelMetadata, error) {
	m, err := f.model(model)
	if err != nil {
		return nil, err
	}
	md := m.metadata
	if version != "" {
		md.Versions = []string{version}
	}
	return &md, nil
}

func (f *fakeService) ModelConfig(_ context.Context, model, _ string) (*pb.ModelConfig, error) {
	m, err := f.model(model)
	if err != nil {
		return nil, err
	}
	return m.config, nil
}

func (f *fakeService) ModelStatistics(_ context.Context, model, version string) ([]*pb.ModelStatistics, error) {
	f.mu.Lock()
	f.lastStats = [2]string{model, version}
	f.mu.Unlock()
	if model != "" {
		if _, err := f.model(model); err != nil {
			return nil, err
		}
	}
	return f.stats, nil
}

func (f *fakeService) RepositoryIndex(_ context.Context, readyOnly bool) ([]infer.IndexEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastIndexReady = &readyOnly
	return f.index, f.err
}

func (f *fakeService) LoadModel(_ context.Context, model string, opts infer.LoadOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastLoaded, f.lastLoad = model, &opts
	return f.err
}

func (f *fakeService) UnloadModel(_ context.Context, model string, dependents bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastUnload.model, f.lastUnload.dependents = model, dependents
	return f.err
}

func (f *fakeService) Infer(_ context.Context, req *infer.Request) (*infer.Response, error) {
	f.mu.Lock()
	f.lastInfer = req
	f.mu.Unlock()
	if _, err := f.model(req.Model); err != nil {
		return nil, err
	}
	if f.inferFn != nil {
		return f.inferFn(req)
	}
	resp := &infer.Response{Model: req.Model, Version: "1", ID: req.ID}
	for _, in := range req.Inputs {
		if len(req.Outputs) > 0 && !requested(req.Outputs, in.Name) {
			continue
		}
		resp.Outputs = append(resp.Outputs, in)
	}
	return resp, nil
}

func requested(outs []infer.RequestedOutput, name string) bool {
	for _, o := range outs {
		if o.Name == name {
			return true
		}
	}
	return false
}

func (f *fakeService) inferred() *infer.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastInfer
}

// newTestServer serves a handler over fake through a real HTTP server, so
// that tests exercise net/http's framing too.
func newTestServer(t *testing.T, fake *fakeService, opts Options) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHandler(fake, opts))
	t.Cleanup(srv.Close)
	return srv
}

// quiet keeps expected request errors out of the test log.
var quiet = Options{Logger: slog.New(slog.DiscardHandler)}
