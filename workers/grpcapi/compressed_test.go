package grpcapi

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	pb "github.com/helixflow/helixflow/proto/inference"
)

// TestCompressedMessagesRefused: the worker decompresses no gRPC message
// (compression.go), so a compressed message, which could inflate far beyond
// what it cost to send, is refused naming the encoding before anything is
// decompressed; uncompressed calls go on being served. The test binary
// links the OTLP exporter's gzip, as the worker does.
func TestCompressedMessagesRefused(t *testing.T) {
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(ServerOptions(0)...)
	NewServer(newFakeService(), Options{}).Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	dial := func(opts ...grpc.DialOption) pb.GRPCInferenceServiceClient {
		opts = append(opts,
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		conn, err := grpc.NewClient("passthrough:///bufnet", opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return pb.NewGRPCInferenceServiceClient(conn)
	}
	gzipped := dial(grpc.WithCompressor(grpc.NewGZIPCompressor())) // deprecated, but client-only
	_, err := gzipped.ModelInfer(t.Context(), int32Request("simple", 1<<16))
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), errCompressed.Error()) {
		t.Fatalf("gzip-compressed ModelInfer: %v, want INTERNAL: %v", err, errCompressed)
	}
	if _, err := dial().ModelInfer(t.Context(), int32Request("simple", 16)); err != nil {
		t.Fatalf("uncompressed ModelInfer after it: %v", err)
	}
}
