// Package grpcapi is the worker's KServe v2 gRPC front end: it serves
// inference.GRPCInferenceService as Triton does, so tritonclient and
// perf_analyzer work unchanged, and translates every call to infer.Service.
// It also serves grpc.health.v1.Health (see health.go).
package grpcapi

import (
	"context"
	"log/slog"
	"math"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/shm"
)

// Options configures a Server.
type Options struct {
	// Logger receives failed calls; nil discards logs.
	Logger *slog.Logger
	// Usage, when set, counts every inference request (unary and stream)
	// that carries wire.HeaderClient (see infer.RecordUsage).
	Usage *usage.Aggregator
	// Limiter, when set, counts every ModelStreamInfer message that came
	// through the gateway against its client's plan (stream.go); nil: a
	// stream's messages are not counted (Check counted none of them).
	Limiter infer.MessageLimiter
	// LimitRecheck is how often an idle stream's credential is asked about
	// again (Spend of 0), which bounds how long a revoked client's stream
	// stays open; 0 means 10s.
	LimitRecheck time.Duration
	// SharedMemory, when set, serves Triton's system shared memory
	// extension from this registry (share one with the HTTP front end, as
	// Triton does); nil: registration is UNIMPLEMENTED and the status lists
	// no regions.
	SharedMemory *shm.Registry
}

// Server implements pb.GRPCInferenceServiceServer on top of an infer.Service.
type Server struct {
	pb.UnimplementedGRPCInferenceServiceServer
	svc     infer.Service
	log     *slog.Logger
	usage   *usage.Aggregator
	limiter infer.MessageLimiter
	recheck time.Duration
	shm     *shm.Registry
}

// NewServer returns a front end for svc.
func NewServer(svc infer.Service, opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	recheck := opts.LimitRecheck
	if recheck <= 0 {
		recheck = 10 * time.Second
	}
	return &Server{svc: svc, log: log, usage: opts.Usage, limiter: opts.Limiter, recheck: recheck, shm: opts.SharedMemory}
}

// Register registers the inference service and the gRPC health service on s.
func (s *Server) Register(gs *grpc.Server) {
	pb.RegisterGRPCInferenceServiceServer(gs, s)
	healthpb.RegisterHealthServer(gs, &healthServer{svc: s.svc, log: s.log})
}

// ServerOptions returns the grpc.Server options the worker needs:
// message size limits (maxMessageBytes <= 0 means Triton's default, 2 GiB-1,
// as tritonclient also uses) and a keepalive policy that tolerates clients
// pinging every 10s, also between calls, instead of closing them with
// "too_many_pings".
func ServerOptions(maxMessageBytes int) []grpc.ServerOption {
	if maxMessageBytes <= 0 {
		maxMessageBytes = math.MaxInt32
	}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.MaxSendMsgSize(maxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    2 * time.Hour, // Triton's keepalive_time_ms default
			Timeout: 20 * time.Second,
		}),
	}
}

// fail logs a failed call and returns its gRPC status error.
func (s *Server) fail(ctx context.Context, rpc string, err error) error {
	st := grpcStatus(err)
	s.logFailure(ctx, rpc, st)
	return st.Err()
}

// logFailure logs client mistakes at debug level and server faults at error
// level, so a misbehaving client cannot flood the logs.
func (s *Server) logFailure(ctx context.Context, rpc string, st *status.Status) {
	level := slog.LevelDebug
	if st.Code() == codes.Internal || st.Code() == codes.Unknown {
		level = slog.LevelError
	}
	s.log.Log(ctx, level, "grpc call failed", "rpc", rpc, "code", st.Code().String(), "error", st.Message())
}

// ServerLive reports whether the process is live.
func (s *Server) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: s.svc.Live()}, nil
}

// ServerReady reports whether the server is ready for inference.
func (s *Server) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: s.svc.Ready()}, nil
}

// ModelReady reports whether a model version is ready.
func (s *Server) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	if err := checkGatewayModel(ctx, req.GetName()); err != nil {
		return nil, s.fail(ctx, "ModelReady", err)
	}
	ready, err := s.svc.ModelReady(ctx, req.GetName(), req.GetVersion())
	if err != nil {
		return nil, s.fail(ctx, "ModelReady", err)
	}
	return &pb.ModelReadyResponse{Ready: ready}, nil
}

// ServerMetadata returns the server's name, version and extensions.
func (s *Server) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	md := s.svc.ServerMetadata()
	return &pb.ServerMetadataResponse{Name: md.Name, Version: md.Version, Extensions: md.Extensions}, nil
}

