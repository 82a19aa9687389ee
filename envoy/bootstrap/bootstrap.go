// Package bootstrap writes Envoy's bootstrap for HelixFlow: the node's
// identity, an admin interface on loopback only, and a single static
// cluster, helix-xds, that everything else comes from over ADS
// (listeners, routes, clusters, endpoints, secrets). Envoy does not
// substitute environment variables in its bootstrap, so the file is
// generated for the addresses and certificate paths of each deployment
// (helix-xds bootstrap, or Render from Go).
package bootstrap

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	connlimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ErrInvalid wraps every configuration error; messages name the field.
var ErrInvalid = errors.New("invalid bootstrap config")

// XDSCluster is the name of the static cluster that reaches helix-xds.
const XDSCluster = "helix-xds"

// DefaultMaxConnections caps downstream connections when Config leaves it 0
// (Envoy warns, and can be exhausted, without a cap).
const DefaultMaxConnections = 50000

// Config describes one Envoy.
type Config struct {
	// NodeID and NodeCluster identify the Envoy to helix-xds (which serves
	// every node the same config and may refuse other node clusters).
	NodeID      string
	NodeCluster string
	// XDSAddress is helix-xds's ADS address, host:port; an IP address is
	// used as is, a DNS name is resolved by Envoy.
	XDSAddress string
	// XDSTLS is mTLS to helix-xds. nil is plaintext, allowed only when
	// XDSAddress is a loopback address (local development).
	XDSTLS *TLS
	// AdminAddress is the admin interface, host:port on a loopback IP
	// (the admin API can stop Envoy and dump its secrets' metadata); port
	// 0 lets Envoy pick one (see envoy --admin-address-path).
	AdminAddress string
	// Delta selects incremental xDS (DELTA_GRPC) instead of
	// state-of-the-world.
	Delta bool
	// MaxConnections caps active downstream connections; 0 means
	// DefaultMaxConnections.
	MaxConnections uint64
}

// TLS is Envoy's client side of mTLS to helix-xds, as files on Envoy's
// file system. They are read when Envoy starts.
type TLS struct {
	CAFile   string // CA that signed helix-xds's certificate
	CertFile string // Envoy's client certificate
	KeyFile  string
	// ServerName is sent as SNI and must be a DNS SAN of helix-xds's
	// certificate (required: without it any certificate signed by CAFile
	// would do).
	ServerName string
}

func (c Config) validate() error {
	switch {
	case c.NodeID == "":
		return fmt.Errorf("%w: node id: required", ErrInvalid)
	case c.NodeCluster == "":
		return fmt.Errorf("%w: node cluster: required", ErrInvalid)
	}
	host, _, err := splitHostPort(c.XDSAddress)
	if err != nil {
		return fmt.Errorf("%w: xds address %q: %w", ErrInvalid, c.XDSAddress, err)
	}
	if c.XDSTLS == nil && !isLoopback(host) {
		return fmt.Errorf("%w: xds address %q: TLS is required unless helix-xds is on a loopback address", ErrInvalid, c.XDSAddress)
	}
	if t := c.XDSTLS; t != nil {
		for field, v := range map[string]string{"xds tls ca file": t.CAFile, "xds tls cert file": t.CertFile, "xds tls key file": t.KeyFile,
			"xds tls server name": t.ServerName} {
			if v == "" {
				return fmt.Errorf("%w: %s: required", ErrInvalid, field)
			}
		}
	}
	ahost, _, err := splitHostPort(c.AdminAddress)
	if err != nil {
		return fmt.Errorf("%w: admin address %q: %w", ErrInvalid, c.AdminAddress, err)
	}
	if ip := net.ParseIP(ahost); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: admin address %q: must be a loopback IP address", ErrInvalid, c.AdminAddress)
	}
	return nil
}

