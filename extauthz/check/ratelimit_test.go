package check

import (
	"context"
	"fmt"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/proto/inference"
)

// fakeLimits answers Take with a fixed decision and records its calls; the
// limiter itself is tested against a real Redis in extauthz/ratelimit.
type fakeLimits struct {
	d     ratelimit.Decision
	err   error
	calls []string
}

func (f *fakeLimits) Take(_ context.Context, plan, client, model string) (ratelimit.Decision, error) {
	f.calls = append(f.calls, fmt.Sprintf("%s/%s/%s", plan, client, model))
	return f.d, f.err
}

var twoWindows = []ratelimit.Window{{Limit: 5, Length: time.Second}, {Limit: 100, Length: time.Minute}}

func responseHeadersToAdd(resp *authv3.CheckResponse) map[string]string {
	out := map[string]string{}
	for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return out
}

func TestRateLimits(t *testing.T) {
	unavailable := fmt.Errorf("%w: connection refused", ratelimit.ErrUnavailable)
	tests := []struct {
		name     string
		limits   fakeLimits
		grpc     bool
		status   int
		code     codes.Code
		headers  map[string]string // on the denial
		toClient map[string]string // added to the upstream's answer
	}{
		{
			name:     "within the plan: the client sees its state",
			limits:   fakeLimits{d: ratelimit.Decision{Allowed: true, Limit: 5, Remaining: 3, Reset: 400 * time.Millisecond, Windows: twoWindows}},
			status:   200,
			toClient: map[string]string{"x-ratelimit-limit": "5, 5;w=1, 100;w=60", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "1"},
		},
		{
			name:    "over the plan: 429 with the window to wait for",
			limits:  fakeLimits{d: ratelimit.Decision{Limit: 100, Reset: 41500 * time.Millisecond, Windows: twoWindows}},
			status:  429,
			headers: map[string]string{"x-ratelimit-limit": "100, 5;w=1, 100;w=60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "42", "retry-after": "42"},
		},
		{
			name:    "over the plan over gRPC: RESOURCE_EXHAUSTED",
			limits:  fakeLimits{d: ratelimit.Decision{Limit: 5, Reset: time.Second, Windows: twoWindows}},
			grpc:    true,
			status:  429,
			code:    codes.ResourceExhausted,
			headers: map[string]string{"grpc-status": "8", "x-ratelimit-remaining": "0", "retry-after": "1"},
		},
		{
			name:     "plan without limits: no headers",
			limits:   fakeLimits{d: ratelimit.Decision{Allowed: true}},
			status:   200,
			toClient: map[string]string{},
		},
		{
			name:     "counters down, failure mode open: passes without headers",
			limits:   fakeLimits{d: ratelimit.Decision{Allowed: true}, err: unavailable},
			status:   200,
			toClient: map[string]string{},
		},
		{
			name:    "counters down, failure mode closed: 503",
			limits:  fakeLimits{err: unavailable},
			status:  503,
			headers: map[string]string{"retry-after": "1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			lim := tt.limits
			e.svc.rateLimits = &lim
			tok := e.mint(t, claims([]string{"models:infer"}, []string{"*"}))
			req := restReq("POST", "/v2/models/resnet/infer", bearerHdr(tok))
			if tt.grpc {
				req = grpcReq("ModelInfer", marshalFrame(t, &inference.ModelInferRequest{ModelName: "resnet"}), bearerHdr(tok))
			}
			resp, err := e.svc.Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			r := decode(t, resp)
			if r.http != tt.status {
				t.Fatalf("status %d, want %d (body %q)", r.http, tt.status, r.body)
			}
			if tt.code != 0 && r.grpc != tt.code {
				t.Fatalf("gRPC code %v, want %v", r.grpc, tt.code)
			}
			for k, v := range tt.headers {
				if r.headers[k] != v {
					t.Errorf("denial header %s = %q, want %q (all: %v)", k, r.headers[k], v, r.headers)
				}
			}
			if tt.toClient != nil {
				if got := responseHeadersToAdd(resp); fmt.Sprint(got) != fmt.Sprint(tt.toClient) {
					t.Errorf("headers for the client %v, want %v", got, tt.toClient)
				}
			}
			if len(lim.calls) != 1 || lim.calls[0] != "gold/client-a/resnet" {
				t.Fatalf("limiter calls %v, want one for gold/client-a/resnet", lim.calls)
			}
			if tt.status == 429 {
				if n := testutil.ToFloat64(e.svc.metrics.requests.WithLabelValues("client-a", "resnet", kindInfer, resultRateLimited)); n != 1 {
					t.Fatalf("client_requests_total{result=rate_limited} = %v, want 1: over the limit is not a denial of the client", n)
				}
			}
		})
	}
}

// TestRateLimitsOnlyAfterAuthorization: a refused request costs no count.
func TestRateLimitsOnlyAfterAuthorization(t *testing.T) {
	e := newEnv(t)
	lim := &fakeLimits{d: ratelimit.Decision{Allowed: true}}
	e.svc.rateLimits = lim
	for _, req := range []*authv3.CheckRequest{
		restReq("POST", "/v2/models/resnet/infer", nil),
		restReq("POST", "/v2/models/resnet/infer", bearerHdr(e.mint(t, claims([]string{"models:read"}, []string{"*"})))),
		restReq("POST", "/v2/models/resnet/infer", bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"bert"})))),
	} {
		resp, err := e.svc.Check(context.Background(), req)
		if err != nil || resp.GetOkResponse() != nil {
			t.Fatalf("refused request answered %v, %v", resp, err)
		}
	}
	if len(lim.calls) != 0 {
		t.Fatalf("refused requests were counted: %v", lim.calls)
	}
}
