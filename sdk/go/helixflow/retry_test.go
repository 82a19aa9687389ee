package helixflow

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helixflow/helixflow/sdk/go/inference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// flakyServer fails the first `fail` ModelInfer calls with code, sending
// reset (when not empty) as x-ratelimit-reset in the trailer, as Envoy's
// refusal does; then it answers.
type flakyServer struct {
	inference.UnimplementedGRPCInferenceServiceServer
	fail  int32
	code  codes.Code
	reset string
	calls atomic.Int32
}

func (s *flakyServer) ModelInfer(ctx context.Context, _ *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	if n := s.calls.Add(1); n <= s.fail {
		if s.reset != "" {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(RateLimitResetHeader, s.reset))
		}
		return nil, status.Error(s.code, "refused")
	}
	return &inference.ModelInferResponse{ModelName: "m"}, nil
}

// dialFake serves srv in process and dials it with the retry interceptor.
func dialFake(t *testing.T, srv inference.GRPCInferenceServiceServer, p RetryPolicy) inference.GRPCInferenceServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	inference.RegisterGRPCInferenceServiceServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///fake",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(UnaryRetryInterceptor(p)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return inference.NewGRPCInferenceServiceClient(conn)
}

func TestRetry(t *testing.T) {
	fast := RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	tests := []struct {
		name      string
		srv       *flakyServer
		policy    RetryPolicy
		timeout   time.Duration
		wantCode  codes.Code
		wantCalls int32
		minWait   time.Duration
		maxWait   time.Duration
	}{
		{"resource exhausted then success", &flakyServer{fail: 2, code: codes.ResourceExhausted}, fast, time.Minute, codes.OK, 3, 0, time.Second},
		{"unavailable then success", &flakyServer{fail: 3, code: codes.Unavailable}, fast, time.Minute, codes.OK, 4, 0, time.Second},
		{"attempts are bounded", &flakyServer{fail: 100, code: codes.Unavailable}, fast, time.Minute, codes.Unavailable, 4, 0, time.Second},
		{"not retried: invalid argument", &flakyServer{fail: 1, code: codes.InvalidArgument}, fast, time.Minute, codes.InvalidArgument, 1, 0, time.Second},
		{"not retried: unauthenticated", &flakyServer{fail: 1, code: codes.Unauthenticated}, fast, time.Minute, codes.Unauthenticated, 1, 0, time.Second},
		{"MaxAttempts 1 disables", &flakyServer{fail: 1, code: codes.Unavailable}, RetryPolicy{MaxAttempts: 1}, time.Minute, codes.Unavailable, 1, 0, time.Second},
		{"waits at least x-ratelimit-reset", &flakyServer{fail: 1, code: codes.ResourceExhausted, reset: "1"}, fast, time.Minute, codes.OK, 2, time.Second, 3 * time.Second},
		{"reset past the deadline: no wait", &flakyServer{fail: 1, code: codes.ResourceExhausted, reset: "5"}, fast, 500 * time.Millisecond, codes.ResourceExhausted, 1, 0, 400 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFake(t, tc.srv, tc.policy)
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			start := time.Now()
			_, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "m"})
			took := time.Since(start)
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tc.wantCode)
			}
			if got := tc.srv.calls.Load(); got != tc.wantCalls {
				t.Fatalf("%d calls, want %d", got, tc.wantCalls)
			}
			if took < tc.minWait || took > tc.maxWait {
				t.Fatalf("took %v, want within [%v, %v]", took, tc.minWait, tc.maxWait)
			}
		})
	}
}

func TestBackoffIsFullJitterWithinBounds(t *testing.T) {
	p := RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}.withDefaults()
	tests := []struct {
		n     int
		floor time.Duration
		max   time.Duration
	}{
		{0, 0, 100 * time.Millisecond},
		{2, 0, 400 * time.Millisecond},
		{10, 0, time.Second},
		{1, 2 * time.Second, 2*time.Second + 200*time.Millisecond},
	}
	for _, tc := range tests {
		var lo, hi time.Duration = time.Hour, 0
		for range 2000 {
			d := p.backoff(tc.n, tc.floor)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < tc.floor || hi > tc.max {
			t.Errorf("n=%d floor=%v: waits in [%v, %v], want within [%v, %v]", tc.n, tc.floor, lo, hi, tc.floor, tc.max)
		}
		// Full jitter: the waits spread over the whole range.
		if spread := tc.max - tc.floor; hi-lo < spread/2 {
			t.Errorf("n=%d: waits in [%v, %v] do not spread over %v", tc.n, lo, hi, spread)
		}
	}
}

func TestParseSeconds(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true},
		{" 2 ", 2 * time.Second, true},
		{"0.5", 500 * time.Millisecond, true},
		{"0", 0, true},
		{"99999", time.Hour, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"", 0, false},
		{"NaN", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseSeconds(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseSeconds(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestResetFromHeaderOrTrailer(t *testing.T) {
	tests := []struct {
		name   string
		header metadata.MD
		tr     metadata.MD
		want   time.Duration
	}{
		{"trailer", nil, metadata.Pairs("x-ratelimit-reset", "3"), 3 * time.Second},
		{"header", metadata.Pairs("x-ratelimit-reset", "2"), nil, 2 * time.Second},
		{"retry-after", nil, metadata.Pairs("retry-after", "1"), time.Second},
		{"none", nil, nil, 0},
	}
	for _, tc := range tests {
		if got := resetFromMD(tc.tr, tc.header); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
