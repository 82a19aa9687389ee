package translate

import (
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// routes builds the one route configuration. Order of the routes, first
// match wins:
//
//  0. with ir.AuthZ.Public: helix-authz's public paths (publicroutes.go),
//     without ext_authz;
//  1. per model m: gRPC ModelStreamInfer with x-helix-model == m -> m's
//     gRPC cluster, and
//  2. gRPC ModelStreamInfer -> default pool; both without body buffering
//     for authz, stream timeout (0: none), no retries. authz cannot read a
//     stream's messages: it sets x-helix-model only when the client named
//     the model in the helix-model header (and the worker then refuses
//     messages for another model); every stream first matches route 2.
//     A stream is not routed per message: all its sequences stay on the
//     worker the stream reached.
//  3. per sequence model m (ir.Pool.Sequence): gRPC ModelInfer with
//     x-helix-model == m and
//     x-helix-sequence (a Triton sequence's step) -> m's gRPC sequence
//     cluster (GRPCSequenceCluster: Maglev on x-helix-sequence, so every
//     step of a sequence reaches the same worker), no retries: a step
//     changes the sequence's state, and another worker does not know it.
//  4. per model m: gRPC with x-helix-model == m -> m's gRPC cluster. The
//     headers exist only after ext_authz set them and cleared the route
//     cache; before that the request matches route 11, whose (absent)
//     per-route config leaves body buffering on so authz sees the model
//     and the parameters (sequence_id).
//  5. per model m: the WebSocket path /v2/models/{m}[/versions/{v}]/infer/ws
//     -> m's REST cluster (HTTP/1.1), and
//  6. any other model's WebSocket path -> default pool's REST cluster; both
//     the only routes that allow the upgrade (route-level upgrade_configs;
//     the connection manager allows none), no route timeout (a stream),
//     the idle timeout, no retries. Before route 10, whose prefix they are
//     under.
//  7. per model m: Triton's generate_stream path
//     /v2/models/{m}[/versions/{v}]/generate_stream -> m's REST cluster,
//     and
//  8. any other model's generate_stream path -> default pool's REST
//     cluster; both answered as server-sent events: the stream timeout
//     (0: none) and the idle timeout instead of the request timeout, no
//     retries, no body buffering. Envoy passes each event on as it comes
//     (no filter buffers responses).
//  9. per sequence model m: REST /v2/models/{m} and below with
//     x-helix-sequence
//     (set by authz after route 10's check) -> m's REST sequence cluster,
//     as route 3.
//  10. per model m: REST /v2/models/{m} and below (versions included) ->
//     m's REST cluster. For a sequence model its check gets the first
//     ir.AuthZ.RESTBodyBytes of the body, where authz reads an
//     inference's parameters.sequence_id; for any other model none (authz
//     needs only the path, and the request is not held back for it).
//  11. any other gRPC method (server metadata and health, shared memory,
//     a model without a pool) -> default pool, where a worker answers as
//     Triton would (authz refuses shared memory before).
//  12. any other /v2 path -> default pool's REST cluster.
//
// A model without sequence batching has no routes 3 and 9 and no sequence
// clusters: a request that carries a sequence_id anyway takes the model's
// plain route (on gRPC authz still sets x-helix-sequence; route 4 matches)
// and the worker answers it as for any request to that model.
//
// A model with a traffic policy (ir.Pool.Traffic) has each of its routes
// 1, 4, 5, 7 and 10 replaced, in place, by the policy's routes
// (trafficRoutes in traffic.go: variant overrides, named versions, other
// versions, the weighted split; a shadow mirrored on 4 and 10).
//
// Everything else gets Envoy's 404. Unary routes have the request timeout
// (Envoy's 15s default is replaced) and the retry policy but for the
// sequence routes. An upgrade on any route but 5 and 6 is refused by
// Envoy (403) before any Check.
func routes(g *ir.Gateway) ([]types.Resource, error) {
	b, err := newRouteBuilder(g)
	if err != nil {
		return nil, err
	}
	public, err := publicRoutes(g)
	if err != nil {
		return nil, err
	}
	rs := make([]*routev3.Route, 0, len(public)+7*len(g.Pools)+5) // at most, without policies
	rs = append(rs, public...)
	// model adds p's route r, or with a traffic policy the routes that
	// replace it (traffic.go).
	model := func(p *ir.Pool, r *routev3.Route, k routeKind) {
		if p.Traffic == nil {
			rs = append(rs, r)
			return
		}
		rs = append(rs, b.trafficRoutes(p, r, k)...)
	}
	for i := range g.Pools {
		model(&g.Pools[i], b.streamRoute(g.Pools[i].Model), routeKind{})
	}
	rs = append(rs, b.streamRoute(""))
	for _, p := range g.Pools {
		if p.Sequence {
			rs = append(rs, b.grpcSequenceRoute(p.Model))
		}
	}
	for i := range g.Pools {
		model(&g.Pools[i], b.grpcModelRoute(g.Pools[i].Model), routeKind{mirror: true})
	}
	for i := range g.Pools {
		model(&g.Pools[i], b.wsRoute(g.Pools[i].Model), routeKind{rest: true})
	}
	rs = append(rs, b.wsRoute(""))
	for i := range g.Pools {
		model(&g.Pools[i], b.sseRoute(g.Pools[i].Model), routeKind{rest: true})
	}
	rs = append(rs, b.sseRoute(""))
	for _, p := range g.Pools {
		if p.Sequence {
			rs = append(rs, b.restSequenceRoute(p.Model))
		}
	}
	for i := range g.Pools {
		model(&g.Pools[i], b.restModelRoute(g.Pools[i]), routeKind{rest: true, mirror: true})
	}
	rs = append(rs, b.grpcDefaultRoute(), b.restDefaultRoute())

	vh := &routev3.VirtualHost{
		Name:    VirtualHostName,
		Domains: []string{"*"},
		Routes:  rs,
	}
	cors, err := corsPolicy(g)
	if err != nil {
		return nil, err
	}
	if cors != nil {
		vh.TypedPerFilterConfig = map[string]*anypb.Any{filterCORS: cors}
	}
	rc := &routev3.RouteConfiguration{
		Name:         RouteConfigName,
		VirtualHosts: []*routev3.VirtualHost{vh},
	}
	if err := check("route configuration", rc.Name, rc); err != nil {
		return nil, err
	}
	return []types.Resource{rc}, nil
}

// routeBuilder holds the parts shared by every route, built once.
type routeBuilder struct {
	g        *ir.Gateway
	noBody   map[string]*anypb.Any
	restBody map[string]*anypb.Any
	retry    *routev3.RetryPolicy
	// bySequence hashes wire.HeaderSequence (the sequence routes).
	bySequence []*routev3.RouteAction_HashPolicy
	// hasSequence matches a request authz gave wire.HeaderSequence.
	hasSequence *routev3.HeaderMatcher
}

func newRouteBuilder(g *ir.Gateway) (*routeBuilder, error) {
	noBody, err := extAuthzNoBody()
	if err != nil {
		return nil, err
	}
	restBody, err := extAuthzRESTBody(g.AuthZ.RESTBodyBytes)
	if err != nil {
		return nil, err
	}
	retry, err := retryPolicy(g.Retry)
	if err != nil {
		return nil, err
	}
	return &routeBuilder{
		g: g, retry: retry,
		noBody:   map[string]*anypb.Any{filterExtAuthz: noBody},
		restBody: map[string]*anypb.Any{filterExtAuthz: restBody},
		bySequence: []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: wire.HeaderSequence},
		}}},
		hasSequence: &routev3.HeaderMatcher{
			Name:                 wire.HeaderSequence,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true},
		},
	}, nil
}