// ModelMetadata returns a model's versions, platform and IO.
func (s *Server) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	if err := checkGatewayModel(ctx, req.GetName()); err != nil {
		return nil, s.fail(ctx, "ModelMetadata", err)
	}
	md, err := s.svc.ModelMetadata(ctx, req.GetName(), req.GetVersion())
	if err != nil {
		return nil, s.fail(ctx, "ModelMetadata", err)
	}
	return &pb.ModelMetadataResponse{
		Name:     md.Name,
		Versions: md.Versions,
		Platform: md.Platform,
		Inputs:   tensorMetadata(md.Inputs),
		Outputs:  tensorMetadata(md.Outputs),
	}, nil
}

func tensorMetadata(ts []infer.TensorMetadata) []*pb.ModelMetadataResponse_TensorMetadata {
	out := make([]*pb.ModelMetadataResponse_TensorMetadata, len(ts))
	for i, t := range ts {
		out[i] = &pb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: string(t.DataType), Shape: t.Shape}
	}
	return out
}

// ModelInfer runs one inference request.
func (s *Server) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	ctx, span := startSpan(ctx, spanModelInfer)
	defer span.End()
	resp, err := s.infer(ctx, req)
	if err != nil {
		infer.SpanError(span, err)
		return nil, s.fail(ctx, "ModelInfer", err)
	}
	return resp, nil
}

// infer decodes, runs and encodes one request, counting its usage
// (never a shadow copy's: infer.Routing); shared by both infer RPCs.
func (s *Server) infer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	authorized := metadata.ValueFromIncomingContext(ctx, wire.HeaderModel)
	rt, err := routingOf(ctx)
	if err != nil {
		return nil, err
	}
	var client string
	if s.usage != nil && !rt.Shadow {
		if c := metadata.ValueFromIncomingContext(ctx, wire.HeaderClient); len(c) == 1 {
			client = c[0]
		}
	}
	if client == "" {
		resp, _, err := s.run(ctx, authorized, rt, req)
		return resp, err
	}
	start := time.Now()
	resp, ireq, err := s.run(ctx, authorized, rt, req)
	infer.RecordUsage(s.usage, client, authorized, req.GetModelName(), ireq, err != nil, start)
	return resp, err
}

// run decodes, runs and encodes one request, of the version rt chose
// when it names none; ireq is nil when decoding failed.
func (s *Server) run(ctx context.Context, authorized []string, rt infer.Routing, req *pb.ModelInferRequest) (_ *pb.ModelInferResponse, ireq *infer.Request, _ error) {
	if err := infer.CheckGatewayModel(authorized, req.GetModelName()); err != nil {
		return nil, nil, err
	}
	infer.SetModel(ctx, req.GetModelName())
	ireq, shmOut, err := decodeRequest(req, s.sharedMemory(ctx))
	if err != nil {
		return nil, nil, err
	}
	ireq.Version = rt.VersionFor(ireq.Version)
	defer shmOut.Release()
	iresp, err := s.svc.Infer(ctx, ireq)
	if err != nil {
		return nil, ireq, err
	}
	// The span covers building the response message; gRPC marshals it
	// after the handler returns.
	t := infer.EncodeStart(ctx)
	resp, err := encodeResponse(ireq, iresp, shmOut)
	infer.EncodeDone(ctx, t)
	return resp, ireq, err
}

// ModelConfig returns a model's configuration.
func (s *Server) ModelConfig(ctx context.Context, req *pb.ModelConfigRequest) (*pb.ModelConfigResponse, error) {
	if err := checkGatewayModel(ctx, req.GetName()); err != nil {
		return nil, s.fail(ctx, "ModelConfig", err)
	}
	cfg, err := s.svc.ModelConfig(ctx, req.GetName(), req.GetVersion())
	if err != nil {
		return nil, s.fail(ctx, "ModelConfig", err)
	}
	return &pb.ModelConfigResponse{Config: cfg}, nil
}

// ModelStatistics returns statistics for one model or all of them.
func (s *Server) ModelStatistics(ctx context.Context, req *pb.ModelStatisticsRequest) (*pb.ModelStatisticsResponse, error) {
	if err := checkGatewayModel(ctx, req.GetName()); err != nil {
		return nil, s.fail(ctx, "ModelStatistics", err)
	}
	stats, err := s.svc.ModelStatistics(ctx, req.GetName(), req.GetVersion())
	if err != nil {
		return nil, s.fail(ctx, "ModelStatistics", err)
	}
	return &pb.ModelStatisticsResponse{ModelStats: stats}, nil
}

