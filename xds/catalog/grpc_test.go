package catalog_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
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
	catalogv1 "github.com/helixflow/helixflow/proto/catalog/v1"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/xds/catalog"
	"github.com/helixflow/helixflow/xds/registry"
)

// TestCatalogOverMTLS serves the registry and the catalogue on one mTLS
// gRPC listener, as helix-xds does, with the development PKI's
// certificates (helixctl pki init): a worker registers a model with its
// description; helix-authz's certificate lists it; Envoy's and the
// worker's are refused.
func TestCatalogOverMTLS(t *testing.T) {
	dir := t.TempDir()
	w1, err := pki.WorkerClient("w1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Init(context.Background(), pki.Options{Dir: dir}, append(pki.LocalSpecs(), w1)); err != nil {
		t.Fatal(err)
	}
	caFile, _ := pki.Files(dir, pki.CAName)
	cert, key := pki.Files(dir, pki.XDSServer)
	conf, err := tlsfiles.ServerConfig(cert, key, caFile)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Identify: registry.WorkerIdentity, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New(catalog.Config{Source: reg, Readers: identity.CatalogReaders()})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(conf)))
	registryv1.RegisterRegistryServer(gs, reg)
	catalogv1.RegisterCatalogServer(gs, cat)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	dial := func(name string) *grpc.ClientConn {
		t.Helper()
		cf, kf := pki.Files(dir, name)
		pair, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "helix-xds", Certificates: []tls.Certificate{pair}}
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	worker := dial(pki.WorkerClientName("w1"))
	info := &registryv1.ModelInfo{
		Platform: "onnxruntime_onnx", MaxBatchSize: 8,
		Inputs:     []*registryv1.TensorInfo{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{16}}},
		Outputs:    []*registryv1.TensorInfo{{Name: "OUTPUT0", Datatype: "INT32", Shape: []int64{-1}}},
		ConfigJson: `{"name":"simple","max_batch_size":8}`,
	}
	if _, err := registryv1.NewRegistryClient(worker).Register(ctx, &registryv1.RegisterRequest{
		WorkerId: "w1", Address: "127.0.0.1", GrpcPort: 8001, Ready: true,
		Models: []*registryv1.Model{{Name: "simple", Versions: []string{"1"}, Ready: true, Info: info}},
	}); err != nil {
		t.Fatalf("Register: %v", err)
	}

	resp, err := catalogv1.NewCatalogClient(dial(pki.AuthzXDSClient)).ListModels(ctx, &catalogv1.ListModelsRequest{})
	if err != nil {
		t.Fatalf("helix-authz's certificate: %v", err)
	}
	if len(resp.GetModels()) != 1 {
		t.Fatalf("models %v", resp)
	}
	m := resp.GetModels()[0]
	if m.GetName() != "simple" || m.GetReadyWorkers() != 1 || m.GetInfo().GetConfigJson() != info.ConfigJson ||
		m.GetInfo().GetOutputs()[0].GetShape()[0] != -1 {
		t.Fatalf("model %v", m)
	}

	for _, name := range []string{pki.EnvoyXDSClient, pki.WorkerClientName("w1")} {
		_, err := catalogv1.NewCatalogClient(dial(name)).ListModels(ctx, &catalogv1.ListModelsRequest{})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "may not list the models") {
			t.Errorf("%s: %v, want PERMISSION_DENIED", name, err)
		}
	}
	// And helix-authz cannot register a worker with its certificate.
	_, err = registryv1.NewRegistryClient(dial(pki.AuthzXDSClient)).Register(ctx, &registryv1.RegisterRequest{
		WorkerId: "w2", Address: "127.0.0.1", GrpcPort: 8002,
	})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("helix-authz registering a worker: %v", err)
	}
}
