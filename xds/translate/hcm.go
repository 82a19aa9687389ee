package translate

import (
	grpcstatsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_stats/v3"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/xds/ir"
)

// httpFilter is one entry of the filter chain: its Envoy name, whether the
// gateway uses it, and its connection-manager-level config. Per-route and
// per-virtual-host settings live in the feature's own file.
type httpFilter struct {
	name    string
	enabled func(*ir.Gateway) bool
	config  func(*ir.Gateway) (proto.Message, error)
}

// httpFilters is THE filter order. Why this order:
//  1. header_mutation removes every client-sent x-helix-* header, before
//     anything reads them (authz, routing);
//  2. cors answers browser preflights, which carry no credentials (cheap,
//     answered here), and adds its headers to every local reply after it,
//     so that a browser can read a 429;
//  3. local_ratelimit refuses a source address over its rate before any
//     Check is made;
//  4. ext_authz authenticates, authorizes the model, applies the client's
//     plan (helix-authz counts its rate limits in Redis, in the same Check:
//     one side call per request, no ratelimit filter) and sets x-helix-*;
//  5. grpc_stats counts each gRPC answer by its grpc-status in its
//     upstream cluster's stats (cluster.<c>.grpc.<code>, Prometheus
//     envoy_cluster_grpc_<code>): the router charges a gRPC error to
//     upstream_rq_xx as the HTTP 200 it came in, so without it a cluster's
//     gRPC errors (a rollout's canary's: xds/rollout) are nowhere. After
//     ext_authz: refused requests reach no cluster;
//  6. router, last by definition.
var httpFilters = []httpFilter{
	{filterHeaderMutation, always, stripHelixHeaders},
	{filterCORS, func(g *ir.Gateway) bool { return g.CORS != nil }, corsFilter},
	{filterSourceLimit, func(g *ir.Gateway) bool { return g.SourceLimit != nil }, sourceLimitFilter},
	{filterExtAuthz, always, extAuthzFilter},
	{filterGRPCStats, always, grpcStatsFilter},
	{filterRouter, always, routerFilter},
}

func always(*ir.Gateway) bool { return true }

// Connection manager limits that are not configurable (yet).
const (
	requestHeadersTimeout   = 10 * time.Second // slow-header clients
	connectionIdleTimeout   = time.Hour
	maxConcurrentStreams    = 1024
	initialStreamWindow     = 1 << 20 // tensors are large: 64 KiB windows throttle them
	initialConnectionWindow = 16 << 20
)

func connectionManager(g *ir.Gateway) (*hcmv3.HttpConnectionManager, error) {
	var filters []*hcmv3.HttpFilter
	for _, f := range httpFilters {
		if !f.enabled(g) {
			continue
		}
		cfg, err := f.config(g)
		if err != nil {
			return nil, err
		}
		a, err := typed(cfg)
		if err != nil {
			return nil, err
		}
		filters = append(filters, &hcmv3.HttpFilter{
			Name:       f.name,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a},
		})
	}
	logs, err := accessLogs()
	if err != nil {
		return nil, err
	}
	early, err := earlyHeaderMutations()
	if err != nil {
		return nil, err
	}
	var tracing *hcmv3.HttpConnectionManager_Tracing
	if g.Tracing != nil {
		if tracing, err = connectionTracing(g.Tracing); err != nil {
			return nil, err
		}
	}
	return &hcmv3.HttpConnectionManager{
		StatPrefix: StatPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: RouteConfigName,
		}},
		HttpFilters: filters,
		AccessLog:   logs,
		// Envoy is the edge: the peer address is the client.
		UseRemoteAddress: wrapBool(true),
		// One canonical path for routing and for helix-authz: no "..",
		// no "//", and an escaped '/' (never in a model name) is refused.
		NormalizePath:                wrapBool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST,
		StripMatchingHostPort:        true,
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			IdleTimeout: dur(connectionIdleTimeout),
			// x_helix_model must not pass for x-helix-model anywhere.
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_DROP_HEADER,
		},
		Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
			MaxConcurrentStreams:        u32(maxConcurrentStreams),
			InitialStreamWindowSize:     u32(initialStreamWindow),
			InitialConnectionWindowSize: u32(initialConnectionWindow),
		},
		StreamIdleTimeout:     dur(g.Timeouts.Idle),
		RequestHeadersTimeout: dur(requestHeadersTimeout),
		// RequestTimeout stays 0 (off): it would cut streams. Unary
		// requests are bounded per route.
		// No UpgradeConfigs: the WebSocket routes (routes.go, wsRoute)
		// allow the upgrade themselves; any other route refuses it.
		ServerName: "helixflow",
		// ext_authz's 503 when helix-authz is unreachable gets
		// helix-authz's own JSON body (localreply.go).
		LocalReplyConfig: localReplies(),
		// A client's trace context is dropped before the request's span
		// starts; with tracing on, the gateway starts the trace
		// (tracing.go).
		EarlyHeaderMutationExtensions: early,
		Tracing:                       tracing,
	}, nil
}

// grpcStatsFilter counts per status code, not per method: the method
// names would multiply every cluster's stats, and Triton's service has
// one method that matters (ModelInfer).
func grpcStatsFilter(*ir.Gateway) (proto.Message, error) {
	return &grpcstatsv3.FilterConfig{
		PerMethodStatSpecifier: &grpcstatsv3.FilterConfig_StatsForAllMethods{StatsForAllMethods: wrapBool(false)},
	}, nil
}

func routerFilter(*ir.Gateway) (proto.Message, error) {
	return &routerv3.Router{}, nil
}
