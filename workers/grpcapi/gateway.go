package grpcapi

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/infer"
)

// checkGatewayModel applies infer.CheckGatewayModel to the request's
// metadata.
func checkGatewayModel(ctx context.Context, model string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	return infer.CheckGatewayModel(md.Get(wire.HeaderModel), model)
}

// routingOf reads the traffic policy's headers (infer.ReadRouting) from
// the request's metadata.
func routingOf(ctx context.Context) (infer.Routing, error) {
	return infer.ReadRouting(metadata.ValueFromIncomingContext(ctx, wire.HeaderModelVersion),
		metadata.ValueFromIncomingContext(ctx, wire.HeaderShadow))
}
