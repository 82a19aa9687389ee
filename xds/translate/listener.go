package translate

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/helixflow/helixflow/xds/ir"
)

// listeners builds the one HTTPS listener: a single filter chain with the
// HTTP connection manager, TLS from SDS when configured.
func listeners(g *ir.Gateway) ([]types.Resource, error) {
	hcm, err := connectionManager(g)
	if err != nil {
		return nil, err
	}
	hcmAny, err := typed(hcm)
	if err != nil {
		return nil, err
	}
	chain := &listenerv3.FilterChain{
		Filters: []*listenerv3.Filter{{
			Name:       filterHCM,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
		}},
	}
	if g.Listener.TLS != nil {
		if chain.TransportSocket, err = downstreamTLS(g.Listener.ALPN); err != nil {
			return nil, err
		}
	}
	l := &listenerv3.Listener{
		Name:         ListenerName,
		Address:      socketAddress(g.Listener.Address, g.Listener.Port),
		FilterChains: []*listenerv3.FilterChain{chain},
	}
	if err := check("listener", l.Name, l); err != nil {
		return nil, err
	}
	return []types.Resource{l}, nil
}
