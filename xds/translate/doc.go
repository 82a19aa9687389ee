// Package translate turns the gateway model (xds/ir) into Envoy v3
// resources. It is pure: no I/O, no clock, no global state; equal input
// gives equal output, in a fixed order, byte for byte.
//
// For the ADS server:
//
//	r, err := translate.Translate(g)   // g: ir.Gateway after ApplyDefaults
//	// r.Listeners, r.Routes, r.Clusters, r.Endpoints, r.Secrets are
//	// []types.Resource, ready for cache.NewSnapshot by resource type.
//	eps, err := translate.TranslateEndpoints(g) // EDS only, for endpoint churn
//	r2, err := translate.UpdateEndpoints(r, g2, models, true) // r with those pools' assignments rebuilt
//
// Translate checks g with the model's own rules (ir.Gateway.Validate) and
// runs the one final check of every produced resource: ValidateAll,
// including each typed config packed in an Any (ValidateAll does not look
// inside Any). The ADS server does not check them again; it checks only that the set is
// consistent. An error names the resource and wraps ErrInvalidResource
// (or ir.ErrInvalid for the model). Resources may share sub-messages
// (one LbEndpoint per worker serves every pool it is in): treat them as
// immutable. Envoy's bootstrap must use ADS (RDS, EDS and SDS all point
// at it) with a node whose id the ADS server serves.
//
// What Envoy gets:
//
//   - listener.go: one listener (ListenerName) with one filter chain: the
//     HTTP connection manager, TLS from SDS (SecretListenerCert) when the
//     listener has TLS, ALPN h2 and http/1.1.
//   - hcm.go: the connection manager and THE filter order (httpFilters):
//     strip client x-helix-* headers, CORS, the per-source-address limit,
//     ext_authz, grpc_stats (gRPC answers counted by status code per
//     upstream cluster: the router counts a gRPC error as a 2xx), router. Rate limits are no filter: helix-authz applies
//     the client's plan inside its Check (one side call per request), so
//     the plans (ir.RateLimit) make no Envoy resource at all.
//     Routes come over RDS (RouteConfigName). Paths are normalized and
//     escaped slashes refused, so routing and helix-authz see one path.
//   - headers.go, sourcelimit.go, extauthz.go, cors.go,
//     accesslog.go: one file per filter or feature, with its per-route
//     parts; localreply.go: the one rewritten local reply (ext_authz's
//     bodiless 503 when helix-authz is unreachable gets helix-authz's
//     JSON).
//   - tracing.go: with ir.Tracing, Envoy's OpenTelemetry tracer on the
//     connection manager (random_sampling from Tracing.Sampling,
//     client_sampling 0) exporting to the ClusterTracing collector
//     (HTTP/2; TLS, or plaintext to loopback); always, an early header
//     mutation that drops a client's traceparent and tracestate before
//     the request's span starts, so the gateway starts every trace.
//   - routes.go: the route table (see routes for the order): gRPC by
//     x-helix-model after ext_authz (clear_route_cache), REST by path,
//     ModelStreamInfer without body buffering and without a timeout
//     unless Timeouts.Stream is set (to its model's pool when the client
//     named the model in the helix-model header, else the default pool),
//     WebSocket (/v2/models/{m}[/versions/{v}]/infer/ws, wire.WSPathSuffix)
//     to the model's REST cluster with no route timeout, the idle
//     timeout and no retries, the default pool for the rest. The
//     WebSocket routes are the only ones that allow an upgrade
//     (route-level upgrade_configs; the connection manager has none), so
//     Envoy refuses an upgrade anywhere else before any Check. For a
//     sequence model (ir.Pool.Sequence) a step of a Triton sequence
//     (x-helix-sequence, set by authz) goes to the model's
//     consistent-hash cluster without retries; generate_stream
//     (server-sent events) has the stream timeout and no retries.
//   - traffic.go: a model's traffic policy (ir.Pool.Traffic: A/B
//     splits, canaries and rollouts, shadows). Each variant and the shadow
//     get a gRPC and a REST cluster (GRPCVariantCluster,
//     HTTPVariantCluster) with their own EDS assignment: the model's ready
//     endpoints that ir.Variant.Matches (version, pool). Each of the
//     model's routes (gRPC unary and stream, WebSocket, generate_stream,
//     REST) becomes: per variant an override on x-helix-variant; per
//     pinned version a route for requests naming it (gRPC:
//     x-helix-requested-version; REST: /versions/{v}), to that variant;
//     other named versions to the model's own cluster; then
//     weighted_clusters over the variants with weight > 0 (header_name
//     x-helix-assignment when sticky; x-helix-model-version added per
//     variant that pins a version). A shadow is a request_mirror_policy
//     (runtime_fraction = its percent; x-helix-shadow: 1 and its version
//     set on the copy) on the unary routes' overrides and split. A model
//     without a policy gets exactly what it got before policies existed.
//   - publicroutes.go: with ir.AuthZ.Public, helix-authz's public surface
//     (wire.PublicPathPrefixes, wire.PublicExactPaths: the portal, the
//     people's API, OAuth2, its pages) routed first to the
//     helix-authz-public cluster (HTTP/1.1, TLS checking helix-authz's
//     name), with ext_authz off per route and retries only of requests
//     that never reached it.
//   - clusters.go: per model two EDS clusters (GRPCCluster: HTTP/2 to the
//     worker's gRPC port, grpc.health.v1 checks with service = model;
//     HTTPCluster: HTTP/1.1 to the REST port, checks on
//     /v2/models/{m}/ready), for a sequence model their Maglev twins
//     (GRPCSequenceCluster, HTTPSequenceCluster: the same EDS assignment,
//     hashing x-helix-sequence), the first pair for the default pool, and
//     a STATIC/STRICT_DNS cluster for helix-authz (and its public port,
//     and the tracing collector).
//     Outlier
//     detection, circuit breakers with the retry budget, mTLS via SDS.
//   - endpoints.go: a ClusterLoadAssignment per pool cluster with the
//     ready workers (possibly none), a policy's variants' after their
//     model's own (UpdateEndpoints rebuilds them with it).
//   - secrets.go: SDS secrets that name files, which Envoy reads and
//     watches itself (rotation without a new snapshot; see secrets).
//   - names.go: every resource name, header and descriptor key.
//
// Golden tests: testdata/*.in.yaml (an ir.Gateway as YAML) and
// *.out.yaml (the resources as YAML); after an intended change run
// go test ./xds/translate -update and review the diff.
// TestEnvoyAcceptsOutput runs the real Envoy in --mode validate on every
// case.
package translate
