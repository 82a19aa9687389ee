package server

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"

	"github.com/helixflow/helixflow/extauthz/oauth"
	"github.com/helixflow/helixflow/internal/telemetry"
)

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
	if !telemetry.Enabled() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler())}
}

// oauthTracing gives each OAuth2 request (token, introspection, ...) a
// server span, continued from its traceparent, so that the token
// endpoint's latency exemplars link to traces. Only with tracing on; these
// endpoints sign and hash, so the span's cost is small beside them.
func oauthTracing(h http.Handler) http.Handler {
	if !telemetry.Enabled() {
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
