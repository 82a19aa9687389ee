// Package noop is the floor `make bench-worker` measures helix-worker
// against: a KServe v2 gRPC inference service (the worker's own protos,
// proto/inference) with no scheduler and no backend. It answers the
// metadata and config calls perf_analyzer makes at start from the models'
// config.pbtxt, read with workers/repository as helix-worker reads it, and
// ModelInfer with zeros of each requested output's datatype and shape.
// Whatever helix-worker spends beyond this server is its own: decoding,
// scheduling, the backend and encoding.
package noop

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/tensor"
)

// ServerName is what ServerMetadata reports.
const ServerName = "kservenoop"

// Server implements pb.GRPCInferenceServiceServer for the models it loaded.
// It holds no mutable state and is safe for concurrent use.
type Server struct {
	pb.UnimplementedGRPCInferenceServiceServer
	models map[string]*model
	// maxOutputBytes bounds one response's output data, so that a request
	// naming a huge batch is refused instead of allocated.
	maxOutputBytes int64
}

// model is one model's config and what ModelInfer needs of it.
type model struct {
	config   *pb.ModelConfig
	versions []string // ascending, as ModelMetadata lists them
	metadata *pb.ModelMetadataResponse
	outputs  map[string]output
}

type output struct {
	dataType tensor.DataType
	dims     []int64 // without the batch dimension
}

// Load reads the named models' config.pbtxt from the repository at root.
// Every model must declare its inputs and outputs there: with no backend,
// the server cannot complete a config from the model file as helix-worker
// does. maxOutputBytes bounds one response's output data.
func Load(root string, names []string, maxOutputBytes int64) (*Server, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("no models to serve")
	}
	if maxOutputBytes <= 0 {
		return nil, fmt.Errorf("the output limit must be positive, got %d", maxOutputBytes)
	}
	s := &Server{models: make(map[string]*model, len(names)), maxOutputBytes: maxOutputBytes}
	for _, name := range names {
		if err := repository.CheckModelName(name); err != nil {
			return nil, err
		}
		m, err := loadModel(filepath.Join(root, name), name)
		if err != nil {
			return nil, fmt.Errorf("model '%s': %w", name, err)
		}
		s.models[name] = m
	}
	return s, nil
}

func loadModel(dir, name string) (*model, error) {
	cfg, err := repository.ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	if err := repository.Normalize(cfg, name); err != nil {
		return nil, err
	}
	if len(cfg.Input) == 0 || len(cfg.Output) == 0 {
		return nil, fmt.Errorf("%w: %s declares no inputs or no outputs; the no-op server answers from it alone",
			repository.ErrInvalidConfig, filepath.Join(dir, repository.ConfigFile))
	}
	available, err := repository.Versions(dir)
	if err != nil {
		return nil, err
	}
	selected, err := repository.SelectVersions(available, cfg.VersionPolicy)
	if err != nil {
		return nil, err
	}
	if len(selected) == 0 {
		return nil, fmt.Errorf("%s has no version folder", dir)
	}
	m := &model{config: cfg, outputs: make(map[string]output, len(cfg.Output))}
	for _, v := range selected {
		m.versions = append(m.versions, strconv.FormatInt(v, 10))
	}
	md := &pb.ModelMetadataResponse{Name: name, Versions: m.versions, Platform: cfg.Platform}
	for _, in := range cfg.Input {
		dt, err := repository.TensorType(in.DataType)
		if err != nil {
			return nil, fmt.Errorf("input '%s': %w", in.Name, err)
		}
		md.Inputs = append(md.Inputs, tensorMetadata(in.Name, dt, in.Dims, cfg.MaxBatchSize))
	}
	for _, out := range cfg.Output {
		dt, err := repository.TensorType(out.DataType)
		if err != nil {
			return nil, fmt.Errorf("output '%s': %w", out.Name, err)
		}
		md.Outputs = append(md.Outputs, tensorMetadata(out.Name, dt, out.Dims, cfg.MaxBatchSize))
		m.outputs[out.Name] = output{dataType: dt, dims: out.Dims}
	}
	m.metadata = md
	return m, nil
}

// tensorMetadata is helix-worker's answer: a batching model's shapes start
// with a variable batch dimension.
func tensorMetadata(name string, dt tensor.DataType, dims []int64, maxBatch int32) *pb.ModelMetadataResponse_TensorMetadata {
	shape := dims
	if maxBatch > 0 {
		shape = append([]int64{-1}, dims...)
	}
	return &pb.ModelMetadataResponse_TensorMetadata{Name: name, Datatype: string(dt), Shape: shape}
}

