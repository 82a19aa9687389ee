package grpcapi

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/infer"
)

// checkGatewayModel refuses a request whose model differs from the one the
// gateway authorized (wire.HeaderModel, set by helix-authz through Envoy
// after reading the request body's first bytes). Envoy only lets helix-authz see the start of the
// body, and protobuf keeps the last of repeated fields, so a body could
// name an allowed model first and another one later: the worker, which
// decodes the whole message, is where that is caught. Without the header
// (no gateway in front) there is nothing to compare.
func checkGatewayModel(ctx context.Context, model string) error {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil
	}
	vals := md.Get(wire.HeaderModel)
	switch {
	case len(vals) == 0:
		return nil
	case len(vals) > 1:
		return infer.Errorf(infer.CodeInvalidArgument, "request carries %d %s headers; the gateway sets one", len(vals), wire.HeaderModel)
	case vals[0] != model:
		return infer.Errorf(infer.CodeInvalidArgument, "request is for model '%s' but the gateway authorized model '%s'", model, vals[0])
	}
	return nil
}