// streamRoute is model's ModelStreamInfer route, or with model "" the
// default pool's.
func (b *routeBuilder) streamRoute(model string) *routev3.Route {
	r := &routev3.Route{
		Name: "grpc-stream",
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Path{Path: wire.GRPCModelStreamInfer},
			Grpc:          &routev3.RouteMatch_GrpcRouteMatchOptions{},
		},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterDefaultGRPC},
			Timeout:          dur(b.g.Timeouts.Stream), // 0: none
			IdleTimeout:      dur(b.g.Timeouts.Idle),
		}},
		TypedPerFilterConfig: b.noBody,
	}
	if model != "" {
		r.Name = "grpc-stream/" + model
		r.Match.Headers = []*routev3.HeaderMatcher{modelHeader(model)}
		r.GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: GRPCCluster(model)}
	}
	return r
}

// modelHeader matches the x-helix-model that helix-authz set.
func modelHeader(model string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name: wire.HeaderModel,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: model},
		}},
	}
}

func (b *routeBuilder) grpcModelRoute(model string) *routev3.Route {
	return &routev3.Route{
		Name: "grpc-model/" + model,
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: wire.GRPCServicePrefix},
			Headers:       []*routev3.HeaderMatcher{modelHeader(model)},
			Grpc:          &routev3.RouteMatch_GrpcRouteMatchOptions{},
		},
		Action: &routev3.Route_Route{Route: b.unaryGRPC(GRPCCluster(model))},
	}
}

