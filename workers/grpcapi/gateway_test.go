package grpcapi

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/internal/wire"
	pb "github.com/helixflow/helixflow/proto/inference"
)

// TestGatewayModelMustMatch: a body naming another model than the one the
// gateway authorized (x-helix-model) is refused by every per-model RPC.
func TestGatewayModelMustMatch(t *testing.T) {
	svc := newFakeService()
	c := startServer(t, svc).infer
	tests := []struct {
		name   string
		header []string
		code   codes.Code
	}{
		{"no gateway", nil, codes.OK},
		{"same model", []string{"simple"}, codes.OK},
		{"other model", []string{"mlp"}, codes.InvalidArgument},
		{"two headers", []string{"simple", "simple"}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			for _, v := range tt.header {
				ctx = metadata.AppendToOutgoingContext(ctx, wire.HeaderModel, v)
			}
			_, err := c.ModelInfer(ctx, int32Request("simple", 16))
			if tt.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				wantCode(t, err, tt.code, "gateway")
			}
			_, err = c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "simple"})
			if tt.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				wantCode(t, err, tt.code, "gateway")
			}
		})
	}
}