// errRepositoryName is Triton's answer to a named repository: the worker
// serves one repository, addressed without a name.
var errRepositoryName = infer.Errorf(infer.CodeUnimplemented, "'repository_name' specification is not supported")

// RepositoryIndex lists the models of the repository.
func (s *Server) RepositoryIndex(ctx context.Context, req *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
	if req.GetRepositoryName() != "" {
		return nil, s.fail(ctx, "RepositoryIndex", errRepositoryName)
	}
	entries, err := s.svc.RepositoryIndex(ctx, req.GetReady())
	if err != nil {
		return nil, s.fail(ctx, "RepositoryIndex", err)
	}
	out := &pb.RepositoryIndexResponse{Models: make([]*pb.RepositoryIndexResponse_ModelIndex, len(entries))}
	for i, e := range entries {
		out.Models[i] = &pb.RepositoryIndexResponse_ModelIndex{Name: e.Name, Version: e.Version, State: string(e.State), Reason: e.Reason}
	}
	return out, nil
}

// RepositoryModelLoad loads or reloads a model, with Triton's optional
// "config" (JSON) and "file:<version>/<name>" (bytes) overrides.
func (s *Server) RepositoryModelLoad(ctx context.Context, req *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error) {
	if req.GetRepositoryName() != "" {
		return nil, s.fail(ctx, "RepositoryModelLoad", errRepositoryName)
	}
	opts, err := loadOptions(req.GetParameters())
	if err != nil {
		return nil, s.fail(ctx, "RepositoryModelLoad", err)
	}
	if err := s.svc.LoadModel(ctx, req.GetModelName(), opts); err != nil {
		return nil, s.fail(ctx, "RepositoryModelLoad", err)
	}
	return &pb.RepositoryModelLoadResponse{}, nil
}

func loadOptions(params map[string]*pb.ModelRepositoryParameter) (infer.LoadOptions, error) {
	var opts infer.LoadOptions
	for key, p := range params {
		switch {
		case key == "config":
			v, ok := p.GetParameterChoice().(*pb.ModelRepositoryParameter_StringParam)
			if !ok {
				return opts, invalidf("invalid value type for load parameter '%s', expected string_param.", key)
			}
			opts.ConfigJSON = v.StringParam
		case strings.HasPrefix(key, "file:"):
			v, ok := p.GetParameterChoice().(*pb.ModelRepositoryParameter_BytesParam)
			if !ok {
				return opts, invalidf("invalid value type for load parameter '%s', expected bytes_param.", key)
			}
			if opts.Files == nil {
				opts.Files = make(map[string][]byte)
			}
			opts.Files[key] = v.BytesParam
		default:
			return opts, invalidf("unrecognized load parameter '%s'.", key)
		}
	}
	return opts, nil
}

// RepositoryModelUnload unloads a model, and its dependents when the
// "unload_dependents" parameter is true.
func (s *Server) RepositoryModelUnload(ctx context.Context, req *pb.RepositoryModelUnloadRequest) (*pb.RepositoryModelUnloadResponse, error) {
	if req.GetRepositoryName() != "" {
		return nil, s.fail(ctx, "RepositoryModelUnload", errRepositoryName)
	}
	var dependents bool
	if p, ok := req.GetParameters()["unload_dependents"]; ok {
		v, ok := p.GetParameterChoice().(*pb.ModelRepositoryParameter_BoolParam)
		if !ok {
			return nil, s.fail(ctx, "RepositoryModelUnload", invalidf("invalid value type for 'unload_dependents' parameter, expected bool_param."))
		}
		dependents = v.BoolParam
	}
	if err := s.svc.UnloadModel(ctx, req.GetModelName(), dependents); err != nil {
		return nil, s.fail(ctx, "RepositoryModelUnload", err)
	}
	return &pb.RepositoryModelUnloadResponse{}, nil
}

// TraceSetting is not supported.
func (s *Server) TraceSetting(context.Context, *pb.TraceSettingRequest) (*pb.TraceSettingResponse, error) {
	return nil, status.Error(codes.Unimplemented, "helix-worker does not support trace settings")
}

// LogSettings is not supported.
func (s *Server) LogSettings(context.Context, *pb.LogSettingsRequest) (*pb.LogSettingsResponse, error) {
	return nil, status.Error(codes.Unimplemented, "helix-worker does not support log settings")
}
