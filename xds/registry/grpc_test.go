package registry_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/tlsfiles"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/workers/registration"
	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/registry/registrytest"
)

func dial(t *testing.T, addr string, cfg *tls.Config) registryv1.RegistryClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return registryv1.NewRegistryClient(conn)
}

// A real gRPC round trip over mTLS on 127.0.0.1.
func TestGRPCRoundTrip(t *testing.T) {
	srv := registrytest.Start(t, registrytest.Options{Config: registry.Config{
		TTL: 2 * time.Second, Identify: registry.WorkerIdentity, Logger: slog.New(slog.DiscardHandler),
	}})
	c := dial(t, srv.Addr, srv.PKI.Client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changed := srv.Registry.Subscribe(ctx)

	resp, err := c.Register(ctx, &registryv1.RegisterRequest{
		WorkerId: "w1", Address: "127.0.0.1", GrpcPort: 8001, HttpPort: 8000, Ready: true,
		Models: []*registryv1.Model{{Name: "simple", Versions: []string{"1"}, Ready: true}},
	})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if resp.GetLeaseTtl().AsDuration() != 2*time.Second || len(resp.GetLeaseId()) != 32 {
		t.Fatalf("response %v", resp)
	}
	<-changed
	if snap := srv.Registry.Snapshot(); len(snap) != 1 || !snap[0].Serves("simple") {
		t.Fatalf("snapshot %+v", snap)
	}
	if _, err := c.Renew(ctx, &registryv1.RenewRequest{LeaseId: resp.GetLeaseId(), Ready: false}); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	<-changed
	if snap := srv.Registry.Snapshot(); snap[0].Ready || len(snap[0].Models) != 0 {
		t.Fatalf("renewal not applied: %+v", snap)
	}
	_, err = c.Register(ctx, &registryv1.RegisterRequest{WorkerId: "w2", Address: "0.0.0.0", GrpcPort: 1})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad address over the wire: %v", err)
	}
	if _, err := c.Deregister(ctx, &registryv1.DeregisterRequest{LeaseId: resp.GetLeaseId()}); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	<-changed
	if snap := srv.Registry.Snapshot(); len(snap) != 0 {
		t.Fatalf("after deregister: %+v", snap)
	}
}

func TestClientCertificateRequired(t *testing.T) {
	// The server demands a client certificate: no handshake without one.
	srv := registrytest.Start(t, registrytest.Options{Config: registry.Config{Logger: slog.New(slog.DiscardHandler)}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := dial(t, srv.Addr, srv.PKI.ClientNoCert).Register(ctx, &registryv1.RegisterRequest{WorkerId: "w1", Address: "127.0.0.1", GrpcPort: 8001})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("without a client certificate: %v, want UNAVAILABLE (handshake refused)", err)
	}

	// A server that only asks for one still refuses through WorkerIdentity.
	pki := registrytest.NewPKI(t, "worker")
	optional := pki.Server.Clone()
	optional.ClientAuth = tls.VerifyClientCertIfGiven
	srv = registrytest.Start(t, registrytest.Options{PKI: pki, ServerTLS: optional, Config: registry.Config{
		Identify: registry.WorkerIdentity, Logger: slog.New(slog.DiscardHandler),
	}})
	req := &registryv1.RegisterRequest{WorkerId: "w1", Address: "127.0.0.1", GrpcPort: 8001}
	_, err = dial(t, srv.Addr, pki.ClientNoCert).Register(ctx, req)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("without a client certificate: %v, want PERMISSION_DENIED", err)
	}
	if _, err := dial(t, srv.Addr, pki.Client).Register(ctx, req); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
}

