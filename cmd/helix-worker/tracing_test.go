package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/telemetry"
	limitsv1 "github.com/helixflow/helixflow/proto/limits/v1"
	"github.com/helixflow/helixflow/workers/infer"
)

// traceLimits answers every Spend allowed and keeps the traceparent each
// call carried.
type traceLimits struct {
	limitsv1.UnimplementedLimitsServer
	mu           sync.Mutex
	traceparents []string
}

func (l *traceLimits) Spend(ctx context.Context, _ *limitsv1.SpendRequest) (*limitsv1.SpendResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	l.mu.Lock()
	l.traceparents = append(l.traceparents, md.Get("traceparent")...)
	l.mu.Unlock()
	return &limitsv1.SpendResponse{Verdict: limitsv1.SpendResponse_ALLOWED}, nil
}

// TestLimitsCarryTraceContext: a stream message's Spend call to
// helix-authz carries the request's W3C trace context (tracing off in this
// process, as it is without --otlp-endpoint: the context still goes on, so
// that helix-authz's span joins the gateway's trace).
func TestLimitsCarryTraceContext(t *testing.T) {
	shutdown, err := telemetry.Setup(t.Context(), "helix-worker", telemetry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())

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
	srv := &traceLimits{}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	})))
	limitsv1.RegisterLimitsServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	cert, key := pki.Files(certs.ours, pki.WorkerClientName(testWorker))
	o, err := parseFlags([]string{"--model-repository", "models", "--id", testWorker,
		"--limits-address", lis.Addr().String(), "--usage-ca-file", caFile(certs.ours),
		"--usage-cert-file", cert, "--usage-key-file", key})
	if err != nil {
		t.Fatal(err)
	}
	lim, stop, err := startLimits(o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithRemoteSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	cred := infer.StreamCredential{Client: "acme", Model: "simple", Credential: "c"}
	if _, err := lim.Spend(ctx, cred, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := lim.Spend(t.Context(), cred, 1); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	want := "00-" + tid.String() + "-"
	if len(srv.traceparents) != 1 || len(srv.traceparents[0]) < len(want) || srv.traceparents[0][:len(want)] != want {
		t.Errorf("traceparents sent: %q, want one of trace %s (none for the call without a trace)", srv.traceparents, tid)
	}
}
