package grpcapi

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
)

// healthWatchInterval is how often Watch polls the service for a change.
const healthWatchInterval = time.Second

// healthServer answers grpc.health.v1.Health from the service's state rather
// than from a table someone must keep up to date:
//
//   - service "" or "inference.GRPCInferenceService": SERVING while the
//     server is ready (as Triton's own health service does);
//   - any other service name is taken as a model name: SERVING while the
//     server is ready and the model's default version is ready, NOT_FOUND
//     (SERVICE_UNKNOWN in Watch) when the service does not know the model.
//     This lets Envoy health-check each model pool with service_name = model.
type healthServer struct {
	healthpb.UnimplementedHealthServer
	svc infer.Service
	log *slog.Logger
}

var inferenceServiceName = pb.GRPCInferenceService_ServiceDesc.ServiceName

func servingStatus(ok bool) healthpb.HealthCheckResponse_ServingStatus {
	if ok {
		return healthpb.HealthCheckResponse_SERVING
	}
	return healthpb.HealthCheckResponse_NOT_SERVING
}

func (h *healthServer) status(ctx context.Context, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	if service == "" || service == inferenceServiceName {
		return servingStatus(h.svc.Ready()), nil
	}
	ready, err := h.svc.ModelReady(ctx, service, "")
	if err != nil {
		if infer.CodeOf(err) == infer.CodeNotFound {
			return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, status.Errorf(codes.NotFound, "unknown service or model %q", service)
		}
		return healthpb.HealthCheckResponse_UNKNOWN, grpcStatus(err).Err()
	}
	return servingStatus(ready && h.svc.Ready()), nil
}

// Check reports the status of the server or of one model.
func (h *healthServer) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, err := h.status(ctx, req.GetService())
	if err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// List reports the server's services and every model of the repository.
func (h *healthServer) List(ctx context.Context, _ *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	ready := h.svc.Ready()
	out := map[string]*healthpb.HealthCheckResponse{
		"":                   {Status: servingStatus(ready)},
		inferenceServiceName: {Status: servingStatus(ready)},
	}
	entries, err := h.svc.RepositoryIndex(ctx, false)
	if err != nil {
		return nil, grpcStatus(err).Err()
	}
	for _, e := range entries {
		// A model with several versions is serving if any version is ready.
		if cur, ok := out[e.Name]; ok && cur.Status == healthpb.HealthCheckResponse_SERVING {
			continue
		}
		out[e.Name] = &healthpb.HealthCheckResponse{Status: servingStatus(ready && e.State == infer.StateReady)}
	}
	return &healthpb.HealthListResponse{Statuses: out}, nil
}

// Watch sends the current status, then every change, until the client
// goes away.
func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	ctx := stream.Context()
	tick := time.NewTicker(healthWatchInterval)
	defer tick.Stop()
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		st, err := h.status(ctx, req.GetService())
		if err != nil && st != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
			h.log.DebugContext(ctx, "health watch: status check failed", "service", req.GetService(), "error", err)
			st = healthpb.HealthCheckResponse_UNKNOWN
		}
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-tick.C:
		}
	}
}
