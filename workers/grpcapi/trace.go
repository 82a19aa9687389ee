package grpcapi

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/workers/infer"
)

// Server span names, as otelgrpc names them (service/method), so traces
// read the same as those of helix-authz.
const (
	spanModelInfer       = "inference.GRPCInferenceService/ModelInfer"
	spanModelStreamInfer = "inference.GRPCInferenceService/ModelStreamInfer"
)

// startSpan continues the trace context of the call's metadata (the
// gateway's traceparent) with an inference request's server span; a stream
// message gets its own span in the stream's trace. Without tracing it
// returns ctx and a no-op span and allocates nothing.
func startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if !telemetry.Enabled() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return infer.StartSpan(ctx, name, mdCarrier{ctx})
}

// mdCarrier reads the incoming metadata without copying all of it.
type mdCarrier struct{ ctx context.Context }

func (c mdCarrier) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set is not used: the worker only extracts.
func (mdCarrier) Set(string, string) {}

func (c mdCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}
