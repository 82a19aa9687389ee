package translate

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// extAuthzFilter calls helix-authz's Check for every request.
//
// The connection-manager-level config sends the first MaxRequestBytes of
// the body, partial and as raw bytes: unary gRPC calls (ModelInfer and the
// per-model metadata RPCs) carry the model name in protobuf field 1, which
// authz reads, and ModelInfer its parameters (sequence_id) in field 4.
// Routes that must not wait for a body (ModelStreamInfer, whose body never
// ends, WebSockets, generate_stream, REST paths of no pool) turn buffering
// off with extAuthzNoBody; a model's REST routes send ir.AuthZ.RESTBodyBytes
// (extAuthzRESTBody) for an inference's sequence_id. clear_route_cache makes the router match again
// after authz sets x-helix-model. Failure to reach authz denies (503).
// With replicas, a Check that could not reach one (refused, reset, or
// UNAVAILABLE as a replica shuts down) is retried on another: a crashed
// replica costs no request (make chaos measures it).
func extAuthzFilter(g *ir.Gateway) (proto.Message, error) {
	svc := grpcService(ClusterAuthZ, g.AuthZ.Timeout)
	if len(g.AuthZ.Upstream.Replicas) > 0 {
		prev, err := typed(&previoushostsv3.PreviousHostsPredicate{})
		if err != nil {
			return nil, err
		}
		svc.RetryPolicy = &corev3.RetryPolicy{
			RetryOn:    "connect-failure,refused-stream,reset,unavailable",
			NumRetries: u32(uint32(len(g.AuthZ.Upstream.Replicas))),
			RetryHostPredicate: []*corev3.RetryPolicy_RetryHostPredicate{{
				Name:       retryPreviousHosts,
				ConfigType: &corev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: prev},
			}},
			HostSelectionRetryMaxAttempts: 3,
			// A core RetryPolicy waits a jittered 0-1 s before a retry
			// unless told otherwise, which the Check's timeout (1 s by
			// default) does not leave: a replica's restart failed or
			// delayed Checks by up to 1 s (make upgrade). The route
			// retries' default instead.
			RetryBackOff: &corev3.BackoffStrategy{BaseInterval: dur(25 * time.Millisecond), MaxInterval: dur(250 * time.Millisecond)},
		}
	}
	return &extauthzv3.ExtAuthz{
		Services:            &extauthzv3.ExtAuthz_GrpcService{GrpcService: svc},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    g.AuthZ.FailureModeAllow,
		WithRequestBody: &extauthzv3.BufferSettings{
			MaxRequestBytes:     g.AuthZ.MaxRequestBytes,
			AllowPartialMessage: true,
			PackAsBytes:         true,
		},
		AllowedHeaders:  checkHeaders(),
		ClearRouteCache: true,
		StatusOnError:   &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	}, nil
}

// checkHeaders are the request headers Check reads (the credential, the
// content type, a stream's model) and the x-helix-* ones it removes: by
// default Envoy sends every header, which each Check then encodes, sends
// and decodes for nothing.
func checkHeaders() *matcherv3.ListStringMatcher {
	m := &matcherv3.ListStringMatcher{}
	for _, h := range wire.CheckHeaders {
		m.Patterns = append(m.Patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h}})
	}
	m.Patterns = append(m.Patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: wire.HeaderPrefix}})
	return m
}

// extAuthzRESTBody is the per-route override of a model's REST routes:
// the first bytes of the body, where helix-authz reads an inference's
// parameters.sequence_id. A request without a body (GET) is checked at
// once.
func extAuthzRESTBody(maxBytes uint32) (*anypb.Any, error) {
	return typed(&extauthzv3.ExtAuthzPerRoute{
		Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{
			WithRequestBody: &extauthzv3.BufferSettings{
				MaxRequestBytes:     maxBytes,
				AllowPartialMessage: true,
				PackAsBytes:         true,
			},
		}},
	})
}

// extAuthzNoBody is the per-route override that checks without the body.
func extAuthzNoBody() (*anypb.Any, error) {
	return typed(&extauthzv3.ExtAuthzPerRoute{
		Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{
			DisableRequestBodyBuffering: true,
		}},
	})
}

// grpcService is an Envoy gRPC client to a cluster.
func grpcService(cluster string, timeout time.Duration) *corev3.GrpcService {
	return &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}},
		Timeout:         dur(timeout),
	}
}
