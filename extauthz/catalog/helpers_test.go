package catalog

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/tlsfiles"
	catalogv1 "github.com/helixflow/helixflow/proto/catalog/v1"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
)

// Test certificates: the local PKI's, plus helix-authz's client
// certificate for helix-xds and a helix-authz certificate posing as a
// server (the wrong identity for helix-xds).
const (
	authzClient = "test-authz-xds-client"
	authzAsXDS  = "test-authz-as-server"
)

type certs struct{ dir string }

func (c certs) files(name string) (cert, key string) { return pki.Files(c.dir, name) }
func (c certs) ca() string                           { cert, _ := pki.Files(c.dir, pki.CAName); return cert }

func newCerts(t testing.TB) certs {
	t.Helper()
	dir := t.TempDir()
	specs := append(pki.LocalSpecs(),
		pki.Spec{Name: authzClient, CommonName: "helix-authz", Usage: pki.ClientAuth, URIs: []*url.URL{identity.URI(identity.Authz)}},
		pki.Spec{Name: authzAsXDS, CommonName: "helix-authz", Usage: pki.ServerAuth, DNSNames: []string{"localhost"},
			IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, URIs: []*url.URL{identity.URI(identity.Authz)}},
	)
	if _, err := pki.Init(context.Background(), pki.Options{Dir: dir}, specs); err != nil {
		t.Fatal(err)
	}
	return certs{dir: dir}
}

// fakeXDS is a real gRPC Catalog server over mTLS, admitting only
// identity.CatalogReaders as helix-xds does, with a scripted answer.
type fakeXDS struct {
	catalogv1.UnimplementedCatalogServer
	addr  string
	calls atomic.Int64

	mu     sync.Mutex
	models []*catalogv1.CatalogModel
	err    error
	block  chan struct{} // when not nil, calls wait for it to close
}

func (f *fakeXDS) ListModels(ctx context.Context, _ *catalogv1.ListModelsRequest) (*catalogv1.ListModelsResponse, error) {
	f.calls.Add(1)
	if _, err := identity.FromContext(ctx); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	f.mu.Lock()
	block, models, err := f.block, f.models, f.err
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	if err != nil {
		return nil, err
	}
	return &catalogv1.ListModelsResponse{Models: models}, nil
}

func (f *fakeXDS) set(models []*catalogv1.CatalogModel, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.models, f.err = models, err
}

// startXDS serves the Catalog with the certificate serverCert.
func startXDS(t testing.TB, c certs, serverCert string) *fakeXDS {
	t.Helper()
	cert, key := c.files(serverCert)
	conf, err := tlsfiles.ServerConfig(cert, key, c.ca(), tlsfiles.AcceptPeers(identity.CatalogReaders()...))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeXDS{addr: lis.Addr().String()}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(conf)))
	catalogv1.RegisterCatalogServer(gs, f)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return f
}

func dial(t testing.TB, c certs, f *fakeXDS, clientCert string) *Client {
	t.Helper()
	cert, key := c.files(clientCert)
	cl, err := Dial(DialConfig{Address: f.addr, CAFile: c.ca(), CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func sampleModels() []*catalogv1.CatalogModel {
	return []*catalogv1.CatalogModel{
		{Name: "densenet", Versions: []string{"1"}, Workers: 2, ReadyWorkers: 0},
		{Name: "simple", Versions: []string{"1", "2"}, Workers: 2, ReadyWorkers: 1, Info: &registryv1.ModelInfo{
			Platform: "onnxruntime_onnx", MaxBatchSize: 8,
			Inputs:     []*registryv1.TensorInfo{{Name: "INPUT0", Datatype: "FP32", Shape: []int64{16}}},
			Outputs:    []*registryv1.TensorInfo{{Name: "OUTPUT0", Datatype: "FP32", Shape: []int64{-1}}},
			ConfigJson: `{"name":"simple","max_batch_size":8}`,
		}},
		{Name: "text", Workers: 1, ReadyWorkers: 1, Info: &registryv1.ModelInfo{ConfigJson: `not json`}},
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
