package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/samplemodel"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/proto/inference"
)

// burst is what a run of requests inside one second got.
type burst struct {
	ok, limited, other int
	// limitHeaders: every 429 carried x-ratelimit-limit (and so on; REST:
	// retry-after too).
	limitHeaders bool
	first        string // the first unexpected answer, for the failure message
}

func (b burst) String() string {
	return fmt.Sprintf("%d ok, %d limited, %d other (first: %s)", b.ok, b.limited, b.other, b.first)
}

// freshSecond waits until just after a second boundary: helix-authz's
// windows are whole seconds, so a short burst then stays in one.
func freshSecond() {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond).Sub(now))
}

// inOneSecond runs send at the start of a second, again (up to three
// tries) when it ran past that second: the plans count per second, and a
// burst that spans two of them on a loaded machine is allowed twice.
func inOneSecond(t *testing.T, send func() burst) burst {
	t.Helper()
	var b burst
	for try := 1; try <= 3; try++ {
		freshSecond()
		start := time.Now()
		b = send()
		if time.Now().Unix() == start.Unix() {
			return b
		}
		t.Logf("try %d: the burst took %s, past its second (%v); again", try, time.Since(start).Round(time.Millisecond), b)
	}
	return b
}

// restBurst sends n REST infers for the sample model, back to back.
func (s *stack) restBurst(t *testing.T, c *http.Client, token string, n int) burst {
	t.Helper()
	return inOneSecond(t, func() burst { return s.restBurstNow(t, c, token, n) })
}

func (s *stack) restBurstNow(t *testing.T, c *http.Client, token string, n int) burst {
	t.Helper()
	b := burst{limitHeaders: true}
	for range n {
		code, body, hdr, err := s.restInferHeaders(context.Background(), c, token)
		switch {
		case err != nil:
			t.Fatal(err)
		case code == http.StatusOK:
			b.ok++
		case code == http.StatusTooManyRequests:
			b.limited++
			for _, h := range []string{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"} {
				if hdr.Get(h) == "" {
					b.limitHeaders = false
				}
			}
		default:
			b.other++
			if b.first == "" {
				b.first = fmt.Sprintf("%d %s", code, body)
			}
		}
	}
	return b
}

func (s *stack) restInferHeaders(ctx context.Context, c *http.Client, token string) (int, string, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var hdr http.Header
	code, body, err := s.restInfer(ctx, &http.Client{Transport: headerCapture{c.Transport, &hdr}}, sampleModel, token, nil)
	return code, string(body), hdr, err
}

// headerCapture keeps the response headers restInfer does not return.
type headerCapture struct {
	rt  http.RoundTripper
	hdr *http.Header
}

func (h headerCapture) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.rt.RoundTrip(r)
	if resp != nil {
		*h.hdr = resp.Header
	}
	return resp, err
}

// grpcBurst sends n ModelInfer calls back to back and tallies their codes.
func grpcBurst(t *testing.T, c inference.GRPCInferenceServiceClient, token string, n int) (burst, map[codes.Code]int) {
	t.Helper()
	var seen map[codes.Code]int
	b := inOneSecond(t, func() burst {
		var b burst
		b, seen = grpcBurstNow(t, c, token, n)
		return b
	})
	return b, seen
}

func grpcBurstNow(t *testing.T, c inference.GRPCInferenceServiceClient, token string, n int) (burst, map[codes.Code]int) {
	t.Helper()
	b := burst{limitHeaders: true}
	seen := map[codes.Code]int{}
	for range n {
		var hdr, trl metadata.MD
		_, err := c.ModelInfer(withToken(t, token), samplemodel.InferRequest(), grpc.Header(&hdr), grpc.Trailer(&trl))
		code := status.Code(err)
		seen[code]++
		switch code {
		case codes.OK:
			b.ok++
		case codes.ResourceExhausted:
			b.limited++
			if len(hdr.Get("x-ratelimit-limit")) == 0 && len(trl.Get("x-ratelimit-limit")) == 0 {
				b.limitHeaders = false
			}
		default:
			b.other++
			if b.first == "" {
				b.first = err.Error()
			}
		}
	}
	return b, seen
}

