package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/pki"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

func TestUsageFlags(t *testing.T) {
	xds := []string{"--xds-address=127.0.0.1:1", "--xds-ca-file=ca", "--xds-cert-file=c", "--xds-key-file=k", "--advertise-address=127.0.0.1"}
	for _, tc := range []struct {
		args          []string
		want          string // "" = accepted
		ca, cert, key string
	}{
		{args: nil},
		{args: append([]string{"--usage-address=127.0.0.1:9"}, xds...), ca: "ca", cert: "c", key: "k"},
		{args: append([]string{"--usage-address=127.0.0.1:9", "--usage-cert-file=uc", "--usage-key-file=uk"}, xds...), ca: "ca", cert: "uc", key: "uk"},
		{args: []string{"--usage-address=127.0.0.1:9", "--usage-ca-file=a", "--usage-cert-file=b", "--usage-key-file=c"}, ca: "a", cert: "b", key: "c"},
		{args: []string{"--usage-address=127.0.0.1:9"}, want: "--usage-address needs --usage-ca-file"},
		{args: []string{"--usage-address=helix-authz"}, want: `--usage-address "helix-authz"`},
		{args: []string{"--usage-flush-interval=0s"}, want: "--usage-flush-interval 0s must be positive"},
		{args: []string{"--usage-max-keys=0"}, want: "--usage-max-keys 0"},
	} {
		o, err := parseFlags(append([]string{"--model-repository", "models"}, tc.args...))
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
			continue
		}
		if err == nil && (o.usageCAFile != tc.ca || o.usageCertFile != tc.cert || o.usageKeyFile != tc.key) {
			t.Errorf("%q: files %q %q %q, want %q %q %q", tc.args, o.usageCAFile, o.usageCertFile, o.usageKeyFile, tc.ca, tc.cert, tc.key)
		}
	}
}

// recordingLedger is helix-authz's Ledger as far as the worker can tell:
// it notes who called (the mTLS identity) and what was counted.
type recordingLedger struct {
	usagev1.UnimplementedLedgerServer
	mu       sync.Mutex
	callers  []string
	requests uint64
}

func (l *recordingLedger) Record(ctx context.Context, req *usagev1.RecordRequest) (*usagev1.RecordResponse, error) {
	id, err := identity.FromContext(ctx)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.callers = append(l.callers, id)
	for _, r := range req.GetRows() {
		l.requests += r.GetRequests()
	}
	return &usagev1.RecordResponse{}, nil
}

// TestUsageReportsOverMTLS: the worker reports with its registration
// certificate (a worker identity) to a listener that requires client
// certificates, and its last flush at stop carries what was counted.
func TestUsageReportsOverMTLS(t *testing.T) {
	certs := newTestCerts(t)
	serverCert, err := tls.LoadX509KeyPair(pki.Files(certs.ours, pki.AuthzServer))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(caFile(certs.ours))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
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

	cert, key := pki.Files(certs.ours, pki.WorkerClientName(testWorker))
	o, err := parseFlags([]string{"--model-repository", "models", "--id", testWorker,
		"--usage-address", lis.Addr().String(), "--usage-ca-file", caFile(certs.ours),
		"--usage-cert-file", cert, "--usage-key-file", key, "--usage-flush-interval", "1h"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	counts, stop, err := startUsage(t.Context(), o, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	counts.AddRequest(time.Now(), "acme", "simple", 1, false, time.Millisecond, time.Millisecond)
	counts.AddRequest(time.Now(), "acme", "simple", 1, false, time.Millisecond, time.Millisecond)
	stop()

	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	if ledger.requests != 2 || len(ledger.callers) != 1 || ledger.callers[0] != identity.Worker(testWorker) {
		t.Errorf("ledger got %d requests from %v, want 2 from %s", ledger.requests, ledger.callers, identity.Worker(testWorker))
	}
	if n, err := reg.Gather(); err != nil || len(n) != 3 {
		t.Errorf("registered metric families: %d (%v), want 3", len(n), err)
	}
}
