package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/pki"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

// checkIdentities calls each mTLS listener of the running stack with the
// certificates of the stack's own CA: Envoy's get in; a worker's does not
// (internal/identity's table), except on helix-authz's gRPC listener,
// where a worker reports usage but may not call Check (nor Envoy the
// Ledger); and a second worker identity cannot take over the registered
// worker id.
func (s *stack) checkIdentities(t *testing.T) {
	intruder, err := pki.WorkerClient("intruder")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Init(t.Context(), pki.Options{Dir: s.st.PKIDir()}, []pki.Spec{intruder}); err != nil {
		t.Fatal(err)
	}
	worker := s.workerCert
	listeners := []struct {
		name, addr, serverName string
		envoy                  envoytest.Pair
	}{
		{"a worker's gRPC", s.workers[0].endpoint(), "helix-worker", pair(s.st, pki.EnvoyWorkerClient)},
	}
	for _, l := range listeners {
		if err := s.tlsVerdict(t, l.addr, l.serverName, l.envoy); err != nil {
			t.Errorf("%s with Envoy's certificate: %v", l.name, err)
		}
		if err := s.tlsVerdict(t, l.addr, l.serverName, worker); err == nil {
			t.Errorf("%s took a worker's certificate", l.name)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	// helix-authz's gRPC listener: Envoy's and a worker's certificates get
	// through the handshake, then each service admits only its own callers.
	authzAddr := addr(s.st.Ports.ExtAuthz)
	for name, p := range map[string]envoytest.Pair{"Envoy's": pair(s.st, pki.EnvoyAuthzClient), "a worker's": worker} {
		if err := s.tlsVerdict(t, authzAddr, "helix-authz", p); err != nil {
			t.Errorf("helix-authz's gRPC listener with %s certificate: %v", name, err)
		}
	}
	check := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v2/health/ready"}}}}
	if _, err := authv3.NewAuthorizationClient(s.dialAuthz(t, worker)).Check(ctx, check); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Check with a worker's certificate: %v, want PERMISSION_DENIED", err)
	}
	batch := &usagev1.RecordRequest{Reporter: "e2e/intruder/1", Seq: 1}
	if _, err := usagev1.NewLedgerClient(s.dialAuthz(t, pair(s.st, pki.EnvoyAuthzClient))).Record(ctx, batch); status.Code(err) != codes.PermissionDenied {
		t.Errorf("the usage Ledger with Envoy's certificate: %v, want PERMISSION_DENIED", err)
	}

	// ADS: a worker's certificate opens no stream.
	conn := s.dialXDS(t, worker)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err == nil {
		_ = stream.Send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.SecretType})
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("ADS with a worker's certificate: %v, want PERMISSION_DENIED", err)
	}

	// The registry: another worker identity cannot take e2e-worker-1 over.
	c, k := s.st.Cert(pki.WorkerClientName("intruder"))
	_, err = registryv1.NewRegistryClient(s.dialXDS(t, envoytest.Pair{CertFile: c, KeyFile: k})).Register(ctx, &registryv1.RegisterRequest{
		WorkerId: s.register.WorkerID, Address: "127.0.0.1", GrpcPort: 1, HttpPort: 2, Ready: true,
	})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "held by another identity") {
		t.Errorf("%s registering %s: %v, want PERMISSION_DENIED", identity.Worker("intruder"), s.register.WorkerID, err)
	}
}

// tlsVerdict completes a TLS handshake (offering h2, as Envoy's gRPC
// clusters do) presenting p, and returns the server's verdict on it: with
// TLS 1.3 a refused certificate shows at the first read, and a gRPC
// server that took it sends its SETTINGS frame first.
func (s *stack) tlsVerdict(t *testing.T, address, serverName string, p envoytest.Pair) error {
	t.Helper()
	conf := s.clientTLS(t, p)
	conf.ServerName, conf.NextProtos = serverName, []string{"h2"}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: conf}
	c, err := d.DialContext(t.Context(), "tcp", address)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return err
	}
	return nil
}

// dialAuthz connects to helix-authz's gRPC listener presenting p.
func (s *stack) dialAuthz(t *testing.T, p envoytest.Pair) *grpc.ClientConn {
	t.Helper()
	conf := s.clientTLS(t, p)
	conf.ServerName = "helix-authz"
	conn, err := grpc.NewClient(addr(s.st.Ports.ExtAuthz), grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// dialXDS connects to helix-xds presenting p.
func (s *stack) dialXDS(t *testing.T, p envoytest.Pair) *grpc.ClientConn {
	t.Helper()
	conf := s.clientTLS(t, p)
	conf.ServerName = "helix-xds"
	conn, err := grpc.NewClient(s.xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
