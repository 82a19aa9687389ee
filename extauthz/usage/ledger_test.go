package usage_test

import (
	"crypto/tls"
	"log/slog"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/extauthz/usage"
	"github.com/helixflow/helixflow/internal/identity"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
	"github.com/helixflow/helixflow/xds/registry/registrytest"
)

// TestLedgerIdentity: over real mTLS, a worker identity records (once),
// Envoy's identity and a certificate without one are refused, and a batch
// the ledger cannot hold is INVALID_ARGUMENT (the reporter drops it).
func TestLedgerIdentity(t *testing.T) {
	st, pool := newStore(t)
	pki := registrytest.NewPKI(t, "pool-a")
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.Server)))
	usage.NewLedger(st, orgs, slog.New(slog.DiscardHandler)).Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	client := func(conf *tls.Config) usagev1.LedgerClient {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return usagev1.NewLedgerClient(conn)
	}
	batch := &usagev1.RecordRequest{Reporter: "worker/pool-a/b", Seq: 1, Rows: []*usagev1.UsageRow{row(hour0, "client-a", "resnet", 2)}}

	worker := client(pki.Client)
	for _, wantDup := range []bool{false, true} {
		resp, err := worker.Record(ctx(t), batch)
		if err != nil || resp.GetDuplicate() != wantDup {
			t.Fatalf("worker: %v %v, want duplicate %v", resp, err, wantDup)
		}
	}
	if r, _ := readRow(t, pool, hour0, "client-a", "resnet"); r.requests != 2 {
		t.Fatalf("%d requests, want 2 (once)", r.requests)
	}
	bad := &usagev1.RecordRequest{Reporter: "worker/pool-a/b", Seq: 2, Rows: []*usagev1.UsageRow{{HourUnix: 1, ClientId: "c", Model: "m"}}}
	if _, err := worker.Record(ctx(t), bad); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("invalid batch: %v, want InvalidArgument", err)
	}
	for name, conf := range map[string]*tls.Config{
		"envoy":       pki.ClientAs(t, "envoy", identity.Envoy),
		"helix-xds":   pki.ClientAs(t, "xds", identity.XDS),
		"no identity": pki.ClientAs(t, "anon"),
	} {
		batch.Seq = 3
		if _, err := client(conf).Record(ctx(t), batch); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", name, err)
		}
	}
	if r, _ := readRow(t, pool, hour0, "client-a", "resnet"); r.requests != 2 {
		t.Fatalf("refused callers changed the ledger: %d requests", r.requests)
	}
}
