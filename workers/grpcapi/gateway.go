package grpcapi

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/workers/infer"
)

// gatewayModelHeader is set by helix-authz, through Envoy, to the model it
// authorized after reading the request body's first bytes.
const gatewayModelHeader = "x-helix-model"

// checkGatewayModel refuses a request whose model differs from the one the
// gateway authorized. Envoy only lets helix-authz see the start of the
// body, and protobuf keeps the last of repeated fields, so a body could
// name an allowed model first and another one later: the worker, which
// decodes the whole message, is where that is caught. Without the header
// (no gateway in front) there is nothing to compare.
func checkGatewayModel(ctx context.Context, model string) error {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil
	}
	vals := md.Get(gatewayModelHeader)
	switch {
	case len(vals) == 0:
		return nil
	case len(vals) > 1:
		return infer.Errorf(infer.CodeInvalidArgument, "request carries %d %s headers; the gateway sets one", len(vals), gatewayModelHeader)
	case vals[0] != model:
		return infer.Errorf(infer.CodeInvalidArgument, "request is for model '%s' but the gateway authorized model '%s'", model, vals[0])
	}
	return nil
}
