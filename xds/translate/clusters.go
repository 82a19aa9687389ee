package translate

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"net/netip"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// Cluster limits that are not configurable (yet). Envoy's default of 1024
// concurrent requests per cluster is low for HTTP/2 to a batching worker.
const (
	maxConnections     = 1024
	maxPendingRequests = 1024
	maxRequests        = 8192

	outlierInterval        = 5 * time.Second
	outlierBaseEjection    = 30 * time.Second
	outlierMaxEjectPercent = 50
	outlierConsecutive5xx  = 5
	outlierConsecutiveGW   = 3

	// maglevTableSize is a sequence cluster's Maglev table (a prime): at
	// least ten entries per worker up to 100 workers in a pool, and 16 KiB
	// per cluster rather than Envoy's default 65,537 entries (1 MiB), which
	// with 1,000 models would be 2 GiB.
	maglevTableSize = 1031
)

// clusters builds the side services first, then the default pool, then
// the clusters of each model pool, in model order: gRPC and REST ports,
// with a traffic policy (ir.Pool.Traffic) each variant's and the
// shadow's pair (GRPCVariantCluster, HTTPVariantCluster; traffic.go), and
// for a sequence pool (ir.Pool.Sequence) their consistent-hash twins
// (sequencePool). Other pools get no twins: two clusters (and their Maglev
// tables, health state and stats) per model that would never be used.
func clusters(g *ir.Gateway) ([]types.Resource, error) {
	b, err := newClusterBuilder(g)
	if err != nil {
		return nil, err
	}
	out := make([]types.Resource, 0, 4+4*len(g.Pools)) // at most
	add := func(c *clusterv3.Cluster, err error) error {
		if err != nil {
			return err
		}
		if err := check("cluster", c.Name, c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	}
	if err := add(serviceCluster(ClusterAuthZ, RoleAuthZ, g.AuthZ.Upstream, g.Timeouts.Connect)); err != nil {
		return nil, err
	}
	if g.AuthZ.Public != nil {
		if err := add(publicCluster(g)); err != nil {
			return nil, err
		}
	}
	if tr := g.Tracing; tr != nil {
		// OTLP/gRPC: HTTP/2, TLS (h2) unless the collector is on loopback.
		if err := add(serviceCluster(ClusterTracing, RoleTracing, tr.Collector, g.Timeouts.Connect)); err != nil {
			return nil, err
		}
	}
	if err := add(b.grpcPool(ClusterDefaultGRPC, ""), nil); err != nil {
		return nil, err
	}
	if err := add(b.httpPool(ClusterDefaultHTTP, wire.RESTServerReady), nil); err != nil {
		return nil, err
	}
	for i, p := range g.Pools {
		if err := add(b.grpcPool(GRPCCluster(p.Model), p.Model), nil); err != nil {
			return nil, err
		}
		if err := add(b.httpPool(HTTPCluster(p.Model), wire.RESTModelPath(p.Model, "", "ready")), nil); err != nil {
			return nil, err
		}
		if p.Traffic != nil {
			if err := checkTraffic(&g.Pools[i]); err != nil {
				return nil, err
			}
			// A variant's clusters are checked as the model's: its
			// endpoints serve the model.
			for _, v := range trafficVariants(&g.Pools[i]) {
				if err := add(b.grpcPool(GRPCVariantCluster(p.Model, v.Name), p.Model), nil); err != nil {
					return nil, err
				}
				if err := add(b.httpPool(HTTPVariantCluster(p.Model, v.Name), wire.RESTModelPath(p.Model, "", "ready")), nil); err != nil {
					return nil, err
				}
			}
		}
		if !p.Sequence {
			continue
		}
		if err := add(b.sequencePool(GRPCSequenceCluster(p.Model), GRPCCluster(p.Model), b.grpcOptions, b.grpcTLS), nil); err != nil {
			return nil, err
		}
		if err := add(b.sequencePool(HTTPSequenceCluster(p.Model), HTTPCluster(p.Model), b.httpOptions, b.httpTLS), nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// clusterBuilder holds what every pool cluster shares, built (and packed)
// once: with 1,000 models this is most of the work saved.
type clusterBuilder struct {
	g              *ir.Gateway
	grpcOptions    map[string]*anypb.Any
	httpOptions    map[string]*anypb.Any
	grpcTLS        *corev3.TransportSocket
	httpTLS        *corev3.TransportSocket
	outlier        *clusterv3.OutlierDetection
	breakers       *clusterv3.CircuitBreakers
	edsConfig      *corev3.ConfigSource
	grpcHealthALPN *corev3.HealthCheck_TlsOptions
	httpHealthALPN *corev3.HealthCheck_TlsOptions
	maglev         *clusterv3.Cluster_MaglevLbConfig_
}

func newClusterBuilder(g *ir.Gateway) (*clusterBuilder, error) {
	b := &clusterBuilder{g: g, edsConfig: adsSource(), maglev: &clusterv3.Cluster_MaglevLbConfig_{
		MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(maglevTableSize)},
	}}
	var err error
	if b.grpcOptions, err = protocolOptions(true, connectionIdleTimeout); err != nil {
		return nil, err
	}
	if b.httpOptions, err = protocolOptions(false, connectionIdleTimeout); err != nil {
		return nil, err
	}
	if g.Workers != nil {
		if b.grpcTLS, err = upstreamTLS(RoleWorkers, g.Workers, alpnH2); err != nil {
			return nil, err
		}
		if b.httpTLS, err = upstreamTLS(RoleWorkers, g.Workers, alpnHTTP11); err != nil {
			return nil, err
		}
		// Health checks set no ALPN unless told, and grpc-go refuses that.
		b.grpcHealthALPN = &corev3.HealthCheck_TlsOptions{AlpnProtocols: []string{alpnH2}}
		b.httpHealthALPN = &corev3.HealthCheck_TlsOptions{AlpnProtocols: []string{alpnHTTP11}}
	}
	b.outlier = &clusterv3.OutlierDetection{
		Consecutive_5Xx:                    u32(outlierConsecutive5xx),
		ConsecutiveGatewayFailure:          u32(outlierConsecutiveGW),
		EnforcingConsecutiveGatewayFailure: u32(100),
		Interval:                           dur(outlierInterval),
		BaseEjectionTime:                   dur(outlierBaseEjection),
		MaxEjectionPercent:                 u32(outlierMaxEjectPercent),
	}
	b.breakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     u32(maxConnections),
		MaxPendingRequests: u32(maxPendingRequests),
		MaxRequests:        u32(maxRequests),
		// The budget replaces max_retries: retries scale with load.
		RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
			BudgetPercent:       &typev3.Percent{Value: g.Retry.BudgetPercent},
			MinRetryConcurrency: u32(g.Retry.MinRetryConcurrency),
		},
	}}}
	return b, nil
}

