package registration_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/helixflow/helixflow/workers/registration"
	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/registry/registrytest"
)

func TestLoadClientTLSErrors(t *testing.T) {
	dir := t.TempDir()
	pki := registrytest.NewPKI(t, "w")
	ca, cert, key := pki.WriteClientFiles(t, dir, "w")
	notPEM := filepath.Join(dir, "junk")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, files := range map[string][3]string{
		"missing CA":   {filepath.Join(dir, "nope"), cert, key},
		"CA not PEM":   {notPEM, cert, key},
		"missing cert": {ca, filepath.Join(dir, "nope"), key},
		"key mismatch": {ca, cert, ca},
	} {
		if _, err := registration.LoadClientTLS(files[0], files[1], files[2]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := registration.LoadClientTLS(ca, cert, key); err != nil {
		t.Fatalf("valid files: %v", err)
	}
}

// A rotated client certificate is used on the next connection.
func TestLoadClientTLSRotation(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	identify := func(ctx context.Context) (string, error) {
		id, err := registry.WorkerIdentity(ctx)
		if err != nil {
			return "", err
		}
		p, _ := peer.FromContext(ctx)
		cn := p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].Subject.CommonName
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 || seen[len(seen)-1] != cn {
			seen = append(seen, cn)
		}
		return id, nil
	}
	lastCN := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return ""
		}
		return seen[len(seen)-1]
	}
	pki := registrytest.NewPKI(t, "unused")
	srv := registrytest.Start(t, registrytest.Options{PKI: pki, Config: registry.Config{TTL: time.Second, Identify: identify, Logger: quiet}})
	dir := t.TempDir()
	ca, cert, key := pki.WriteClientFiles(t, dir, "worker-a")
	tlsCfg, err := registration.LoadClientTLS(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{}
	w.set(true)
	cfg := config(srv, w)
	cfg.TLS = tlsCfg
	cfg.WorkerID = "w1"
	run(t, cfg)
	waitFor(t, srv.Registry, "registration", 5*time.Second, func(ws []registry.Worker) bool { return len(ws) == 1 })
	if got := lastCN(); got != "worker-a" {
		t.Fatalf("client certificate %q, want worker-a", got)
	}

	pki.WriteClientFiles(t, dir, "worker-b")
	srv.Stop() // forces a new connection, hence a new handshake
	srv2 := registrytest.Start(t, registrytest.Options{Addr: srv.Addr, PKI: pki, Config: registry.Config{TTL: time.Second, Identify: identify, Logger: quiet}})
	waitFor(t, srv2.Registry, "re-registration", 5*time.Second, func(ws []registry.Worker) bool { return len(ws) == 1 })
	if got := lastCN(); got != "worker-b" {
		t.Fatalf("client certificate after rotation %q, want worker-b", got)
	}
}