// Only a worker's certificate registers a worker: another component's,
// from the same CA, is refused, and cannot renew or end a worker's lease.
func TestWorkerIdentityRequired(t *testing.T) {
	pki := registrytest.NewPKI(t, "helix-worker")
	srv := registrytest.Start(t, registrytest.Options{PKI: pki, Config: registry.Config{
		Identify: registry.WorkerIdentity, Logger: slog.New(slog.DiscardHandler),
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &registryv1.RegisterRequest{WorkerId: "w1", Address: "127.0.0.1", GrpcPort: 8001}
	envoy := dial(t, srv.Addr, pki.ClientAs(t, "helixflow-envoy", identity.Envoy))
	_, err := envoy.Register(ctx, req)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), identity.Envoy+" is not a worker identity") {
		t.Fatalf("Envoy's certificate registering a worker: %v, want PERMISSION_DENIED naming it", err)
	}
	// A worker's common name without its identity does not do.
	if _, err := dial(t, srv.Addr, pki.ClientAs(t, "helix-worker")).Register(ctx, req); status.Code(err) != codes.PermissionDenied ||
		!strings.Contains(status.Convert(err).Message(), "carries no SPIFFE ID") {
		t.Fatalf("a certificate without an identity: %v, want PERMISSION_DENIED", err)
	}
	resp, err := dial(t, srv.Addr, pki.Client).Register(ctx, req)
	if err != nil {
		t.Fatalf("the worker's certificate: %v", err)
	}
	if _, err := envoy.Deregister(ctx, &registryv1.DeregisterRequest{LeaseId: resp.GetLeaseId()}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Envoy's certificate ending a worker's lease: %v, want PERMISSION_DENIED", err)
	}
	if snap := srv.Registry.Snapshot(); len(snap) != 1 {
		t.Fatalf("registry after refused calls: %+v", snap)
	}
}

// Two workers with their own identities, certificates from internal/pki,
// over real mTLS: the second cannot take the first's live worker id, and
// an identity with a model list advertises nothing else.
func TestWorkerIdentitiesOverMTLS(t *testing.T) {
	dir := t.TempDir()
	specs := pki.LocalSpecs()
	for _, name := range []string{"pool-a", "pool-b"} {
		spec, err := pki.WorkerClient(name)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, spec)
	}
	if _, err := pki.Init(t.Context(), pki.Options{Dir: dir}, specs); err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.Files(dir, pki.CAName)
	cert, key := pki.Files(dir, pki.XDSServer)
	serverTLS, err := tlsfiles.ServerConfig(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	srv := registrytest.Start(t, registrytest.Options{ServerTLS: serverTLS, Config: registry.Config{
		Identify: registry.WorkerIdentity, Logger: slog.New(slog.DiscardHandler),
	}})
	srv.Registry.SetModels(map[string][]string{identity.Worker("pool-b"): {"densenet"}})
	client := func(name string) registryv1.RegistryClient {
		c, k := pki.Files(dir, name)
		tc, err := registration.LoadClientTLS(ca, c, k)
		if err != nil {
			t.Fatal(err)
		}
		tc.ServerName = "helix-xds"
		return dial(t, srv.Addr, tc)
	}
	a, b := client(pki.WorkerClientName("pool-a")), client(pki.WorkerClientName("pool-b"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := func(id, addr, model string) *registryv1.RegisterRequest {
		return &registryv1.RegisterRequest{WorkerId: id, Address: addr, GrpcPort: 8001, Ready: true,
			Models: []*registryv1.Model{{Name: model, Versions: []string{"1"}, Ready: true}}}
	}
	if _, err := a.Register(ctx, req("w1", "10.0.0.1", "simple")); err != nil {
		t.Fatalf("pool-a registering w1: %v", err)
	}
	_, err = b.Register(ctx, req("w1", "10.0.0.2", "densenet"))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(),
		`worker_id "w1" is held by another identity (`+identity.Worker("pool-a")+`) under a live lease`) {
		t.Fatalf("pool-b taking w1 over: %v, want PERMISSION_DENIED saying why", err)
	}
	_, err = b.Register(ctx, req("w2", "10.0.0.2", "simple"))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(),
		`identity `+identity.Worker("pool-b")+` may not advertise model "simple"`) {
		t.Fatalf("pool-b advertising a model outside its list: %v, want PERMISSION_DENIED naming it", err)
	}
	if _, err := b.Register(ctx, req("w2", "10.0.0.2", "densenet")); err != nil {
		t.Fatalf("pool-b within its list: %v", err)
	}
	snap := srv.Registry.Snapshot()
	if len(snap) != 2 || snap[0].Identity != identity.Worker("pool-a") || snap[1].Identity != identity.Worker("pool-b") {
		t.Fatalf("snapshot %+v", snap)
	}
}
