package server

import (
	"context"
	"fmt"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/helixflow/helixflow/xds/translate"
)

// Publish checks that res is one consistent set (each resource's content
// was checked by translate.Translate, which made it) and, when it differs
// from what is served, makes it the snapshot of every Envoy. Caches whose content did not change keep
// their version, so an endpoint change pushes EDS only. An invalid or
// inconsistent set (ErrInvalidResource, ErrInconsistent) changes nothing:
// the last published snapshot stays in force.
func (s *Server) Publish(ctx context.Context, res *translate.Resources) error {
	if res == nil {
		return fmt.Errorf("%w: no resources", ErrInvalidResource)
	}
	return s.publish(ctx, resourceSet{
		resourcev3.ListenerType: res.Listeners,
		resourcev3.RouteType:    res.Routes,
		resourcev3.ClusterType:  res.Clusters,
		resourcev3.EndpointType: res.Endpoints,
		resourcev3.SecretType:   res.Secrets,
	})
}
