package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
)

// tracingOn reports whether telemetry.Setup installed an exporting tracer
// provider (--otlp-endpoint set). Setup runs first in main, before any
// listener is built.
func tracingOn() bool {
	_, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	return ok
}

// grpcTracing is the gRPC listener's server span per call, continued from
// the traceparent in the call's metadata (Envoy sends its ext_authz span's;
// a malformed one is ignored and a new root started, sampled at
// --trace-root-sample-ratio). Check adds its decision to that span
// (extauthz/check). A stats handler sees calls before and after the codec,
// so vtcodec is unaffected. Only with tracing on: even with a no-op tracer
// a stats handler costs every call allocations (gRPC builds its stats
// events, otelgrpc parses the method and reads the metadata), and Check is
// the hot path.
func grpcTracing() []grpc.ServerOption {
	if !tracingOn() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler())}
}

// MetricsHandler serves reg's metrics, in OpenMetrics to a scraper that
// asks for it (Prometheus does): only that format carries the exemplars
// (trace ids) of the latency histograms.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
}
