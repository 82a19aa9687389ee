package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"

	"github.com/helixflow/helixflow/extauthz/oauth"
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

// oauthTracing gives each OAuth2 request (token, introspection, ...) a
// server span, continued from its traceparent, so that the token
// endpoint's latency exemplars link to traces. Only with tracing on; these
// endpoints sign and hash, so the span's cost is small beside them.
func oauthTracing(h http.Handler) http.Handler {
	if !tracingOn() {
		return h
	}
	return otelhttp.NewHandler(h, "oauth", otelhttp.WithSpanNameFormatter(oauthSpanName))
}

// oauthSpanName is "<method> <endpoint path>"; other paths (404s) and
// methods share one name each, so that callers cannot mint span names.
func oauthSpanName(_ string, r *http.Request) string {
	method := r.Method
	if method != http.MethodGet && method != http.MethodPost {
		method = "HTTP"
	}
	switch p := r.URL.Path; p {
	case oauth.PathAuthorize, oauth.PathToken, oauth.PathIntrospect, oauth.PathRevoke, oauth.PathMetadata, oauth.PathJWKS:
		return method + " " + p
	}
	return method + " oauth (unknown path)"
}

// MetricsHandler serves reg's metrics, in OpenMetrics to a scraper that
// asks for it (Prometheus does): only that format carries the exemplars
// (trace ids) of the latency histograms.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
}
