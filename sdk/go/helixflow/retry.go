package helixflow

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RateLimitResetHeader is the gateway's header (and gRPC metadata) telling
// how many seconds remain until the plan's window that refused a request
// ends.
const RateLimitResetHeader = "x-ratelimit-reset"

// RetryPolicy says when and how long to wait before sending a call again.
// The zero value is usable: every zero field takes its Default* value.
//
// A call is retried when it fails with RESOURCE_EXHAUSTED (HTTP 429: over
// the plan's limit, or a model's full queue) or UNAVAILABLE (HTTP 503: a
// worker draining, a limit that could not be checked, a network fault).
// Inference has no side effects, so sending it twice is safe.
//
// The wait before retry n (from 0) is a random duration in
// [0, min(MaxDelay, BaseDelay*2^n)] ("full jitter", so that throttled
// clients do not come back in step); after RESOURCE_EXHAUSTED it is added to
// the x-ratelimit-reset (or retry-after) the gateway sent, since no request
// can pass before that window ends. A wait that would end after the
// context's deadline is not started: the last error is returned at once.
type RetryPolicy struct {
	// MaxAttempts bounds the attempts, the first included; 1 disables
	// retries.
	MaxAttempts int
	BaseDelay   time.Duration
	MaxDelay    time.Duration
}

// Defaults of RetryPolicy's zero fields.
const (
	DefaultMaxAttempts = 6
	DefaultBaseDelay   = 100 * time.Millisecond
	DefaultMaxDelay    = 5 * time.Second
)

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	return p
}

// backoff is the jittered wait before retry n (from 0), at least floor.
func (p RetryPolicy) backoff(n int, floor time.Duration) time.Duration {
	ceil := float64(p.BaseDelay) * math.Pow(2, float64(n))
	if ceil > float64(p.MaxDelay) {
		ceil = float64(p.MaxDelay)
	}
	return floor + time.Duration(rand.Float64()*ceil)
}

// retryable reports whether a gRPC code is worth another attempt.
func retryable(c codes.Code) bool {
	return c == codes.ResourceExhausted || c == codes.Unavailable
}

// sleep waits d unless ctx ends first or its deadline falls before the wait
// would end; it reports whether the wait was done.
func sleep(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// UnaryRetryInterceptor retries unary calls as p says (see RetryPolicy).
// The error returned is the last attempt's, its status code unchanged.
// Neither gRPC's own retries (service config) nor go-grpc-middleware's can
// make a wait depend on the refused answer's x-ratelimit-reset, hence this.
func UnaryRetryInterceptor(p RetryPolicy) grpc.UnaryClientInterceptor {
	p = p.withDefaults()
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		for attempt := 0; ; attempt++ {
			var header, trailer metadata.MD
			err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Header(&header), grpc.Trailer(&trailer))...)
			code := status.Code(err)
			if err == nil || !retryable(code) || attempt+1 >= p.MaxAttempts || ctx.Err() != nil {
				return err
			}
			var floor time.Duration
			if code == codes.ResourceExhausted {
				floor = resetFromMD(trailer, header)
			}
			if !sleep(ctx, p.backoff(attempt, floor)) {
				return err
			}
		}
	}
}

// resetFromMD reads x-ratelimit-reset (else retry-after) from the first of
// mds that has it. A trailers-only answer (Envoy's refusal) carries its
// metadata in the trailer; others may carry it in the header.
func resetFromMD(mds ...metadata.MD) time.Duration {
	for _, name := range []string{RateLimitResetHeader, "retry-after"} {
		for _, md := range mds {
			if v := md.Get(name); len(v) > 0 {
				if d, ok := parseSeconds(v[0]); ok {
					return d
				}
			}
		}
	}
	return 0
}

// parseSeconds reads a non-negative number of seconds (integer or decimal),
// capped at an hour so that a bad header cannot park a client.
func parseSeconds(s string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || math.IsNaN(f) {
		return 0, false
	}
	return time.Duration(math.Min(f, 3600) * float64(time.Second)), true
}
