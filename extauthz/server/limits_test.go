package server

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/pgtest"
	limitsv1 "github.com/helixflow/helixflow/proto/limits/v1"
	"github.com/helixflow/helixflow/xds/registry/registrytest"
)

// tokenJTI reads the jti of a token helix-authz issued (the gateway's
// x-helix-credential names it so).
func tokenJTI(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(raw, &c); err != nil || c.JTI == "" {
		t.Fatalf("token claims %s: %v", raw, err)
	}
	return c.JTI
}

// TestLimitsFreePlan: a free-plan client (5/s) spends its messages on the
// counters Check uses, over helix-authz's gRPC listener as a worker: the
// 6th within a second is OVER_LIMIT; disabling the client makes its
// stream's next Spend REVOKED.
func TestLimitsFreePlan(t *testing.T) {
	r := startReplica(t, pgtest.Migrated(t))
	var c clientCreds
	if st := r.adminCall(t, "POST", "/admin/v1/clients", map[string]any{
		"name": "limited", "scopes": []string{"models:infer"}, "models": []string{"*"}, "plan": "free",
	}, &c); st != http.StatusCreated {
		t.Fatalf("create client: %d", st)
	}
	tok, st := r.token(t, c, "")
	if st != 200 {
		t.Fatalf("token: %d", st)
	}
	limits := limitsv1.NewLimitsClient(workerConn(t, r))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := &limitsv1.SpendRequest{ClientId: c.ClientID, Model: "simple", Credential: "jti:" + tokenJTI(t, tok), Count: 1}
	// Redis connects in the background: wait until another model counts.
	waitFor(t, func() bool {
		resp, err := limits.Spend(ctx, &limitsv1.SpendRequest{ClientId: c.ClientID, Model: "warmup", Credential: req.Credential, Count: 1})
		return err == nil && resp.GetVerdict() == limitsv1.SpendResponse_ALLOWED
	})
	for time.Now().Nanosecond() > 500_000_000 {
		time.Sleep(10 * time.Millisecond)
	}
	var got []limitsv1.SpendResponse_Verdict
	for range 6 {
		resp, err := limits.Spend(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.GetVerdict())
	}
	ok, over := limitsv1.SpendResponse_ALLOWED, limitsv1.SpendResponse_OVER_LIMIT
	want := []limitsv1.SpendResponse_Verdict{ok, ok, ok, ok, ok, over}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("6 Spends in one second on a 5/s plan: %v, want %v", got, want)
		}
	}

	if st := r.adminCall(t, "PATCH", "/admin/v1/clients/"+c.ClientID, map[string]any{"enabled": false}, nil); st != http.StatusOK {
		t.Fatalf("disable client: %d", st)
	}
	waitFor(t, func() bool {
		resp, err := limits.Spend(ctx, &limitsv1.SpendRequest{ClientId: c.ClientID, Credential: req.Credential})
		return err == nil && resp.GetVerdict() == limitsv1.SpendResponse_REVOKED
	})
}

// TestLimitsAdmission: on helix-authz's gRPC listener, a worker may call
// Limits and Envoy may not (its requests are counted by Check).
func TestLimitsAdmission(t *testing.T) {
	r := startReplica(t, pgtest.Migrated(t))
	pki, dial := admissionListener(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &limitsv1.SpendRequest{ClientId: "nosuch", Model: "simple", Credential: "jti:x", Count: 1}
	envoy := limitsv1.NewLimitsClient(dial(pki.ClientAs(t, "envoy", identity.Envoy)))
	if _, err := envoy.Spend(ctx, req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Envoy on Limits: %v, want PermissionDenied", err)
	}
	worker := limitsv1.NewLimitsClient(dial(pki.Client))
	if resp, err := worker.Spend(ctx, req); err != nil || resp.GetVerdict() != limitsv1.SpendResponse_REVOKED {
		t.Fatalf("a worker on Limits for an unknown client: %v %v, want REVOKED", resp, err)
	}
}

// workerConn serves r's gRPC services as helix-authz's listener does and
// dials it with a worker's certificate.
func workerConn(t *testing.T, r *replica) *grpc.ClientConn {
	t.Helper()
	pki, dial := admissionListener(t, r)
	return dial(pki.Client)
}

// admissionListener serves r's gRPC services as cmd/helix-authz does (mTLS,
// handshake identity.AuthzListenerPeer, then Admission).
func admissionListener(t *testing.T, r *replica) (*registrytest.PKI, func(*tls.Config) *grpc.ClientConn) {
	t.Helper()
	pki := registrytest.NewPKI(t, "pool-a")
	conf := pki.Server.Clone()
	conf.VerifyConnection = identity.AuthzListenerPeer
	opts := append(GRPCOptions(), grpc.Creds(credentials.NewTLS(conf)))
	gs := grpc.NewServer(append(opts, Admission()...)...)
	r.srv.Check.Register(gs)
	r.srv.Ledger.Register(gs)
	r.srv.Limits.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return pki, func(c *tls.Config) *grpc.ClientConn {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(c)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
}
