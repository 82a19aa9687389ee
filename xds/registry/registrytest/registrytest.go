// Package registrytest starts a real registry gRPC server over mTLS on the
// loopback interface, with a throwaway certificate authority, for tests of
// the registry and of its clients.
package registrytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/internal/identity"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/xds/registry"
)

// PKI is a throwaway CA with a server certificate for 127.0.0.1 and
// localhost and a client certificate.
type PKI struct {
	CA *x509.CertPool
	// Server requires and verifies a client certificate.
	Server *tls.Config
	// Client presents the client certificate and trusts only the CA.
	Client *tls.Config
	// ClientNoCert trusts the CA but presents no certificate.
	ClientNoCert *tls.Config

	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

// NewPKI makes a PKI whose client certificate has the common name
// clientName and, when clientName is a valid worker name, the worker
// identity identity.Worker(clientName).
func NewPKI(t testing.TB, clientName string) *PKI {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "registrytest CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("create CA: %v", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("parse CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	p := &PKI{CA: pool, ca: ca, caKey: caKey, serial: 1}
	server := p.leaf(t, "helix-xds", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	client := p.leaf(t, clientName, x509.ExtKeyUsageClientAuth, nil, nil, workerURI(clientName)...)
	p.Server = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{server},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	p.Client = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{client}}
	p.ClientNoCert = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return p
}

// ClientAs returns a client config like Client whose certificate has the
// common name cn and the identities ids (SPIFFE IDs; none: no identity).
// Not safe for concurrent use.
func (p *PKI) ClientAs(t testing.TB, cn string, ids ...string) *tls.Config {
	t.Helper()
	var uris []*url.URL
	for _, id := range ids {
		uris = append(uris, identity.URI(id))
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.CA, Certificates: []tls.Certificate{p.leaf(t, cn, x509.ExtKeyUsageClientAuth, nil, nil, uris...)}}
}

// workerURI is name's worker identity, if name can be a worker's name.
func workerURI(name string) []*url.URL {
	if identity.ValidWorkerName(name) != nil {
		return nil
	}
	return []*url.URL{identity.URI(identity.Worker(name))}
}

func (p *PKI) leaf(t testing.TB, cn string, usage x509.ExtKeyUsage, ips []net.IP, dns []string, uris ...*url.URL) tls.Certificate {
	t.Helper()
	key := newKey(t)
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
		DNSNames:     dns,
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatalf("create certificate %s: %v", cn, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// WriteClientFiles issues a new client certificate with common name cn
// (and identity.Worker(cn) when cn can be a worker's name) and writes it, its key and the CA as PEM files in dir (ca.pem, client.pem,
// client-key.pem), replacing earlier ones. Not safe for concurrent use.
func (p *PKI) WriteClientFiles(t testing.TB, dir, cn string) (caFile, certFile, keyFile string) {
	t.Helper()
	c := p.leaf(t, cn, x509.ExtKeyUsageClientAuth, nil, nil, workerURI(cn)...)
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	for name, block := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: p.ca.Raw},
		certFile: {Type: "CERTIFICATE", Bytes: c.Certificate[0]},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(name, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	return caFile, certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return k
}

// Options configure Start.
type Options struct {
	// Config configures the registry.
	Config registry.Config
	// Addr is the listen address; "" picks a free port on 127.0.0.1.
	Addr string
	// PKI provides the server's TLS; nil makes a new one.
	PKI *PKI
	// ServerTLS, when set, replaces PKI.Server (for example to make the
	// client certificate optional).
	ServerTLS *tls.Config
}

// Server is a running registry.
type Server struct {
	Registry *registry.Registry
	Addr     string
	PKI      *PKI

	stopOnce sync.Once
	stop     func()
}

// Start serves a new registry (with Run going) until Stop or the end of the
// test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.PKI == nil {
		opts.PKI = NewPKI(t, "worker")
	}
	serverTLS := opts.ServerTLS
	if serverTLS == nil {
		serverTLS = opts.PKI.Server
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	reg, err := registry.New(opts.Config)
	if err != nil {
		t.Fatalf("registry.New: %v", err)
	}
	lis, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		t.Fatalf("listen %s: %v", opts.Addr, err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	registryv1.RegisterRegistryServer(gs, reg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer wg.Done(); _ = reg.Run(ctx) }()
	s := &Server{Registry: reg, Addr: lis.Addr().String(), PKI: opts.PKI}
	s.stop = func() {
		cancel()
		gs.Stop()
		wg.Wait()
	}
	t.Cleanup(s.Stop)
	return s
}

// Stop stops serving at once, dropping connections; the registry's table is
// lost with it, as when helix-xds restarts.
func (s *Server) Stop() { s.stopOnce.Do(s.stop) }
