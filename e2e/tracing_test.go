package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/internal/samplemodel"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/proto/inference"
)

// The services of the trace's processes: Envoy's is the gateway config's
// tracing.service_name (its default), the daemons' their program names.
const (
	svcGateway = "helix-gateway"
	svcAuthz   = "helix-authz"
	svcWorker  = "helix-worker"
)

// checkOp is in the name of helix-authz's Check span (otelgrpc's server
// span, envoy.service.auth.v3.Authorization/Check) and of Envoy's ext_authz
// client span above it (async envoy.service.auth.v3.Authorization.Check
// egress): both name the method.
const checkOp = "Check"

// TestTracing: with the stack's Jaeger on and the gateway sampling every
// request, one inference through the full chain is one trace in Jaeger, read
// through its HTTP API, with spans from Envoy, helix-authz and the worker,
// each parented under the Envoy span that made its call; a refused request's
// trace shows the decision and reason, a throttled one the rate-limit
// answer; a malformed traceparent is ignored.
func TestTracing(t *testing.T) {
	if _, err := helixstack.FindJaeger(repoRoot); err != nil {
		testdeps.Missing(t, "%v", err)
	}
	s := startStack(t, stackOptions{tracing: true})
	j := jaeger{base: s.st.JaegerURL(), hc: &http.Client{Timeout: 5 * time.Second}}
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
	all, mlpOnly, free := s.clients["all"], s.clients["mlp-only"], s.clients["free"]
	waitFor(t, "first inference through Envoy", 30*time.Second, nil, func(ctx context.Context) error {
		code, body, err := s.restInfer(ctx, https, sampleModel, all.token, nil)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})
	infer := inference.NewGRPCInferenceServiceClient(s.grpcConn(t))

	t.Run("REST: one trace, Envoy, helix-authz and the worker", func(t *testing.T) {
		since := quiet()
		code, body, err := s.restInfer(context.Background(), https, sampleModel, all.token, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("infer = %d %s (%v)", code, body, err)
		}
		checkRESTOutputs(t, body)
		tr := oneTrace(t, j, since, allowedChain(true, 1))
		checkOnlyTrace(t, j, since, tr.TraceID, svcAuthz, svcWorker)
	})
	t.Run("gRPC: one trace, Envoy, helix-authz and the worker", func(t *testing.T) {
		since := quiet()
		resp, err := infer.ModelInfer(withToken(t, all.token), samplemodel.InferRequest())
		if err != nil {
			t.Fatalf("ModelInfer = %v", err)
		}
		checkGRPCOutputs(t, resp)
		tr := oneTrace(t, j, since, allowedChain(true, 1))
		checkOnlyTrace(t, j, since, tr.TraceID, svcAuthz, svcWorker)
	})
	t.Run("a ModelStreamInfer stream: one trace for the stream", func(t *testing.T) {
		since := quiet()
		stream, err := infer.ModelStreamInfer(withToken(t, all.token))
		if err != nil {
			t.Fatal(err)
		}
		const n = 3
		for i := range n {
			req := samplemodel.InferRequest()
			req.Id = fmt.Sprintf("r%d", i)
			if err := stream.Send(req); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			resp, err := stream.Recv()
			if err != nil || resp.GetErrorMessage() != "" {
				t.Fatalf("answer %d: %v %q", i, err, resp.GetErrorMessage())
			}
			checkGRPCOutputs(t, resp.GetInferResponse())
		}
		// A stream naming no model is checked for every model: its
		// Check span has no helix.model. Each message is queued and
		// executed on its own.
		tr := oneTrace(t, j, since, allowedChain(false, n))
		checkOnlyTrace(t, j, since, tr.TraceID, svcAuthz, svcWorker)
	})
	t.Run("a refused request's trace shows the decision and the reason", func(t *testing.T) {
		since := quiet()
		code, body, err := s.restInfer(context.Background(), https, sampleModel, mlpOnly.token, nil)
		if err != nil || code != http.StatusForbidden {
			t.Fatalf("infer on %s with models:mlp:infer = %d %s (%v), want 403", sampleModel, code, body, err)
		}
		oneTrace(t, j, since, func(tr jTrace) error {
			check, err := checkSpan(tr)
			if err != nil {
				return err
			}
			if err := wantTags(check, telemetry.AttrDecision, telemetry.DecisionDeny, telemetry.AttrReason, "insufficient_scope"); err != nil {
				return err
			}
			if ws := tr.find(svcWorker, ""); len(ws) > 0 {
				return fmt.Errorf("a refused request reached the worker (%d spans)", len(ws))
			}
			return nil
		})
	})
	t.Run("a throttled request's trace shows the rate-limit answer", func(t *testing.T) {
		// The free plan allows 5 per second; the 6th to 8th are refused.
		since := quiet()
		b := s.restBurst(t, https, free.token, 8)
		if b.limited == 0 {
			t.Fatalf("no request throttled: %v", b)
		}
		var throttled jTrace
		waitFor(t, "a throttled request's trace in Jaeger", 30*time.Second, nil, func(ctx context.Context) error {
			ts, err := j.tracesSince(ctx, svcAuthz, since)
			if err != nil {
				return err
			}
			for _, tr := range ts {
				for _, rl := range tr.find(svcAuthz, telemetry.SpanRateLimit) {
					if v, _ := rl.tag(string(telemetry.AttrRateLimitAllowed)); v == "false" {
						throttled = tr
						return nil
					}
				}
			}
			return fmt.Errorf("%d traces of helix-authz, none with %s=false yet", len(ts), telemetry.AttrRateLimitAllowed)
		})
		check, err := checkSpan(throttled)
		if err == nil {
			err = wantTags(check, telemetry.AttrDecision, telemetry.DecisionDeny, telemetry.AttrReason, "rate_limited")
		}
		if err != nil {
			t.Fatalf("%v\n%v", err, throttled)
		}
		rl := throttled.find(svcAuthz, telemetry.SpanRateLimit)[0]
		if p := rl.parent(); p != check.SpanID {
			t.Errorf("the ratelimit span's parent is %s, want the Check span %s\n%v", p, check.SpanID, throttled)
		}
		for _, k := range []string{string(telemetry.AttrRateLimitKey), string(telemetry.AttrRateLimitLimit), string(telemetry.AttrRateLimitRemaining)} {
			if v, ok := rl.tag(k); !ok || v == "" {
				t.Errorf("the ratelimit span lacks %s\n%v", k, throttled)
			}
		}
		if v, _ := rl.tag(string(telemetry.AttrRateLimitLimit)); v != "5" {
			t.Errorf("%s = %q, want the free plan's 5", telemetry.AttrRateLimitLimit, v)
		}
	})
	t.Run("a malformed traceparent is ignored", func(t *testing.T) {
		for _, tp := range []string{
			"garbage",
			"00-00000000000000000000000000000000-0000000000000000-01", // all-zero ids are invalid
			"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz", // bad flags
			"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff is forbidden
			strings.Repeat("0", 600),
		} {
			code, body, err := s.restInfer(context.Background(), https, sampleModel, all.token, map[string]string{"traceparent": tp, "tracestate": "=,="})
			if err != nil || code != http.StatusOK {
				t.Fatalf("REST with traceparent %.40q = %d %s (%v), want 200", tp, code, body, err)
			}
			checkRESTOutputs(t, body)
			ctx := metadata.AppendToOutgoingContext(withToken(t, all.token), "traceparent", tp)
			resp, err := infer.ModelInfer(ctx, samplemodel.InferRequest())
			if err != nil {
				t.Fatalf("gRPC with traceparent %.40q = %v", tp, err)
			}
			checkGRPCOutputs(t, resp)
		}
		// Still traced: the gateway starts a trace of its own.
		since := quiet()
		code, body, err := s.restInfer(context.Background(), https, sampleModel, all.token, map[string]string{"traceparent": "garbage"})
		if err != nil || code != http.StatusOK {
			t.Fatalf("infer = %d %s (%v)", code, body, err)
		}
		oneTrace(t, j, since, allowedChain(true, 1))
	})
}

