package translate

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// helix-authz's public surface on Envoy's listener (ir.AuthZ.Public): the
// paths of wire.PublicPathPrefixes and wire.PublicExactPaths go to
// helix-authz's public HTTPS port, so that people, SDKs and the portal use
// one origin for models, tokens and pages (the session cookie and the
// CSRF origin are the gateway's).
//
// Per route:
//   - ext_authz is off: these paths authenticate themselves (OAuth2 client
//     credentials, sessions, bearer tokens in helix-authz), and most are
//     reached before anyone has a token. The x-helix-* headers are still
//     stripped first and the per-source limit still applies (filters
//     before ext_authz).
//   - the gateway's CORS policy applies as on every route: a browser app on
//     a listed origin may use /oauth2/token (PKCE). helix-authz still
//     refuses an unsafe /api/v1 request from any other Origin (CSRF), and
//     its session cookie (SameSite=Lax) does not go along cross-site. (One
//     per-route entry only: the ADS server hashes routes as vtprotobuf
//     writes them, which does not order a map's entries.)
//   - the request timeout, no body buffering; retried only when the
//     request never reached helix-authz (connect-failure, refused-stream,
//     reset-before-request), on another replica: a POST (sign-up, token)
//     is never sent twice.
//
// Envoy appends the client's address to X-Forwarded-For (it is the edge);
// helix-authz believes it from Envoy's addresses (--trusted-proxies).

// publicIdleTimeout closes Envoy's idle connections to the public port
// before helix-authz does (internal/httpserver.IdleTimeout, 2 minutes): a
// request sent on a connection the server is closing would fail, and is
// not retried.
const publicIdleTimeout = time.Minute

// publicCluster is helix-authz's public port: HTTP/1.1 (the port offers no
// h2 in ALPN), TLS checking helix-authz's name, round robin over replicas.
func publicCluster(g *ir.Gateway) (*clusterv3.Cluster, error) {
	u := *g.AuthZ.Public
	options, err := protocolOptions(false, publicIdleTimeout)
	if err != nil {
		return nil, err
	}
	c := fixedCluster(ClusterAuthZPublic, u, g.Timeouts.Connect, options)
	if u.TLS != nil {
		if c.TransportSocket, err = upstreamTLS(RoleAuthZPublic, u.TLS, alpnHTTP11); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// publicRoutes are the routes to helix-authz's public port, or none
// without ir.AuthZ.Public. Prefixes first, then exact paths, each in
// wire's order; none overlaps a model route (/v2/, gRPC service paths).
func publicRoutes(g *ir.Gateway) ([]*routev3.Route, error) {
	p := g.AuthZ.Public
	if p == nil {
		return nil, nil
	}
	off, err := typed(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})
	if err != nil {
		return nil, err
	}
	perFilter := map[string]*anypb.Any{filterExtAuthz: off}
	retry, err := publicRetry(p)
	if err != nil {
		return nil, err
	}
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterAuthZPublic},
		Timeout:          dur(g.Timeouts.Request),
		RetryPolicy:      retry,
	}
	var rs []*routev3.Route
	add := func(path string, m *routev3.RouteMatch) {
		rs = append(rs, &routev3.Route{
			Name:                 "public:" + path,
			Match:                m,
			Action:               &routev3.Route_Route{Route: action},
			TypedPerFilterConfig: perFilter,
		})
	}
	for _, prefix := range wire.PublicPathPrefixes() {
		add(prefix, &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}})
	}
	for _, path := range wire.PublicExactPaths() {
		add(path, &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: path}})
	}
	return rs, nil
}

// publicRetry retries a request that never reached helix-authz, on another
// replica; nil with one address (a second try would meet the same one).
func publicRetry(p *ir.Upstream) (*routev3.RetryPolicy, error) {
	if len(p.Replicas) == 0 {
		return nil, nil
	}
	prev, err := typed(&previoushostsv3.PreviousHostsPredicate{})
	if err != nil {
		return nil, err
	}
	return &routev3.RetryPolicy{
		RetryOn:    "connect-failure,refused-stream,reset-before-request",
		NumRetries: u32(uint32(len(p.Replicas))),
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       retryPreviousHosts,
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: prev},
		}},
		HostSelectionRetryMaxAttempts: 3,
	}, nil
}
