package helixflow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helixflow/helixflow/sdk/go/inference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// tokenServer is a fake helix-authz token endpoint: client "id" with
// secret "secret" (HTTP Basic) gets tokens "tok-<n>" living lifetime.
type tokenServer struct {
	*httptest.Server
	issued   atomic.Int32
	lifetime time.Duration
	status   int // when not 0, every request is answered with it
}

func newTokenServer(t *testing.T, pki testPKI, lifetime time.Duration) *tokenServer {
	ts := &tokenServer{lifetime: lifetime}
	ts.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ts.status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(ts.status)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"no"}`)
			return
		}
		id, secret, ok := r.BasicAuth()
		if !ok || id != "id" || secret != "secret" || r.FormValue("grant_type") != "client_credentials" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		n := ts.issued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"bearer","expires_in":%d}`, n, int(ts.lifetime.Seconds()))
	}))
	ts.TLS = pki.serverTLS()
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

func TestClientCredentialsRefreshBeforeExpiry(t *testing.T) {
	pki := newTestPKI(t)
	// A margin over oauth2's own 10 s, so that a second cache in between
	// would show.
	ts := newTokenServer(t, pki, 12*time.Second)
	creds, err := NewClientCredentials(ClientCredentialsConfig{
		ClientID: "id", ClientSecret: "secret", TokenURL: ts.URL + "/oauth2/token", CAFile: pki.caFile,
		RefreshBefore: 11 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !creds.RequireTransportSecurity() {
		t.Fatal("a bearer token must require transport security")
	}
	get := func() string {
		md, err := creds.GetRequestMetadata(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return md["authorization"]
	}
	// Concurrent callers share one token.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { _ = get() })
	}
	wg.Wait()
	if got := get(); got != "Bearer tok-1" || ts.issued.Load() != 1 {
		t.Fatalf("%q after %d fetches, want one token", got, ts.issued.Load())
	}
	// 12 s tokens replaced 11 s before expiry: a new one after 1 s.
	time.Sleep(1200 * time.Millisecond)
	if got := get(); got != "Bearer tok-2" {
		t.Fatalf("%q, want a refreshed token", got)
	}
}

func TestTokenErrorsAreGRPCStatuses(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name   string
		status int
		secret string
		want   codes.Code
	}{
		{"wrong secret", 0, "nope", codes.Unauthenticated},
		{"server down", http.StatusServiceUnavailable, "secret", codes.Unavailable},
		{"throttled", http.StatusTooManyRequests, "secret", codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServer(t, pki, time.Minute)
			ts.status = tc.status
			creds, err := NewClientCredentials(ClientCredentialsConfig{ClientID: "id", ClientSecret: tc.secret, TokenURL: ts.URL, CAFile: pki.caFile})
			if err != nil {
				t.Fatal(err)
			}
			_, err = creds.GetRequestMetadata(context.Background())
			if got := status.Code(err); got != tc.want {
				t.Fatalf("code %v (%v), want %v", got, err, tc.want)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		creds, _ := NewClientCredentials(ClientCredentialsConfig{ClientID: "id", ClientSecret: "s", TokenURL: "https://127.0.0.1:1/token", CAFile: pki.caFile})
		if _, err := creds.GetRequestMetadata(context.Background()); status.Code(err) != codes.Unavailable {
			t.Fatalf("%v, want UNAVAILABLE", err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		fn   func() error
		want string
	}{
		{"no secret", func() error {
			_, err := NewClientCredentials(ClientCredentialsConfig{ClientID: "a", TokenURL: "https://x"})
			return err
		}, "HELIX_CLIENT_SECRET"},
		{"no token URL", func() error {
			_, err := NewClientCredentials(ClientCredentialsConfig{ClientID: "a", ClientSecret: "b"})
			return err
		}, "HELIX_TOKEN_URL"},
		{"empty API key", func() error { _, err := NewAPIKey(""); return err }, "HELIX_API_KEY"},
		{"missing CA file", func() error {
			_, err := NewClientCredentials(ClientCredentialsConfig{ClientID: "a", ClientSecret: "b", TokenURL: "https://x", CAFile: "/nonexistent/ca.crt"})
			return err
		}, "read CA file"},
		{"no credentials", func() error { _, err := NewClient("127.0.0.1:1", Options{}); return err }, "no credentials"},
		{"no address", func() error { _, err := NewClient("", Options{}); return err }, "HELIX_GRPC_ADDR"},
	}
	for _, tc := range tests {
		if err := tc.fn(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

// authServer answers ModelInfer with the authorization or x-api-key it got.
type authServer struct {
	inference.UnimplementedGRPCInferenceServiceServer
}

func (authServer) ModelInfer(ctx context.Context, _ *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	got := strings.Join(append(md.Get("authorization"), md.Get(APIKeyHeader)...), ",")
	return &inference.ModelInferResponse{Id: got}, nil
}

// TestClientEndToEnd: NewClient over TLS with the test CA signs gRPC and
// REST calls with its credentials, and the REST calls retry a 429.
func TestClientEndToEnd(t *testing.T) {
	pki := newTestPKI(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(grpccreds.NewTLS(pki.serverTLS())))
	inference.RegisterGRPCInferenceServiceServer(gs, authServer{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	var usageCalls atomic.Int32
	rest := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(APIKeyHeader) != "hx_test" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"unauthorized","error_description":"no key"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/models":
			fmt.Fprint(w, `{"models":[{"name":"simple","versions":["1"],"ready":true,"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[16]}],"config":null}]}`)
		case "/api/v1/models/simple":
			fmt.Fprint(w, `{"name":"simple","versions":["1"],"ready":true}`)
		case "/api/v1/usage":
			if usageCalls.Add(1) == 1 {
				w.Header().Set(RateLimitResetHeader, "0")
				w.WriteHeader(http.StatusTooManyRequests)
				fmt.Fprint(w, `{"error":"too_many_requests","error_description":"slow down"}`)
				return
			}
			if r.URL.Query().Get("granularity") != "day" || r.URL.Query().Get("from") != "2026-12-01T00:00:00Z" {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, `{"error":"invalid_request","error_description":"query %s"}`, r.URL.RawQuery)
				return
			}
			fmt.Fprint(w, `{"granularity":"day","from":"2026-12-01T00:00:00Z","to":"2026-12-08T00:00:00Z","rows":[{"start":"2026-12-01T00:00:00Z","client_id":"c","model":"simple","requests":3,"inferences":3,"errors":0,"throttled":1,"compute_seconds":0.5,"latency_p50_ms":1.5,"latency_p99_ms":null}],"totals":{"requests":3,"inferences":3,"errors":0,"throttled":1,"compute_seconds":0.5,"latency_p50_ms":1.5,"latency_p99_ms":null}}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"not_found","error_description":"model not found"}`)
		}
	}))
	rest.TLS = pki.serverTLS()
	rest.StartTLS()
	t.Cleanup(rest.Close)

	key, err := NewAPIKey("hx_test")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(lis.Addr().String(), Options{Credentials: key, CAFile: pki.caFile, RESTURL: rest.URL + "/",
		Retry: RetryPolicy{BaseDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := c.Inference.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "simple"})
	if err != nil || resp.GetId() != "hx_test" {
		t.Fatalf("ModelInfer: %v, the server saw %q", err, resp.GetId())
	}
	models, err := c.Models(ctx)
	if err != nil || len(models) != 1 || models[0].Name != "simple" || models[0].Inputs[0].Shape[0] != 16 {
		t.Fatalf("Models: %+v, %v", models, err)
	}
	if m, err := c.Model(ctx, "simple"); err != nil || !m.Ready {
		t.Fatalf("Model: %+v, %v", m, err)
	}
	_, err = c.Model(ctx, "nope")
	var ae *APIError
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &ae) || ae.Code != "not_found" {
		t.Fatalf("Model(nope): %v, want a not_found APIError", err)
	}
	u, err := c.Usage(ctx, UsageQuery{From: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Granularity: "day"})
	if err != nil || u.Totals.Requests != 3 || u.Rows[0].Throttled != 1 || *u.Rows[0].LatencyP50Ms != 1.5 || u.Rows[0].LatencyP99Ms != nil {
		t.Fatalf("Usage: %+v, %v", u, err)
	}
	if usageCalls.Load() != 2 {
		t.Fatalf("%d usage calls, want the 429 retried once", usageCalls.Load())
	}
	// Bad credentials are a plain 401 error, not retried.
	bad, _ := NewAPIKey("hx_wrong")
	c2, _ := NewClient(lis.Addr().String(), Options{Credentials: bad, CAFile: pki.caFile, RESTURL: rest.URL})
	defer c2.Close()
	if _, err := c2.Models(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("%v, want a 401 APIError", err)
	}
}

func TestTokenFetchHonoursTheContext(t *testing.T) {
	pki := newTestPKI(t)
	release := make(chan struct{})
	slow := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	slow.TLS = pki.serverTLS()
	slow.StartTLS()
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	creds, err := NewClientCredentials(ClientCredentialsConfig{ClientID: "id", ClientSecret: "s", TokenURL: slow.URL, CAFile: pki.caFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = creds.GetRequestMetadata(ctx)
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 2*time.Second {
		t.Fatalf("%v after %v, want DEADLINE_EXCEEDED at the context's deadline", err, time.Since(start))
	}
}
