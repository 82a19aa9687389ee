package usage

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

type ledgerServer struct {
	usagev1.UnimplementedLedgerServer
	ledger *fakeLedger
}

func (s ledgerServer) Record(ctx context.Context, req *usagev1.RecordRequest) (*usagev1.RecordResponse, error) {
	dup, err := s.ledger.Record(ctx, req)
	if err != nil {
		return nil, err
	}
	return &usagev1.RecordResponse{Duplicate: dup}, nil
}

// TestGRPCSink: the Ledger service's answers and status codes reach the
// Reporter through NewGRPCSink.
func TestGRPCSink(t *testing.T) {
	ledger := newFakeLedger()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	usagev1.RegisterLedgerServer(gs, ledgerServer{ledger: ledger})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	sink := NewGRPCSink(conn)
	req := &usagev1.RecordRequest{Reporter: "r", Seq: 1, Rows: []*usagev1.UsageRow{{HourUnix: 3600, ClientId: "c", Model: "m", Requests: 1}}}
	for i, want := range []bool{false, true} {
		dup, err := sink.Record(t.Context(), req)
		if err != nil || dup != want {
			t.Fatalf("call %d: duplicate %v, %v; want %v", i, dup, err, want)
		}
	}
	ledger.reject = 1
	_, err = sink.Record(t.Context(), req)
	if !rejected(err) {
		t.Errorf("InvalidArgument over gRPC = %v, not seen as rejected", err)
	}
}
