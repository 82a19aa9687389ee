package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
)

// Register implements registryv1.RegistryServer.
func (r *Registry) Register(ctx context.Context, req *registryv1.RegisterRequest) (*registryv1.RegisterResponse, error) {
	w, dropped, err := workerFromRequest(req)
	if err != nil {
		return nil, r.grpcError("Register", err)
	}
	if w.Identity, err = r.identify(ctx); err != nil {
		return nil, r.grpcError("Register", fmt.Errorf("worker_id %q: %w", w.ID, err))
	}
	lease, err := r.register(w)
	if err != nil {
		return nil, r.grpcError("Register", err)
	}
	r.log.Info("worker registered", "worker_id", w.ID, "identity", w.Identity, "address", w.Address, "grpc_port", w.GRPCPort,
		"http_port", w.HTTPPort, "pool", w.Pool, "ready", w.Ready, "models", len(w.Models))
	r.infoDropped(w.ID, dropped, slog.LevelWarn)
	return &registryv1.RegisterResponse{LeaseId: lease, LeaseTtl: durationpb.New(r.cfg.TTL)}, nil
}

// Renew implements registryv1.RegistryServer.
func (r *Registry) Renew(ctx context.Context, req *registryv1.RenewRequest) (*registryv1.RenewResponse, error) {
	if err := validLeaseID(req.GetLeaseId()); err != nil {
		return nil, r.grpcError("Renew", err)
	}
	models, dropped, err := convertModels(req.GetModels())
	if err != nil {
		return nil, r.grpcError("Renew", err)
	}
	caller, err := r.identify(ctx)
	if err != nil {
		return nil, r.grpcError("Renew", err)
	}
	id, err := r.renew(req.GetLeaseId(), caller, models, req.GetReady())
	if err != nil {
		return nil, r.grpcError("Renew", err)
	}
	r.infoDropped(id, dropped, slog.LevelDebug) // renewals repeat what Register logged
	return &registryv1.RenewResponse{LeaseTtl: durationpb.New(r.cfg.TTL)}, nil
}

// Deregister implements registryv1.RegistryServer.
func (r *Registry) Deregister(ctx context.Context, req *registryv1.DeregisterRequest) (*registryv1.DeregisterResponse, error) {
	if err := validLeaseID(req.GetLeaseId()); err != nil {
		return nil, r.grpcError("Deregister", err)
	}
	caller, err := r.identify(ctx)
	if err != nil {
		return nil, r.grpcError("Deregister", err)
	}
	id, err := r.deregister(req.GetLeaseId(), caller)
	if err != nil {
		return nil, r.grpcError("Deregister", err)
	}
	r.log.Info("worker deregistered", "worker_id", id)
	return &registryv1.DeregisterResponse{}, nil
}

func workerFromRequest(req *registryv1.RegisterRequest) (Worker, []error, error) {
	if err := validWorkerID(req.GetWorkerId()); err != nil {
		return Worker{}, nil, err
	}
	if err := validAddress(req.GetAddress()); err != nil {
		return Worker{}, nil, err
	}
	if err := validPort("grpc_port", req.GetGrpcPort(), false); err != nil {
		return Worker{}, nil, err
	}
	if err := validPort("http_port", req.GetHttpPort(), true); err != nil {
		return Worker{}, nil, err
	}
	pool, err := poolName(req.GetPool())
	if err != nil {
		return Worker{}, nil, err
	}
	models, dropped, err := convertModels(req.GetModels())
	if err != nil {
		return Worker{}, nil, err
	}
	return Worker{
		ID:       req.GetWorkerId(),
		Address:  req.GetAddress(),
		GRPCPort: req.GetGrpcPort(),
		HTTPPort: req.GetHttpPort(),
		Ready:    req.GetReady(),
		Pool:     pool,
		Models:   models,
	}, dropped, nil
}

// infoDropped logs the model infos a request carried that failed checkInfo
// (the worker still serves those models; the catalogue lists them without
// their description) and counts them.
func (r *Registry) infoDropped(workerID string, dropped []error, level slog.Level) {
	if len(dropped) == 0 {
		return
	}
	r.metrics.infoDropped(len(dropped))
	r.log.Log(context.Background(), level, "model info left out of the catalogue", "worker_id", workerID, "models", len(dropped), "first", dropped[0])
}

// identify is the caller's identity ("" without Config.Identify).
func (r *Registry) identify(ctx context.Context) (string, error) {
	if r.cfg.Identify == nil {
		return "", nil
	}
	id, err := r.cfg.Identify(ctx)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return "", err // the hook chose its own status
		}
		return "", fmt.Errorf("%w: %w", ErrDenied, err)
	}
	return id, nil
}

// grpcError maps the package's errors onto gRPC status codes; the message
// names the offending field.
func (r *Registry) grpcError(method string, err error) error {
	if s, ok := status.FromError(err); ok {
		r.log.Warn("registry request refused", "method", method, "code", s.Code(), "error", s.Message())
		return err
	}
	level := slog.LevelWarn
	code := codes.Internal
	switch {
	case errors.Is(err, ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, ErrTooMany):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrUnknownLease):
		// Routine after a lapse or a restart of helix-xds: the worker registers again.
		code, level = codes.NotFound, slog.LevelInfo
	case errors.Is(err, ErrDenied):
		code = codes.PermissionDenied
	}
	r.log.Log(context.Background(), level, "registry request refused", "method", method, "code", code, "error", err)
	return status.Error(code, err.Error())
}
