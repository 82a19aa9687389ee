package translate

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// rateLimitFilter calls the ratelimit service with the descriptors of
// rateLimitActions. Over the limit: HTTP 429, and RESOURCE_EXHAUSTED for
// gRPC (Envoy would say UNAVAILABLE), with x-ratelimit-* headers. When the
// service is down the request passes unless FailureModeDeny (then 503,
// gRPC UNAVAILABLE: the client may retry; Envoy's default is a 500); it
// has already passed ext_authz either way.
func rateLimitFilter(g *ir.Gateway) (proto.Message, error) {
	rl := g.RateLimit
	return &ratelimitv3.RateLimit{
		Domain:          rl.Domain,
		Timeout:         dur(rl.Timeout),
		FailureModeDeny: rl.FailureModeDeny,
		RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{
			GrpcService:         grpcService(ClusterRateLimit, rl.Timeout),
			TransportApiVersion: corev3.ApiVersion_V3,
		},
		RateLimitedAsResourceExhausted: true,
		EnableXRatelimitHeaders:        ratelimitv3.RateLimit_DRAFT_VERSION_03,
		StatusOnError:                  &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	}, nil
}

// rateLimitActions are set on the virtual host: one descriptor per window,
// each (window, [plan,] client[, model]). helix-authz sets client on every
// allowed request (no client: no descriptor, but then authz denied it);
// plan is absent for a client without a plan, model when the request names
// none, and the descriptor is still sent so the ratelimit config can hold
// a limit for those shapes too.
func rateLimitActions(g *ir.Gateway) []*routev3.RateLimit {
	if g.RateLimit == nil {
		return nil
	}
	var out []*routev3.RateLimit
	for _, window := range []string{WindowSecond, WindowMinute} {
		out = append(out, &routev3.RateLimit{Actions: []*routev3.RateLimit_Action{
			{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{GenericKey: &routev3.RateLimit_Action_GenericKey{
				DescriptorKey: DescriptorWindow, DescriptorValue: window,
			}}},
			headerDescriptor(wire.HeaderPlan, DescriptorPlan, true),
			headerDescriptor(wire.HeaderClient, DescriptorClient, false),
			headerDescriptor(wire.HeaderModel, DescriptorModel, true),
		}})
	}
	return out
}

func headerDescriptor(header, key string, skipIfAbsent bool) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{
		RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{
			HeaderName: header, DescriptorKey: key, SkipIfAbsent: skipIfAbsent,
		},
	}}
}

// grpcService is an Envoy gRPC client to a cluster.
func grpcService(cluster string, timeout time.Duration) *corev3.GrpcService {
	return &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}},
		Timeout:         dur(timeout),
	}
}
