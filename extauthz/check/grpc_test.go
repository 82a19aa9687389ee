package check

import (
	"context"
	"net"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/proto/inference"
)

// startServer serves e.svc on 127.0.0.1 and returns a client, as Envoy's
// ext_authz filter would reach it.
func startServer(t testing.TB, e *env) authv3.AuthorizationClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	e.svc.Register(gs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		<-done
	})
	return authv3.NewAuthorizationClient(conn)
}

// envoyCheck is a CheckRequest shaped as Envoy sends it for a gRPC
// ModelInfer with with_request_body {max_request_bytes: 64,
// allow_partial_message: true, pack_as_bytes: true}.
func envoyCheck(path, contentType, auth string, body []byte) *authv3.CheckRequest {
	headers := map[string]string{
		":authority": "gateway.helix.test", ":method": "POST", ":path": path, ":scheme": "https",
		"content-type": contentType, "te": "trailers", "user-agent": "grpc-python/1.62",
		"x-forwarded-proto": "https", "x-request-id": "5b1d0c36-1f2e-4c5b-9d7a-0e3f8f1a2b3c",
	}
	if auth != "" {
		headers["authorization"] = auth
	}
	if len(body) > 0 {
		headers["x-envoy-auth-partial-body"] = "true"
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Principal: ""},
		Destination: &authv3.AttributeContext_Peer{},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1234", Method: "POST", Path: path, Host: "gateway.helix.test", Scheme: "https",
			Protocol: "HTTP/2", Headers: headers, RawBody: body, Size: -1,
		}},
	}}
}

func TestGRPCServerAsEnvoy(t *testing.T) {
	e := newEnv(t)
	client := startServer(t, e)
	resnet := e.mint(t, claims([]string{"models:resnet:infer"}, []string{"resnet"}))

	msg, err := proto.Marshal(&inference.ModelInferRequest{
		ModelName: "resnet", ModelVersion: "1", Id: "42",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{{
			Name: "data", Datatype: "FP32", Shape: []int64{1, 3, 224, 224},
		}},
		Outputs:          []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "prob"}},
		RawInputContents: [][]byte{make([]byte, 3*224*224*4)},
	})
	if err != nil {
		t.Fatal(err)
	}
	body := frame(msg, 64)
	if len(body) != 64 {
		t.Fatalf("body %d bytes", len(body))
	}
	other, err := proto.Marshal(&inference.ModelInferRequest{ModelName: "bert", RawInputContents: [][]byte{make([]byte, 4096)}})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		req   *authv3.CheckRequest
		code  codes.Code
		model string
	}{
		{"ModelInfer allowed", envoyCheck("/inference.GRPCInferenceService/ModelInfer", "application/grpc", "Bearer "+resnet, body), codes.OK, "resnet"},
		{"ModelInfer other model", envoyCheck("/inference.GRPCInferenceService/ModelInfer", "application/grpc", "Bearer "+resnet, frame(other, 64)), codes.PermissionDenied, ""},
		{"ModelInfer no credential", envoyCheck("/inference.GRPCInferenceService/ModelInfer", "application/grpc", "", body), codes.Unauthenticated, ""},
		{"ModelInfer no body", envoyCheck("/inference.GRPCInferenceService/ModelInfer", "application/grpc", "Bearer "+resnet, nil), codes.PermissionDenied, ""},
		{"REST infer", envoyCheck("/v2/models/resnet/infer", "application/json", "Bearer "+resnet, []byte(`{"inputs":[]}`)), codes.OK, "resnet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := client.Check(ctx, tc.req)
			if err != nil {
				t.Fatalf("Check RPC: %v", err)
			}
			r := decode(t, resp)
			if r.grpc != tc.code {
				t.Fatalf("status %v, want %v (body %q)", r.grpc, tc.code, r.body)
			}
			if got := r.headers["x-helix-model"]; got != tc.model {
				t.Fatalf("x-helix-model %q, want %q", got, tc.model)
			}
		})
	}
}