// testRateLimits runs inside TestGateway: the plans of the gateway config
// enforced by helix-authz inside its ext_authz Check, with the counters in
// Redis, and the Redis-down policy.
func (s *stack) testRateLimits(t *testing.T, https *http.Client) {
	free, standard := s.clients["free"], s.clients["all"]
	grpcClient := inference.NewGRPCInferenceServiceClient(s.grpcConn(t))
	// Whatever fails below, the tests after these get Redis and the
	// original config back.
	defer func() {
		s.startRedis(t)
		writeGatewayConfig(t, s.cfgPath, s.cfg)
	}()

	t.Run("beyond the free plan is 429 with x-ratelimit headers", func(t *testing.T) {
		// The first burst may meet Envoy before its first Check of this
		// client; wait for the first 429.
		var b burst
		waitFor(t, "the free plan enforced", 30*time.Second, s.proc(helixstack.Authz), func(context.Context) error {
			b = s.restBurst(t, https, free.token, 12)
			if b.limited == 0 {
				return fmt.Errorf("no request limited: %v", b)
			}
			return nil
		})
		b = s.restBurst(t, https, free.token, 12)
		if b.ok != 5 || b.limited != 7 || b.other != 0 || !b.limitHeaders {
			t.Fatalf("12 requests in one second on a 5/s plan: %v, x-ratelimit headers and retry-after on every 429: %v", b, b.limitHeaders)
		}
	})
	t.Run("decisions are counted in helix_authz_ratelimit_decisions_total", func(t *testing.T) {
		before := s.rateLimitDecisions(t)
		b := s.restBurst(t, https, free.token, 8)
		after := s.rateLimitDecisions(t)
		// Other tests' traffic may add to them, never take away.
		if got := after["allowed"] - before["allowed"]; got < float64(b.ok) || b.ok == 0 {
			t.Errorf("allowed went up by %v for %v", got, b)
		}
		if got := after["over_limit"] - before["over_limit"]; got < float64(b.limited) || b.limited == 0 {
			t.Errorf("over_limit went up by %v for %v", got, b)
		}
		if after["error"] != before["error"] {
			t.Errorf("error went from %v to %v with Redis up", before["error"], after["error"])
		}
	})
	t.Run("the standard plan is not limited by that burst", func(t *testing.T) {
		if b := s.restBurst(t, https, standard.token, 12); b.ok != 12 {
			t.Fatalf("standard client: %v", b)
		}
	})
	t.Run("beyond the free plan is RESOURCE_EXHAUSTED over gRPC", func(t *testing.T) {
		b, seen := grpcBurst(t, grpcClient, free.token, 12)
		if b.ok != 5 || b.limited != 7 || !b.limitHeaders {
			t.Fatalf("12 gRPC calls in one second on a 5/s plan: %v %v, x-ratelimit metadata: %v", b, seen, b.limitHeaders)
		}
	})

	t.Run("Redis down: fail open by default, never an auth bypass", func(t *testing.T) {
		before := s.rateLimitDecisions(t)
		s.stopRedis(t)
		if b := s.restBurst(t, https, free.token, 8); b.ok != 8 {
			t.Fatalf("with Redis down and failure_mode open, a 5/s client sending 8: %v", b)
		}
		if code, body, _, err := s.restInferHeaders(context.Background(), https, ""); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("no token with Redis down: %d %s (%v)", code, body, err)
		}
		if got := s.rateLimitDecisions(t)["error"] - before["error"]; got < 8 {
			t.Errorf("error went up by %v for 8 requests with Redis down", got)
		}
	})
	t.Run("Redis down with failure_mode closed: 503 / UNAVAILABLE", func(t *testing.T) {
		c := s.cfg
		c.failClosed = true
		writeGatewayConfig(t, s.cfgPath, c)
		// helix-authz follows the file (as helix-xds does); a fresh
		// connection each try, as in the other reload tests.
		waitFor(t, "helix-authz failing closed", 15*time.Second, nil, func(ctx context.Context) error {
			fresh := &http.Client{Transport: https.Transport.(*http.Transport).Clone()}
			defer fresh.CloseIdleConnections()
			code, body, _, err := s.restInferHeaders(ctx, fresh, free.token)
			if err != nil || code != http.StatusServiceUnavailable {
				return fmt.Errorf("%d %s (%v)", code, body, err)
			}
			return nil
		})
		fresh := inference.NewGRPCInferenceServiceClient(s.grpcConn(t))
		if _, err := fresh.ModelInfer(withToken(t, free.token), samplemodel.InferRequest()); status.Code(err) != codes.Unavailable {
			t.Fatalf("gRPC with Redis down, failing closed: %v, want UNAVAILABLE", err)
		}
	})
	t.Run("Redis back: limits again", func(t *testing.T) {
		writeGatewayConfig(t, s.cfgPath, s.cfg)
		s.startRedis(t)
		// helix-authz reconnects in the background: wait for the first
		// 429 again.
		waitFor(t, "limits enforced again", 30*time.Second, s.proc(helixstack.Authz), func(context.Context) error {
			b := s.restBurst(t, https, free.token, 8)
			if b.ok != 5 || b.limited != 3 {
				return fmt.Errorf("8 requests: %v", b)
			}
			return nil
		})
	})
}

// decisionLine is one series of helix_authz_ratelimit_decisions_total in
// the text exposition.
var decisionLine = regexp.MustCompile(`^helix_authz_ratelimit_decisions_total\{result="([a-z_]+)"\} ([0-9.e+]+)$`)

// rateLimitDecisions scrapes helix-authz's decisions by result.
func (s *stack) rateLimitDecisions(t *testing.T) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	body, err := httpGet(ctx, http.DefaultClient, "http://"+addr(s.st.Ports.AuthzMetrics)+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		if m := decisionLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			out[m[1]] = v
		}
	}
	for _, r := range []string{"allowed", "over_limit", "error"} {
		if _, ok := out[r]; !ok {
			t.Fatalf("helix-authz exports no helix_authz_ratelimit_decisions_total{result=%q}:\n%s", r, body)
		}
	}
	return out
}