// grpcSequenceRoute sends model's ModelInfer calls that belong to a
// sequence to its consistent-hash cluster, without retries.
func (b *routeBuilder) grpcSequenceRoute(model string) *routev3.Route {
	a := b.unaryGRPC(GRPCSequenceCluster(model))
	a.RetryPolicy, a.HashPolicy = nil, b.bySequence
	return &routev3.Route{
		Name: "grpc-sequence/" + model,
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Path{Path: wire.GRPCModelInfer},
			Headers:       []*routev3.HeaderMatcher{modelHeader(model), b.hasSequence},
			Grpc:          &routev3.RouteMatch_GrpcRouteMatchOptions{},
		},
		Action: &routev3.Route_Route{Route: a},
	}
}

// restSequenceRoute is grpcSequenceRoute for model's REST paths. It
// needs no x-helix-model match: authz sets x-helix-sequence only with
// the model the path names.
func (b *routeBuilder) restSequenceRoute(model string) *routev3.Route {
	a := b.unary(HTTPSequenceCluster(model))
	a.RetryPolicy, a.HashPolicy = nil, b.bySequence
	return &routev3.Route{
		Name: "rest-sequence/" + model,
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: wire.RESTModelPath(model, "")},
			Headers:       []*routev3.HeaderMatcher{b.hasSequence},
		},
		Action:               &routev3.Route_Route{Route: a},
		TypedPerFilterConfig: b.noBody,
	}
}

// ssePathRegex is the shape of a generate_stream path (with any query),
// as wsPathRegex.
var ssePathRegex = "^" + regexp.QuoteMeta(wire.RESTModelsPrefix) + `[^/?]+(/versions/[0-9]+)?` +
	regexp.QuoteMeta(wire.GenerateStreamSuffix) + `(\?.*)?$`

// sseRoute is model's generate_stream route, or with model "" the default
// pool's for any model without one: server-sent events for as long as
// the model sends them.
func (b *routeBuilder) sseRoute(model string) *routev3.Route {
	return b.streamPathRoute("sse", model, ssePathRegex, func(cluster string) *routev3.RouteAction {
		return &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			Timeout:          dur(b.g.Timeouts.Stream), // 0: none
			IdleTimeout:      dur(b.g.Timeouts.Idle),
		}
	})
}

// wsPathRegex is the shape of a WebSocket path (with any query), matched on
// :path as Envoy normalized it. One small regex for every model: a model's
// name is matched by the route's prefix, since a long quoted name would
// pass Envoy's regex program size limit.
var wsPathRegex = "^" + regexp.QuoteMeta(wire.RESTModelsPrefix) + `[^/?]+(/versions/[0-9]+)?` +
	regexp.QuoteMeta(wire.WSPathSuffix) + `(\?.*)?$`