// grpcPool is a worker pool's gRPC cluster, health-checked with
// grpc.health.v1 for service = model name (the worker answers SERVING
// while it has the model ready; "" asks about the whole server).
func (b *clusterBuilder) grpcPool(name, model string) *clusterv3.Cluster {
	c := b.pool(name, b.grpcOptions, b.grpcTLS)
	hc := b.healthCheck(b.grpcHealthALPN)
	hc.HealthChecker = &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{
		ServiceName: model,
		Authority:   healthCheckAuthority,
	}}
	c.HealthChecks = []*corev3.HealthCheck{hc}
	return c
}

// httpPool is a worker pool's REST cluster (HTTP/1.1), health-checked on
// KServe v2's readiness path.
func (b *clusterBuilder) httpPool(name, readyPath string) *clusterv3.Cluster {
	c := b.pool(name, b.httpOptions, b.httpTLS)
	hc := b.healthCheck(b.httpHealthALPN)
	hc.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{
		Host: healthCheckAuthority,
		Path: readyPath,
	}}
	c.HealthChecks = []*corev3.HealthCheck{hc}
	return c
}

func (b *clusterBuilder) pool(name string, options map[string]*anypb.Any, tls *corev3.TransportSocket) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		AltStatName:          ClusterStatName(name),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: b.edsConfig, ServiceName: name},
		ConnectTimeout:       dur(b.g.Timeouts.Connect),
		// Inference requests vary in cost: send to the least busy worker.
		LbPolicy:                      clusterv3.Cluster_LEAST_REQUEST,
		TypedExtensionProtocolOptions: options,
		TransportSocket:               tls,
		OutlierDetection:              b.outlier,
		CircuitBreakers:               b.breakers,
		// A worker that left the registry goes now, not when its health
		// check fails.
		IgnoreHealthOnHostRemoval: true,
		// Apply host health changes (an ejected or failed worker) at once:
		// Envoy's default 1 s merge window keeps routing to a dead worker
		// long enough to exhaust the retry budget.
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{UpdateMergeWindow: durationpb.New(0)},
	}
}

