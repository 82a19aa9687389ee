package grpcapi

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/wire"
	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/shm"
)

// Messages of a worker without a shared-memory registry, and of CUDA
// shared memory, which needs CUDA IPC that the cuda backend does not offer.
const (
	noSystemSharedMemory = "helix-worker does not support system shared memory; send tensors in raw_input_contents"
	noCudaSharedMemory   = "CUDA shared memory needs the cuda backend on a GPU; this worker has none. Use system shared memory or send tensors in raw_input_contents"
)

// sharedMemory is how one request may use shared memory: through reg,
// unless refused says why not (the request came through the gateway). A
// nil *sharedMemory means the path serves no shared memory at all.
type sharedMemory struct {
	reg     *shm.Registry
	refused error
}

// sharedMemory returns the request's view of the registry.
func (s *Server) sharedMemory(ctx context.Context) *sharedMemory {
	if s.shm == nil {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return &sharedMemory{reg: s.shm, refused: infer.CheckSharedMemoryClient(md.Get(wire.HeaderClient))}
}

// SystemSharedMemoryStatus lists the registered regions, or one of them.
func (s *Server) SystemSharedMemoryStatus(ctx context.Context, req *pb.SystemSharedMemoryStatusRequest) (*pb.SystemSharedMemoryStatusResponse, error) {
	if s.shm == nil {
		if req.GetName() != "" {
			return nil, status.Errorf(codes.NotFound, "Unable to find system shared memory region: '%s'", req.GetName())
		}
		return &pb.SystemSharedMemoryStatusResponse{}, nil
	}
	regions, err := s.shm.Status(req.GetName())
	if err != nil {
		return nil, s.fail(ctx, "SystemSharedMemoryStatus", err)
	}
	out := &pb.SystemSharedMemoryStatusResponse{Regions: make(map[string]*pb.SystemSharedMemoryStatusResponse_RegionStatus, len(regions))}
	for _, r := range regions {
		out.Regions[r.Name] = &pb.SystemSharedMemoryStatusResponse_RegionStatus{Name: r.Name, Key: r.Key, Offset: r.Offset, ByteSize: r.ByteSize}
	}
	return out, nil
}

// SystemSharedMemoryRegister registers a region of a shared-memory object
// on the worker's host.
func (s *Server) SystemSharedMemoryRegister(ctx context.Context, req *pb.SystemSharedMemoryRegisterRequest) (*pb.SystemSharedMemoryRegisterResponse, error) {
	sm := s.sharedMemory(ctx)
	if sm == nil {
		return nil, status.Error(codes.Unimplemented, noSystemSharedMemory)
	}
	if sm.refused != nil {
		return nil, s.fail(ctx, "SystemSharedMemoryRegister", sm.refused)
	}
	if err := sm.reg.Register(req.GetName(), req.GetKey(), req.GetOffset(), req.GetByteSize()); err != nil {
		return nil, s.fail(ctx, "SystemSharedMemoryRegister", err)
	}
	return &pb.SystemSharedMemoryRegisterResponse{}, nil
}

// SystemSharedMemoryUnregister unregisters a region, or all of them when
// the name is empty; an unknown name is not an error, as in Triton.
func (s *Server) SystemSharedMemoryUnregister(ctx context.Context, req *pb.SystemSharedMemoryUnregisterRequest) (*pb.SystemSharedMemoryUnregisterResponse, error) {
	if s.shm != nil {
		s.shm.Unregister(req.GetName())
	}
	return &pb.SystemSharedMemoryUnregisterResponse{}, nil
}

// CudaSharedMemoryStatus lists no regions, since none can be registered.
func (s *Server) CudaSharedMemoryStatus(_ context.Context, req *pb.CudaSharedMemoryStatusRequest) (*pb.CudaSharedMemoryStatusResponse, error) {
	if req.GetName() != "" {
		return nil, status.Errorf(codes.NotFound, "Unable to find cuda shared memory region: '%s'", req.GetName())
	}
	return &pb.CudaSharedMemoryStatusResponse{}, nil
}

// CudaSharedMemoryRegister is refused: it needs CUDA IPC.
func (s *Server) CudaSharedMemoryRegister(ctx context.Context, _ *pb.CudaSharedMemoryRegisterRequest) (*pb.CudaSharedMemoryRegisterResponse, error) {
	if sm := s.sharedMemory(ctx); sm != nil && sm.refused != nil {
		return nil, s.fail(ctx, "CudaSharedMemoryRegister", sm.refused)
	}
	return nil, status.Error(codes.Unimplemented, noCudaSharedMemory)
}

// CudaSharedMemoryUnregister succeeds, as Triton's does for regions that
// are not registered: clients call it to clean up before they start.
func (s *Server) CudaSharedMemoryUnregister(context.Context, *pb.CudaSharedMemoryUnregisterRequest) (*pb.CudaSharedMemoryUnregisterResponse, error) {
	return &pb.CudaSharedMemoryUnregisterResponse{}, nil
}

// tensorRef reads a tensor's shared-memory parameters; ok is false when it
// has none.
func tensorRef(what string, params map[string]*pb.InferParameter) (shm.Ref, bool, error) {
	region, size, offset := params[shm.ParamRegion], params[shm.ParamByteSize], params[shm.ParamOffset]
	if region == nil && size == nil && offset == nil {
		return shm.Ref{}, false, nil
	}
	return shm.ParseRef(what, anyParam(region), anyParam(size), anyParam(offset))
}

// anyParam is p's value as a Go value; nil when p is absent.
func anyParam(p *pb.InferParameter) any {
	switch v := p.GetParameterChoice().(type) {
	case *pb.InferParameter_BoolParam:
		return v.BoolParam
	case *pb.InferParameter_Int64Param:
		return v.Int64Param
	case *pb.InferParameter_Uint64Param:
		return v.Uint64Param
	case *pb.InferParameter_StringParam:
		return v.StringParam
	case *pb.InferParameter_DoubleParam:
		return v.DoubleParam
	}
	if p != nil {
		return false // a parameter with no value: refused as the wrong type
	}
	return nil
}

// input reads an input's data from its region.
func (sm *sharedMemory) input(model, name string, ref shm.Ref) ([]byte, error) {
	switch {
	case sm == nil:
		return nil, infer.Errorf(infer.CodeUnimplemented,
			"input '%s' for model '%s' uses shared memory, which this endpoint does not support; send tensors in raw_input_contents", name, model)
	case sm.refused != nil:
		return nil, sm.refused
	}
	b, err := sm.reg.ReadInput(name, ref)
	if err != nil {
		return nil, infer.Errorf(infer.CodeInvalidArgument, "model '%s': %w", model, err)
	}
	return b, nil
}

// output binds an output to its region.
func (sm *sharedMemory) output(model, name string, ref shm.Ref) (*shm.Output, error) {
	switch {
	case sm == nil:
		return nil, infer.Errorf(infer.CodeUnimplemented,
			"output '%s' for model '%s' asks for shared memory, which this endpoint does not support; outputs come back in raw_output_contents", name, model)
	case sm.refused != nil:
		return nil, sm.refused
	}
	o, err := sm.reg.BindOutput(name, ref)
	if err != nil {
		return nil, infer.Errorf(infer.CodeInvalidArgument, "model '%s': %w", model, err)
	}
	return o, nil
}
