package main

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/internal/pki"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

// TestUsageServerName: --usage-server-name is the name helix-authz's
// certificate is checked for, whatever host --usage-address names (the
// Helm chart dials the Service and checks the issuer's host, which a
// publicly issued certificate carries alone); a name the certificate
// lacks fails the handshake, and nothing is reported.
func TestUsageServerName(t *testing.T) {
	certs := newTestCerts(t)
	serverCert, err := tls.LoadX509KeyPair(pki.Files(certs.ours, pki.AuthzServer))
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(caFile(certs.ours))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cert, key := pki.Files(certs.ours, pki.WorkerClientName(testWorker))
	for _, tc := range []struct {
		name string
		want uint64 // requests the ledger receives
	}{
		{"helix-authz", 1},   // in the certificate (not the dialed 127.0.0.1)
		{"other.example", 0}, // not in it
	} {
		t.Run(tc.name, func(t *testing.T) {
			ledger := &recordingLedger{}
			gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
				Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
			})))
			usagev1.RegisterLedgerServer(gs, ledger)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = gs.Serve(lis) }()
			t.Cleanup(gs.Stop)
			o, err := parseFlags([]string{"--model-repository", "models", "--id", testWorker,
				"--usage-address", lis.Addr().String(), "--usage-ca-file", caFile(certs.ours),
				"--usage-cert-file", cert, "--usage-key-file", key, "--usage-server-name", tc.name, "--usage-flush-interval", "1h"})
			if err != nil {
				t.Fatal(err)
			}
			counts, stop, err := startUsage(t.Context(), o, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			counts.AddRequest(time.Now(), "acme", "simple", 1, false, time.Millisecond, time.Millisecond)
			stop()
			ledger.mu.Lock()
			defer ledger.mu.Unlock()
			if ledger.requests != tc.want {
				t.Errorf("ledger got %d requests, want %d", ledger.requests, tc.want)
			}
		})
	}
}
