package main

import (
	"context"
	"fmt"
	"net"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/helixflow/helixflow/extauthz/server"
)

// noopServer is the floor: an Authorization service that allows every
// request without reading it (gRPC still decodes the CheckRequest, with
// helix-authz's codec).
type noopServer struct {
	authv3.UnimplementedAuthorizationServer
}

var okResponse = &authv3.CheckResponse{
	Status:       &status.Status{Code: 0},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (noopServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResponse, nil
}

// serveNoop runs the no-op server on addr until ctx ends. It runs in a
// child process of the benchmark (--serve-noop), as helix-authz does, so
// that both servers compete with the load generator alike. Its options
// are helix-authz's (server.GRPCOptions).
func serveNoop(ctx context.Context, addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("no-op server: %w", err)
	}
	gs := grpc.NewServer(server.GRPCOptions()...)
	authv3.RegisterAuthorizationServer(gs, noopServer{})
	go func() {
		<-ctx.Done()
		gs.Stop()
	}()
	return gs.Serve(lis)
}