func splitHostPort(addr string) (string, uint32, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	if host == "" {
		return "", 0, errors.New("host required")
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, uint32(port), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Build returns the bootstrap as a validated proto.
func Build(c Config) (*bootstrapv3.Bootstrap, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	xds, err := xdsCluster(c)
	if err != nil {
		return nil, err
	}
	ads := corev3.ApiConfigSource_GRPC
	if c.Delta {
		ads = corev3.ApiConfigSource_DELTA_GRPC
	}
	adsSource := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	ahost, aport, _ := splitHostPort(c.AdminAddress)
	max := c.MaxConnections
	if max == 0 {
		max = DefaultMaxConnections
	}
	connLimit, err := anypb.New(&connlimitv3.DownstreamConnectionsConfig{MaxActiveDownstreamConnections: int64(max)})
	if err != nil {
		return nil, err
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: c.NodeID, Cluster: c.NodeCluster},
		Admin: &bootstrapv3.Admin{
			Address: socketAddress(ahost, aport),
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   ads,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSCluster}},
				}},
			},
			CdsConfig: adsSource,
			LdsConfig: adsSource,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{xds}},
		OverloadManager: &overloadv3.OverloadManager{
			ResourceMonitors: []*overloadv3.ResourceMonitor{{
				Name:       "envoy.resource_monitors.global_downstream_max_connections",
				ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: connLimit},
			}},
		},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return b, nil
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func xdsCluster(c Config) (*clusterv3.Cluster, error) {
	host, port, _ := splitHostPort(c.XDSAddress)
	discovery := clusterv3.Cluster_STATIC
	if net.ParseIP(host) == nil {
		discovery = clusterv3.Cluster_STRICT_DNS
	}
	h2, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
				// Notice a dead control plane behind a silent network.
				ConnectionKeepalive: &corev3.KeepaliveSettings{Interval: durationpb.New(30 * time.Second), Timeout: durationpb.New(5 * time.Second)},
			}},
		}},
	})
	if err != nil {
		return nil, err
	}
	cl := &clusterv3.Cluster{
		Name:                 XDSCluster,
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: discovery},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2,
		},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: XDSCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)}},
			}}}},
		},
		UpstreamConnectionOptions: &clusterv3.UpstreamConnectionOptions{
			TcpKeepalive: &corev3.TcpKeepalive{KeepaliveTime: wrapperspb.UInt32(30), KeepaliveInterval: wrapperspb.UInt32(10), KeepaliveProbes: wrapperspb.UInt32(3)},
		},
	}
	if t := c.XDSTLS; t != nil {
		ctx := &tlsv3.UpstreamTlsContext{
			Sni: t.ServerName,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
				AlpnProtocols: []string{"h2"},
				TlsCertificates: []*tlsv3.TlsCertificate{{
					CertificateChain: fileSource(t.CertFile),
					PrivateKey:       fileSource(t.KeyFile),
				}},
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: validation(t)},
			},
		}
		a, err := anypb.New(ctx)
		if err != nil {
			return nil, err
		}
		cl.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
	}
	return cl, nil
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func validation(t *TLS) *tlsv3.CertificateValidationContext {
	return &tlsv3.CertificateValidationContext{
		TrustedCa: fileSource(t.CAFile),
		MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_DNS,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: t.ServerName}},
		}},
	}
}

// Render returns the bootstrap as YAML, with a header saying how it was
// made.
func Render(c Config) ([]byte, error) {
	b, err := Build(c)
	if err != nil {
		return nil, err
	}
	return toYAML(b)
}

// toYAML turns a proto into block-style YAML in field order.
func toYAML(m proto.Message) ([]byte, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal bootstrap: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("convert bootstrap to YAML: %w", err)
	}
	blockStyle(&doc)
	doc.HeadComment = "Envoy bootstrap for HelixFlow, generated by `helix-xds bootstrap`; do not edit.\n" +
		"Everything but the helix-xds cluster comes from helix-xds over ADS."
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode bootstrap YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// blockStyle drops JSON's flow style and quotes; the encoder quotes again
// any string that would otherwise read as another type ("1.0", "true").
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}