// sequencePool is the consistent-hash twin of the pool cluster of, with
// the same endpoints (of's EDS assignment: no resource more to send or
// rebuild when a worker changes) and a Maglev balancer hashing
// wire.HeaderSequence (the route's hash policy): every request of one
// sequence reaches the same worker while the pool does not change. When
// it does, a share of the sequences moves (Maglev moves few), and their
// next step gets the new worker's "unknown sequence" error.
//
// No active health check of its own (the twin would double the checks
// every worker answers): EDS lists ready workers only, and outlier
// detection ejects one that stops answering.
func (b *clusterBuilder) sequencePool(name, of string, options map[string]*anypb.Any, tls *corev3.TransportSocket) *clusterv3.Cluster {
	c := b.pool(name, options, tls)
	c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: b.edsConfig, ServiceName: of}
	c.LbPolicy = clusterv3.Cluster_MAGLEV
	c.LbConfig = b.maglev
	return c
}

func (b *clusterBuilder) healthCheck(tls *corev3.HealthCheck_TlsOptions) *corev3.HealthCheck {
	h := b.g.HealthCheck
	return &corev3.HealthCheck{
		Timeout:            dur(h.Timeout),
		Interval:           dur(h.Interval),
		NoTrafficInterval:  dur(h.NoTrafficInterval),
		UnhealthyThreshold: u32(h.UnhealthyThreshold),
		HealthyThreshold:   u32(h.HealthyThreshold),
		TlsOptions:         tls,
	}
}

// protocolOptions pins the upstream protocol: HTTP/2 for gRPC ports,
// HTTP/1.1 for REST ports; idle closes unused upstream connections.
func protocolOptions(h2 bool, idle time.Duration) (map[string]*anypb.Any, error) {
	explicit := &httpv3.HttpProtocolOptions_ExplicitHttpConfig{}
	if h2 {
		explicit.ProtocolConfig = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
				InitialStreamWindowSize:     u32(initialStreamWindow),
				InitialConnectionWindowSize: u32(initialConnectionWindow),
			},
		}
	} else {
		explicit.ProtocolConfig = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
			HttpProtocolOptions: &corev3.Http1ProtocolOptions{},
		}
	}
	a, err := typed(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: explicit},
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			IdleTimeout: dur(idle),
		},
	})
	if err != nil {
		return nil, err
	}
	return map[string]*anypb.Any{upstreamHTTPOptions: a}, nil
}

// serviceCluster is a gRPC side service (helix-authz) at fixed
// addresses (its replicas'): STATIC for IPs, STRICT_DNS when one is a name.
func serviceCluster(name, role string, u ir.Upstream, connect time.Duration) (*clusterv3.Cluster, error) {
	options, err := protocolOptions(true, connectionIdleTimeout)
	if err != nil {
		return nil, err
	}
	c := fixedCluster(name, u, connect, options)
	if u.TLS != nil {
		if c.TransportSocket, err = upstreamTLS(role, u.TLS, alpnH2); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// fixedCluster is a cluster of an upstream's fixed addresses (its
// replicas'): STATIC for IPs, STRICT_DNS when one is a name.
func fixedCluster(name string, u ir.Upstream, connect time.Duration, options map[string]*anypb.Any) *clusterv3.Cluster {
	endpoints := append([]ir.Replica{{Address: u.Address, Port: u.Port}}, u.Replicas...)
	kind := clusterv3.Cluster_STATIC
	lbs := make([]*endpointv3.LbEndpoint, 0, len(endpoints))
	for _, e := range endpoints {
		if _, err := netip.ParseAddr(e.Address); err != nil {
			kind = clusterv3.Cluster_STRICT_DNS
		}
		lbs = append(lbs, lbEndpoint(e.Address, e.Port))
	}
	c := &clusterv3.Cluster{
		Name:                          name,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: kind},
		ConnectTimeout:                dur(connect),
		TypedExtensionProtocolOptions: options,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: lbs,
			}},
		},
	}
	// Every request waits for this service's answer, so it may have as
	// many in flight as the workers do: at Envoy's default of 1,024,
	// 1,000 connections' requests overflowed the authz cluster first
	// (UNAVAILABLE through ext_authz) while the workers had room.
	limits := &clusterv3.CircuitBreakers_Thresholds{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     u32(maxConnections),
		MaxPendingRequests: u32(maxPendingRequests),
		MaxRequests:        u32(maxRequests),
	}
	if len(u.Replicas) > 0 {
		// A replica's death fails every call in flight on it at once; with
		// Envoy's default of 3 retries at a time, the rest would fail too.
		limits.MaxRetries = u32(maxRequests)
	}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{limits}}
	return c
}