// quiet lets the spans of what came before reach Jaeger's window no later
// than the returned time: each subtest reads the traces that started after.
func quiet() time.Time {
	time.Sleep(50 * time.Millisecond)
	return time.Now()
}

// oneTrace waits until Jaeger holds exactly one gateway trace started at or
// after since and check passes on it (spans arrive from each process on its
// own schedule, Envoy's every few seconds), and returns it.
func oneTrace(t *testing.T, j jaeger, since time.Time, check func(jTrace) error) jTrace {
	t.Helper()
	var got jTrace
	waitFor(t, "the request's trace in Jaeger", 30*time.Second, nil, func(ctx context.Context) error {
		ts, err := j.tracesSince(ctx, svcGateway, since)
		if err != nil {
			return err
		}
		if len(ts) != 1 {
			return fmt.Errorf("%d gateway traces since %s, want 1", len(ts), since.Format(time.StampMilli))
		}
		// The search's answer may hold part of the trace; read it whole.
		if got, err = j.trace(ctx, ts[0].TraceID); err != nil {
			return err
		}
		if err := check(got); err != nil {
			return fmt.Errorf("%w\n%v", err, got)
		}
		return nil
	})
	return got
}

// checkOnlyTrace: every trace of the services since since is id: the request
// made one trace, not one per process.
func checkOnlyTrace(t *testing.T, j jaeger, since time.Time, id string, services ...string) {
	t.Helper()
	for _, svc := range services {
		ts, err := j.tracesSince(t.Context(), svc, since)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range ts {
			if tr.TraceID != id {
				t.Errorf("%s reported trace %s besides the request's %s:\n%v", svc, tr.TraceID, id, tr)
			}
		}
	}
}

