package translate

import (
	"errors"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/helixflow/helixflow/xds/ir"
)

// ErrInvalidResource is wrapped when a produced resource fails Envoy's
// proto validation: a translation bug, or an input Validate let through.
var ErrInvalidResource = errors.New("invalid Envoy resource")

// Resources is one consistent set of Envoy resources, each slice in a
// fixed order.
type Resources struct {
	Listeners []types.Resource // *listenerv3.Listener
	Routes    []types.Resource // *routev3.RouteConfiguration
	Clusters  []types.Resource // *clusterv3.Cluster
	Endpoints []types.Resource // *endpointv3.ClusterLoadAssignment
	Secrets   []types.Resource // *tlsv3.Secret
}

// Translate turns a gateway model into Envoy resources. g must have had
// ApplyDefaults; it is validated here and never modified. Every resource
// (and every typed config packed inside one) passes ValidateAll.
func Translate(g *ir.Gateway) (*Resources, error) {
	// Sorted first: Validate is cheaper on sorted pools. Field paths in
	// errors then index the sorted pools.
	g = g.Sorted()
	if err := g.Validate(); err != nil {
		return nil, err
	}
	var r Resources
	var err error
	if r.Listeners, err = listeners(g); err != nil {
		return nil, err
	}
	if r.Routes, err = routes(g); err != nil {
		return nil, err
	}
	if r.Clusters, err = clusters(g); err != nil {
		return nil, err
	}
	if r.Endpoints, err = endpoints(g); err != nil {
		return nil, err
	}
	if r.Secrets, err = secrets(g); err != nil {
		return nil, err
	}
	return &r, nil
}

// TranslateEndpoints builds only the ClusterLoadAssignments, for a source
// whose change touched endpoints alone (a worker became ready or left):
// the ADS server can then update its EDS cache without rebuilding
// listeners, routes and clusters. The cluster set changes only when the
// set of models does.
func TranslateEndpoints(g *ir.Gateway) ([]types.Resource, error) {
	g = g.Sorted()
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return endpoints(g)
}

// validatable is implemented by every generated Envoy message.
type validatable interface{ ValidateAll() error }

// check validates a resource and names it in the error.
func check(kind, name string, m proto.Message) error {
	if v, ok := m.(validatable); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%w: %s %q: %w", ErrInvalidResource, kind, name, err)
		}
	}
	return nil
}

// typed validates m (ValidateAll does not look inside Any) and packs it.
func typed(m proto.Message) (*anypb.Any, error) {
	if v, ok := m.(validatable); ok {
		if err := v.ValidateAll(); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidResource, m.ProtoReflect().Descriptor().FullName(), err)
		}
	}
	// Deterministic: equal input gives equal bytes (struct maps inside).
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

// adsSource points a dynamic resource (RDS, EDS, SDS) at the ADS stream.
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func u32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