// wsRoute is model's WebSocket route, or with model "" the default pool's
// for any model without one. Only these routes allow the upgrade.
func (b *routeBuilder) wsRoute(model string) *routev3.Route {
	return b.streamPathRoute("ws", model, wsPathRegex, func(cluster string) *routev3.RouteAction {
		return &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			// A connection lives as long as its client wants: no route
			// timeout, the idle timeout only (the worker pings). No
			// retries: an upgrade is not replayed.
			Timeout:     dur(0),
			IdleTimeout: dur(b.g.Timeouts.Idle),
			UpgradeConfigs: []*routev3.RouteAction_UpgradeConfig{{
				UpgradeType: upgradeWebSocket,
				Enabled:     wrapBool(true),
			}},
		}
	})
}

// streamPathRoute is a route named kind+"-model/"+model (kind+"-default"
// with model "") for the REST paths of that model, or of every model, whose
// :path has pathRegex's shape, to the model's REST cluster (the default
// pool's), without body buffering for authz: a stream is not buffered.
func (b *routeBuilder) streamPathRoute(kind, model, pathRegex string, action func(cluster string) *routev3.RouteAction) *routev3.Route {
	name, cluster, prefix := kind+"-default", ClusterDefaultHTTP, strings.TrimSuffix(wire.RESTModelsPrefix, "/")
	if model != "" {
		name, cluster, prefix = kind+"-model/"+model, HTTPCluster(model), wire.RESTModelPath(model, "")
	}
	return &routev3.Route{
		Name: name,
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: prefix},
			Headers: []*routev3.HeaderMatcher{{
				Name: ":path",
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: pathRegex}},
				}},
			}},
		},
		Action:               &routev3.Route_Route{Route: action(cluster)},
		TypedPerFilterConfig: b.noBody,
	}
}

// restModelRoute is p's REST route; only a sequence pool's sends the
// body's head to authz (route 10).
func (b *routeBuilder) restModelRoute(p ir.Pool) *routev3.Route {
	per := b.noBody
	if p.Sequence {
		per = b.restBody
	}
	return &routev3.Route{
		Name: "rest-model/" + p.Model,
		Match: &routev3.RouteMatch{
			// Matches /v2/models/{m} and /v2/models/{m}/..., not {m}x.
			PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: wire.RESTModelPath(p.Model, "")},
		},
		Action:               &routev3.Route_Route{Route: b.unary(HTTPCluster(p.Model))},
		TypedPerFilterConfig: per,
	}
}

func (b *routeBuilder) grpcDefaultRoute() *routev3.Route {
	return &routev3.Route{
		Name: "grpc-default",
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: wire.GRPCServicePrefix},
			Grpc:          &routev3.RouteMatch_GrpcRouteMatchOptions{},
		},
		Action: &routev3.Route_Route{Route: b.unaryGRPC(ClusterDefaultGRPC)},
	}
}

func (b *routeBuilder) restDefaultRoute() *routev3.Route {
	return &routev3.Route{
		Name:                 "rest-default",
		Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: wire.RESTPrefix}},
		Action:               &routev3.Route_Route{Route: b.unary(ClusterDefaultHTTP)},
		TypedPerFilterConfig: b.noBody,
	}
}

// unary is the action of a request/response route.
func (b *routeBuilder) unary(cluster string) *routev3.RouteAction {
	return &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		Timeout:          dur(b.g.Timeouts.Request),
		RetryPolicy:      b.retry,
	}
}

// unaryGRPC also honours a shorter grpc-timeout sent by the client.
func (b *routeBuilder) unaryGRPC(cluster string) *routev3.RouteAction {
	a := b.unary(cluster)
	a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: dur(b.g.Timeouts.Request)}
	return a
}

// retryPolicy retries on another host: a worker that failed once is likely
// to fail again. nil when retries are off.
func retryPolicy(r ir.Retry) (*routev3.RetryPolicy, error) {
	if r.NumRetries == 0 {
		return nil, nil
	}
	prev, err := typed(&previoushostsv3.PreviousHostsPredicate{})
	if err != nil {
		return nil, err
	}
	p := &routev3.RetryPolicy{
		RetryOn:    strings.Join(r.On, ","),
		NumRetries: u32(r.NumRetries),
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       retryPreviousHosts,
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: prev},
		}},
		HostSelectionRetryMaxAttempts: 3,
	}
	if r.PerTryTimeout > 0 {
		p.PerTryTimeout = dur(r.PerTryTimeout)
	}
	return p, nil
}