// allowedChain checks the trace of n allowed inferences (n > 1: messages of
// one stream): one root, Envoy's; helix-authz's Check span with
// helix.decision=allow, the client, the plan and (withModel) the model,
// under Envoy's ext_authz span; n of the worker's queue and execute spans,
// under another Envoy span (the request to the worker), not the ext_authz
// one.
func allowedChain(withModel bool, n int) func(jTrace) error {
	return func(tr jTrace) error { return checkAllowed(tr, withModel, n) }
}

func checkAllowed(tr jTrace, withModel bool, n int) error {
	roots := tr.roots()
	if len(roots) != 1 || tr.service(roots[0]) != svcGateway {
		return fmt.Errorf("want one root span, Envoy's; have %d (services %v)", len(roots), tr.services())
	}
	check, err := checkSpan(tr)
	if err != nil {
		return err
	}
	if err := wantTags(check, telemetry.AttrDecision, telemetry.DecisionAllow); err != nil {
		return err
	}
	keys := []string{string(telemetry.AttrClient), string(telemetry.AttrPlan)}
	if withModel {
		keys = append(keys, string(telemetry.AttrModel))
	}
	for _, k := range keys {
		if v, _ := check.tag(k); v == "" {
			return fmt.Errorf("the Check span lacks %s", k)
		}
	}
	extAuthz, err := tr.nearest(check, svcGateway)
	if err != nil {
		return err
	}
	if !strings.Contains(extAuthz.OperationName, checkOp) {
		return fmt.Errorf("the Check span's Envoy parent is %q, want Envoy's ext_authz call (%q)", extAuthz.OperationName, checkOp)
	}
	for _, op := range []string{telemetry.SpanQueue, telemetry.SpanExecute} {
		ws := tr.find(svcWorker, op)
		if len(ws) != n {
			return fmt.Errorf("%d %q spans from %s, want %d", len(ws), op, svcWorker, n)
		}
		for _, w := range ws {
			up, err := tr.nearest(w, svcGateway)
			if err != nil {
				return err
			}
			if up.SpanID == extAuthz.SpanID {
				return fmt.Errorf("the worker's %q span is under Envoy's ext_authz span, want its upstream request's", op)
			}
		}
	}
	return nil
}

// checkSpan is the trace's one helix-authz Check span.
func checkSpan(tr jTrace) (jSpan, error) {
	cs := tr.find(svcAuthz, checkOp)
	if len(cs) != 1 {
		return jSpan{}, fmt.Errorf("%d Check spans from %s, want 1 (services %v)", len(cs), svcAuthz, tr.services())
	}
	return cs[0], nil
}

// wantTags checks key, value pairs (attribute.Key or string keys).
func wantTags(s jSpan, kv ...any) error {
	for i := 0; i+1 < len(kv); i += 2 {
		k, want := fmt.Sprint(kv[i]), fmt.Sprint(kv[i+1])
		if got, _ := s.tag(k); got != want {
			return fmt.Errorf("span %s: %s = %q, want %q", s.OperationName, k, got, want)
		}
	}
	return nil
}
