package translate

import (
	"time"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/helixflow/helixflow/xds/ir"
)

// tracingExportTimeout bounds one OTLP export call to the collector.
const tracingExportTimeout = 5 * time.Second

// clientTraceHeaders are the W3C trace context headers a client may send.
// The gateway starts every trace itself and never continues a client's:
// with W3C semantics a client's sampled flag (or, with a trace-id-ratio
// sampler, a trace id it chose) would decide sampling, so any client could
// make the gateway, helix-authz and the workers trace 100% of its requests
// (span export is the cost of tracing, and the collector's storage). It
// also means a malformed header cannot matter: it is gone before Envoy's
// tracer looks. Removed even with tracing off, so that helix-authz and the
// workers (which follow a parent's decision) never see a client's either.
var clientTraceHeaders = []string{"traceparent", "tracestate"}

// earlyHeaderMutations removes the client's trace context. It must be an
// early header mutation: the connection manager starts the request's span
// before the first HTTP filter runs, so header_mutation (httpFilters)
// would be too late.
func earlyHeaderMutations() ([]*corev3.TypedExtensionConfig, error) {
	m := &earlyv3.HeaderMutation{}
	for _, h := range clientTraceHeaders {
		m.Mutations = append(m.Mutations, &mutationv3.HeaderMutation{
			Action: &mutationv3.HeaderMutation_Remove{Remove: h},
		})
	}
	a, err := typed(m)
	if err != nil {
		return nil, err
	}
	return []*corev3.TypedExtensionConfig{{Name: earlyHeaderMutation, TypedConfig: a}}, nil
}

// connectionTracing is the connection manager's tracer: Envoy's
// OpenTelemetry tracer exporting over OTLP/gRPC to the collector cluster,
// sampling tr.Sampling of the requests (random_sampling). Envoy then
// sends a child span's traceparent with ext_authz's Check (gRPC metadata)
// and with the request to the worker, sampled or not, so that helix-authz
// and the workers (ParentBased) follow the gateway's decision.
func connectionTracing(tr *ir.Tracing) (*hcmv3.HttpConnectionManager_Tracing, error) {
	otel, err := typed(&tracev3.OpenTelemetryConfig{
		GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
				ClusterName: ClusterTracing,
			}},
			Timeout: dur(tracingExportTimeout),
		},
		ServiceName: tr.ServiceName,
	})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpConnectionManager_Tracing{
		// A client's x-client-trace-id would force a trace (Envoy's
		// default client_sampling is 100%): the gateway alone decides.
		ClientSampling:  &typev3.Percent{Value: 0},
		RandomSampling:  &typev3.Percent{Value: tr.Sampling * 100},
		OverallSampling: &typev3.Percent{Value: 100},
		Provider: &tracev3.Tracing_Http{
			Name:       tracerOpenTelemetry,
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: otel},
		},
	}, nil
}
