package translate

import "strings"

// Resource names. The ADS server, the Envoy bootstrap and tests refer to
// these; they are the only place a name is spelled.
const (
	// ListenerName is the one downstream listener.
	ListenerName = "helix-https"
	// RouteConfigName is the RDS resource the listener asks for.
	RouteConfigName = "helix-routes"
	// VirtualHostName is the one virtual host (domains "*").
	VirtualHostName = "helix"
	// StatPrefix prefixes the connection manager's stats.
	StatPrefix = "helix"
	// StatPrefixSourceLimit prefixes the per-source limit's stats
	// (http_local_rate_limit.rate_limited and friends).
	StatPrefixSourceLimit = "helix_source_limit"

	// ClusterAuthZ is helix-authz's ext_authz gRPC service.
	ClusterAuthZ = "helix-authz"
	// ClusterAuthZPublic is helix-authz's public HTTPS port (the public
	// routes, publicroutes.go).
	ClusterAuthZPublic = "helix-authz-public"
	// ClusterDefaultGRPC and ClusterDefaultHTTP are the default pool (every
	// worker). Model pools are named by GRPCCluster and HTTPCluster; a
	// model name never contains '/', so the names cannot collide.
	ClusterDefaultGRPC = "helix-default-grpc"
	ClusterDefaultHTTP = "helix-default-http"
	// ClusterTracing is the OTLP/gRPC collector Envoy sends its spans to.
	ClusterTracing = "helix-tracing"

	// SecretListenerCert is the listener's server certificate and key.
	SecretListenerCert = "helix-listener-cert"
)

// Upstream roles, used in secret names.
const (
	RoleWorkers     = "workers"
	RoleAuthZ       = "authz"
	RoleAuthZPublic = "authz-public"
	RoleTracing     = "tracing"
)

// DescriptorSource is the local rate limit's descriptor key for a source
// address (Envoy's name for the masked_remote_address action's entry).
const DescriptorSource = "masked_remote_address"

// Extension (filter) names as Envoy knows them.
const (
	filterHCM            = "envoy.filters.network.http_connection_manager"
	filterHeaderMutation = "envoy.filters.http.header_mutation"
	filterCORS           = "envoy.filters.http.cors"
	filterSourceLimit    = "envoy.filters.http.local_ratelimit"
	filterExtAuthz       = "envoy.filters.http.ext_authz"
	filterGRPCStats      = "envoy.filters.http.grpc_stats"
	filterRouter         = "envoy.filters.http.router"
	transportSocketTLS   = "envoy.transport_sockets.tls"
	accessLogStdout      = "envoy.access_loggers.stdout"
	retryPreviousHosts   = "envoy.retry_host_predicates.previous_hosts"
	upstreamHTTPOptions  = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	upgradeWebSocket     = "websocket"
	earlyHeaderMutation  = "envoy.http.early_header_mutation.header_mutation"
	tracerOpenTelemetry  = "envoy.tracers.opentelemetry"
)

// healthCheckAuthority is the Host/:authority of active health checks.
// Envoy's default is the cluster name, which contains '/' and which Go's
// HTTP server refuses as a Host.
const healthCheckAuthority = "helix-worker"

// GRPCCluster is the cluster of model m's workers' gRPC ports.
func GRPCCluster(model string) string { return "helix-model-grpc/" + model }

// HTTPCluster is the cluster of model m's workers' REST ports.
func HTTPCluster(model string) string { return "helix-model-http/" + model }

// GRPCSequenceCluster and HTTPSequenceCluster are sequence model m's
// (ir.Pool.Sequence) consistent-hash twins of GRPCCluster and HTTPCluster: the same
// endpoints (their EDS service name is the twin's), picked by a hash of
// wire.HeaderSequence, so that every request of one sequence reaches the
// same worker.
func GRPCSequenceCluster(model string) string { return "helix-model-grpc-seq/" + model }

// HTTPSequenceCluster: see GRPCSequenceCluster.
func HTTPSequenceCluster(model string) string { return "helix-model-http-seq/" + model }

// ClientCertSecret is Envoy's client certificate towards an upstream role.
func ClientCertSecret(role string) string { return "helix-" + role + "-client-cert" }

// CASecret is the CA that signs an upstream role's server certificates.
func CASecret(role string) string { return "helix-" + role + "-ca" }

// statName makes a cluster name safe for Envoy's stat names, where '.'
// separates tags. Two models that differ only in '.' vs '_' share stats.
func statName(cluster string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', ':', '/':
			return '_'
		}
		return r
	}, cluster)
}

// GRPCVariantCluster and HTTPVariantCluster are the clusters of variant v
// of model m's traffic policy (ir.Traffic): the model's endpoints that serve
// the variant's version in its pool. A model name has no '/', so these
// names cannot collide with a model's own clusters.
func GRPCVariantCluster(model, variant string) string {
	return variantPrefixGRPC + model + "/" + variant
}

// HTTPVariantCluster: see GRPCVariantCluster.
func HTTPVariantCluster(model, variant string) string {
	return variantPrefixHTTP + model + "/" + variant
}

// The prefixes of variant clusters (and of the models' own clusters).
const (
	variantPrefixGRPC = "helix-model-grpc/"
	variantPrefixHTTP = "helix-model-http/"
)

// ClusterStatName is the name a cluster's stats carry (Envoy's
// envoy_cluster_name label in Prometheus): what PromQL about a cluster,
// such as a rollout's SLO queries, must match.
//
// statName maps '/' to '_', and a model name may contain '_': variant
// "canary" of model "simple" would stat as model "simple_canary"'s own
// cluster. A variant cluster therefore keeps the '/' before its variant
// (helix-model-grpc_simple/canary): no model name contains '/'
// (wire.CheckModelName), so a stat name with a '/' is a variant's, and
// what follows the last '/' is the variant ([a-z0-9-]).
func ClusterStatName(cluster string) string {
	for _, prefix := range []string{variantPrefixGRPC, variantPrefixHTTP} {
		rest, ok := strings.CutPrefix(cluster, prefix)
		if !ok {
			continue
		}
		if i := strings.LastIndexByte(rest, '/'); i >= 0 {
			return statName(prefix+rest[:i]) + "/" + rest[i+1:]
		}
	}
	return statName(cluster)
}