// Register registers the inference service on gs.
func (s *Server) Register(gs *grpc.Server) { pb.RegisterGRPCInferenceServiceServer(gs, s) }

func (s *Server) lookup(name, version string) (*model, error) {
	m, ok := s.models[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Request for unknown model: '%s' is not found", name)
	}
	if version != "" && !slices.Contains(m.versions, version) {
		return nil, status.Errorf(codes.NotFound, "Request for unknown model: '%s' version %s is not found", name, version)
	}
	return m, nil
}

// ServerLive is always true.
func (s *Server) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

// ServerReady is always true: the models are loaded before serving.
func (s *Server) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: true}, nil
}

// ServerMetadata names the no-op server.
func (s *Server) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return &pb.ServerMetadataResponse{Name: ServerName, Version: "0"}, nil
}

// ModelReady is true for a loaded model and version, false otherwise.
func (s *Server) ModelReady(_ context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	_, err := s.lookup(req.GetName(), req.GetVersion())
	return &pb.ModelReadyResponse{Ready: err == nil}, nil
}

// ModelMetadata answers from config.pbtxt.
func (s *Server) ModelMetadata(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	m, err := s.lookup(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	return m.metadata, nil
}

// ModelConfig answers with config.pbtxt, normalized as helix-worker does.
func (s *Server) ModelConfig(_ context.Context, req *pb.ModelConfigRequest) (*pb.ModelConfigResponse, error) {
	m, err := s.lookup(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	return &pb.ModelConfigResponse{Config: m.config}, nil
}

// ModelInfer answers with zeros for each requested output (every output
// when the request names none), in raw_output_contents. It reads only what
// the outputs' shapes need: the batch size (the first input's first
// dimension, for a batching model) and, for a variable dimension (-1), the
// first input's size at the same position (1 where it has none).
func (s *Server) ModelInfer(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	m, err := s.lookup(req.GetModelName(), req.GetModelVersion())
	if err != nil {
		return nil, err
	}
	var first []int64 // the first input's shape
	if ins := req.GetInputs(); len(ins) > 0 {
		first = ins[0].GetShape()
	}
	var batch []int64
	if mb := int64(m.config.MaxBatchSize); mb > 0 {
		if len(first) == 0 || first[0] < 1 || first[0] > mb {
			return nil, status.Errorf(codes.InvalidArgument,
				"model '%s' batches: the first input's first dimension must be the batch size, 1 to %d", m.config.Name, mb)
		}
		batch = first[:1]
	}
	names := req.GetOutputs()
	resp := &pb.ModelInferResponse{
		ModelName:    m.config.Name,
		ModelVersion: m.versions[len(m.versions)-1],
		Id:           req.GetId(),
	}
	var total int64
	add := func(name string) error {
		o, ok := m.outputs[name]
		if !ok {
			return status.Errorf(codes.InvalidArgument, "unexpected inference output '%s' for model '%s'", name, m.config.Name)
		}
		shape := append(append(make([]int64, 0, len(batch)+len(o.dims)), batch...), o.dims...)
		for i, d := range shape {
			if d < 0 {
				shape[i] = 1
				if i < len(first) && first[i] >= 0 {
					shape[i] = first[i]
				}
			}
		}
		size, err := zeroBytes(o.dataType, shape)
		if err != nil || size > s.maxOutputBytes-total {
			return status.Errorf(codes.InvalidArgument, "output '%s' of model '%s' with shape %v is over the %d byte limit",
				name, m.config.Name, shape, s.maxOutputBytes)
		}
		total += size
		resp.Outputs = append(resp.Outputs, &pb.ModelInferResponse_InferOutputTensor{Name: name, Datatype: string(o.dataType), Shape: shape})
		resp.RawOutputContents = append(resp.RawOutputContents, make([]byte, size))
		return nil
	}
	if len(names) == 0 {
		for _, o := range m.config.Output {
			if err := add(o.Name); err != nil {
				return nil, err
			}
		}
		return resp, nil
	}
	for _, o := range names {
		if err := add(o.GetName()); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// zeroBytes is the size of a tensor of zeros: for BYTES, empty strings,
// each a 4-byte length of 0.
func zeroBytes(dt tensor.DataType, shape []int64) (int64, error) {
	if dt != tensor.Bytes {
		return tensor.ByteSize(dt, shape)
	}
	n, err := tensor.ElementCount(shape)
	if err != nil || n > 1<<60 {
		return 0, fmt.Errorf("shape %v: too many elements", shape)
	}
	return 4 * n, nil
}
