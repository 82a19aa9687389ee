package server

import (
	"context"
	"net"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/tlsfiles"
	"github.com/helixflow/helixflow/workers/registration"
)

// Over real mTLS with internal/pki's certificates, all from one CA: Envoy
// reads its config, and a worker's certificate opens no stream at all
// (Envoy's config holds its secrets).
func TestStreamIdentities(t *testing.T) {
	dir := t.TempDir()
	worker, err := pki.WorkerClient("w1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Init(t.Context(), pki.Options{Dir: dir}, append(pki.LocalSpecs(), worker)); err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.Files(dir, pki.CAName)
	cert, key := pki.Files(dir, pki.XDSServer)
	serverTLS, err := tlsfiles.ServerConfig(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := New(ctx, Options{Registerer: prometheus.NewRegistry(), Readers: identity.ADSReaders()})
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, srv, gateway(t, 9001))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	srv.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	as := func(name string) *sotw {
		c, k := pki.Files(dir, name)
		tc, err := registration.LoadClientTLS(ca, c, k)
		if err != nil {
			t.Fatal(err)
		}
		tc.ServerName = "helix-xds"
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tc.Clone())))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return (&harness{srv: srv, conn: conn}).sotw(t)
	}
	refused := func(c *sotw, why string) {
		t.Helper()
		select {
		case err := <-c.errs:
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("%s: stream ended with %v, want PermissionDenied", why, err)
			}
		case r := <-c.resps:
			t.Fatalf("%s: served %s", why, r.GetTypeUrl())
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: not refused", why)
		}
	}

	envoy := as(pki.EnvoyXDSClient)
	envoy.send(&discovery.DiscoveryRequest{Node: node("helix"), TypeUrl: resourcev3.ClusterType})
	envoy.recv(resourcev3.ClusterType)

	// Refused as it opens: the send may already find the stream ended.
	w := as(pki.WorkerClientName("w1"))
	_ = w.stream.Send(&discovery.DiscoveryRequest{Node: node("helix"), TypeUrl: resourcev3.ClusterType})
	refused(w, "a worker's certificate")
}
