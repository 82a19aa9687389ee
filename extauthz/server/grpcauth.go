package server

import (
	"context"
	"slices"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/identity"
	limitsv1 "github.com/helixflow/helixflow/proto/limits/v1"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

// helix-authz's gRPC listener serves three services to two kinds of caller:
// its handshake admits both (identity.AuthzListenerPeer), and Admission
// then admits each call only from its service's callers, so that a worker
// (which reports usage and counts its streams' messages with Limits)
// cannot ask for verdicts, and Envoy cannot write the ledger.
var admitted = map[string]func(id string) bool{
	authv3.Authorization_ServiceDesc.ServiceName: func(id string) bool { return slices.Contains(identity.AuthzCallers(), id) },
	usagev1.Ledger_ServiceDesc.ServiceName:       identity.AuthzWorkerCaller,
	// Workers count their streams' messages (never Envoy: its requests
	// are counted by Check).
	limitsv1.Limits_ServiceDesc.ServiceName: identity.AuthzWorkerCaller,
}

// admit checks the caller of fullMethod ("/pkg.Service/Method"); any
// service outside the table is refused.
func admit(ctx context.Context, fullMethod string) error {
	service, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	rule, ok := admitted[service]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "%s is not served to any caller here", service)
	}
	id, err := identity.FromContext(ctx)
	if err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	if !rule(id) {
		return status.Errorf(codes.PermissionDenied, "%s may not call %s", id, service)
	}
	return nil
}

// Admission returns the gRPC server options that admit each call only
// from its service's callers (for a listener with mTLS; without TLS no
// caller has an identity, and every call would be refused).
func Admission() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := admit(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := admit(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}
