package infer

import "github.com/helixflow/helixflow/internal/wire"

// CheckGatewayModel refuses a request for model when the gateway
// authorized another: authorized holds the request's wire.HeaderModel
// values, set by helix-authz through Envoy. Both front ends call it, so the
// rule has one home. Envoy only lets helix-authz see the start of a body
// and protobuf keeps the last of repeated fields, so a gRPC message could
// name an allowed model first and another one later; a REST path could be
// read differently by Envoy and the worker. The worker, which decodes the
// whole request, is where that is caught. Without the header (no gateway in
// front) there is nothing to compare.
func CheckGatewayModel(authorized []string, model string) error {
	switch {
	case len(authorized) == 0:
		return nil
	case len(authorized) > 1:
		return Errorf(CodeInvalidArgument, "request carries %d %s headers; the gateway sets one", len(authorized), wire.HeaderModel)
	case authorized[0] != model:
		return Errorf(CodeInvalidArgument, "request is for model '%s' but the gateway authorized model '%s'", model, authorized[0])
	}
	return nil
}
