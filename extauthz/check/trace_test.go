package check

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/internal/vtcodec"
)

// Envoy's ext_authz span, as its traceparent names it.
const (
	envoyTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	envoySpanID  = "00f067aa0ba902b7"
)

// startTracedServer serves e's Check as helix-authz does with tracing on:
// otelgrpc's server handler (here with its own provider and the W3C
// propagator, not the globals) and helix-authz's codec. The provider
// follows the caller's sampling decision and samples every root.
func startTracedServer(t testing.TB, e *env) (authv3.AuthorizationClient, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodecV2(vtcodec.Codec{}), grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(propagation.TraceContext{}))))
	e.svc.Register(gs)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop(); <-done })
	return authv3.NewAuthorizationClient(conn), rec
}

// checkWith calls Check with traceparent in the call's metadata ("" for
// none), as Envoy's gRPC client sends it.
func checkWith(t *testing.T, c authv3.AuthorizationClient, traceparent string, req *authv3.CheckRequest) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if traceparent != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent)
	}
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v (a trace context must never fail a check)", err)
	}
	return codes.Code(resp.GetStatus().GetCode())
}

// spanNamed is the one ended span called name. The server span ends
// after the answer is sent, so it may end after the client has it.
func spanNamed(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		found = found[:0]
		for _, s := range rec.Ended() {
			if s.Name() == name {
				found = append(found, s)
			}
		}
		if len(found) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %q, want 1 (all: %v)", len(found), name, spanNames(rec))
	}
	return found[0]
}

func spanNames(rec *tracetest.SpanRecorder) []string {
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	return names
}

func attrsOf(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

const checkSpan = "envoy.service.auth.v3.Authorization/Check"

// TestTraceCheck: the Check span continues Envoy's trace and carries the
// decision; a throttled request's ratelimit child span says why.
func TestTraceCheck(t *testing.T) {
	tests := []struct {
		name    string
		limits  *fakeLimits
		scopes  []string
		noCred  bool
		code    codes.Code
		want    map[attribute.Key]string // string values; absent keys listed in absent
		absent  []attribute.Key
		allowed bool
	}{
		{
			name:   "allowed",
			limits: &fakeLimits{d: ratelimit.Decision{Allowed: true, Limit: 5, Remaining: 4, Key: "helix:{client-a}:6:resnet:s:1", Windows: twoWindows}},
			scopes: []string{"models:infer"},
			code:   codes.OK,
			want: map[attribute.Key]string{telemetry.AttrDecision: "allow", telemetry.AttrClient: "client-a",
				telemetry.AttrPlan: "gold", telemetry.AttrModel: "resnet"},
			absent:  []attribute.Key{telemetry.AttrReason},
			allowed: true,
		},
		{
			name:   "denied: the reason troubleshooting lists",
			limits: &fakeLimits{d: ratelimit.Decision{Allowed: true}},
			scopes: []string{"models:read"},
			code:   codes.PermissionDenied,
			want: map[attribute.Key]string{telemetry.AttrDecision: "deny", telemetry.AttrReason: "insufficient_scope",
				telemetry.AttrClient: "client-a", telemetry.AttrModel: "resnet"},
		},
		{
			name:   "denied before authentication: no client",
			limits: &fakeLimits{d: ratelimit.Decision{Allowed: true}},
			noCred: true,
			code:   codes.Unauthenticated,
			want:   map[attribute.Key]string{telemetry.AttrDecision: "deny", telemetry.AttrReason: "no_credential"},
			absent: []attribute.Key{telemetry.AttrClient, telemetry.AttrPlan},
		},
		{
			name:   "throttled",
			limits: &fakeLimits{d: ratelimit.Decision{Limit: 5, Reset: time.Second, Key: "helix:{client-a}:6:resnet:s:1", Windows: twoWindows}},
			scopes: []string{"models:infer"},
			code:   codes.ResourceExhausted,
			want: map[attribute.Key]string{telemetry.AttrDecision: "deny", telemetry.AttrReason: "rate_limited",
				telemetry.AttrClient: "client-a", telemetry.AttrPlan: "gold", telemetry.AttrModel: "resnet"},
			allowed: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.svc.rateLimits = tt.limits
			client, rec := startTracedServer(t, e)
			hdr := map[string]string{}
			if !tt.noCred {
				hdr = bearerHdr(e.mint(t, claims(tt.scopes, []string{"*"})))
			}
			req := grpcReq("ModelInfer", inferBody(t, "resnet", "1", 64), hdr)
			if got := checkWith(t, client, "00-"+envoyTraceID+"-"+envoySpanID+"-01", req); got != tt.code {
				t.Fatalf("answer %v, want %v", got, tt.code)
			}

			cs := spanNamed(t, rec, checkSpan)
			if cs.SpanContext().TraceID().String() != envoyTraceID || cs.Parent().SpanID().String() != envoySpanID || !cs.Parent().IsRemote() {
				t.Fatalf("Check span in trace %s under %s, want Envoy's %s under %s", cs.SpanContext().TraceID(), cs.Parent().SpanID(), envoyTraceID, envoySpanID)
			}
			if cs.SpanKind() != trace.SpanKindServer {
				t.Errorf("Check span kind %v, want server", cs.SpanKind())
			}
			got := attrsOf(cs)
			for k, v := range tt.want {
				if got[k].AsString() != v {
					t.Errorf("%s = %q, want %q", k, got[k].AsString(), v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s = %q, want none", k, got[k].Emit())
				}
			}
			if cs.Status().Code == otelcodes.Error {
				t.Errorf("a decision is no error: status %v", cs.Status())
			}

			if len(tt.limits.calls) == 0 {
				for _, s := range rec.Ended() {
					if s.Name() == telemetry.SpanRateLimit {
						t.Fatal("ratelimit span without a rate-limit decision")
					}
				}
				return
			}
			rl := spanNamed(t, rec, telemetry.SpanRateLimit)
			if rl.Parent().SpanID() != cs.SpanContext().SpanID() || rl.SpanContext().TraceID() != cs.SpanContext().TraceID() {
				t.Fatalf("ratelimit span's parent %s, want the Check span %s", rl.Parent().SpanID(), cs.SpanContext().SpanID())
			}
			ra := attrsOf(rl)
			d := tt.limits.d
			if ra[telemetry.AttrRateLimitAllowed].AsBool() != tt.allowed || ra[telemetry.AttrRateLimitAllowed].Type() != attribute.BOOL {
				t.Errorf("%s = %v, want %v", telemetry.AttrRateLimitAllowed, ra[telemetry.AttrRateLimitAllowed].Emit(), tt.allowed)
			}
			if ra[telemetry.AttrRateLimitKey].AsString() != d.Key ||
				ra[telemetry.AttrRateLimitLimit].AsInt64() != int64(d.Limit) ||
				ra[telemetry.AttrRateLimitRemaining].AsInt64() != int64(d.Remaining) {
				t.Errorf("ratelimit span %v, want key %q limit %d remaining %d", ra, d.Key, d.Limit, d.Remaining)
			}
		})
	}
}

// TestTraceRateLimitUnavailable: counters that did not answer make the
// ratelimit span an error, and, failure mode closed, the Check span too.
func TestTraceRateLimitUnavailable(t *testing.T) {
	e := newEnv(t)
	e.svc.rateLimits = &fakeLimits{err: ratelimit.ErrUnavailable}
	client, rec := startTracedServer(t, e)
	req := grpcReq("ModelInfer", inferBody(t, "resnet", "1", 64), bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
	if got := checkWith(t, client, "00-"+envoyTraceID+"-"+envoySpanID+"-01", req); got != codes.Unavailable {
		t.Fatalf("answer %v, want UNAVAILABLE", got)
	}
	if s := spanNamed(t, rec, telemetry.SpanRateLimit); s.Status().Code != otelcodes.Error || attrsOf(s)[telemetry.AttrRateLimitAllowed].AsBool() {
		t.Errorf("ratelimit span status %v, attributes %v: want an error, allowed false", s.Status(), attrsOf(s))
	}
	if s := spanNamed(t, rec, checkSpan); s.Status().Code != otelcodes.Error || attrsOf(s)[telemetry.AttrReason].AsString() != "ratelimit_unavailable" {
		t.Errorf("Check span status %v, attributes %v: want an error, reason ratelimit_unavailable", s.Status(), attrsOf(s))
	}
}

// TestTraceContextIgnored: a malformed traceparent is no error: the check
// is answered as without one, in a trace of its own. An unsampled parent
// is followed: no span is recorded.
func TestTraceContextIgnored(t *testing.T) {
	for _, tp := range []string{
		"garbage",
		"00-" + envoyTraceID + "-" + envoySpanID, // no flags
		"00-00000000000000000000000000000000-" + envoySpanID + "-01",
		"00-" + envoyTraceID + "-0000000000000000-01",
		"ff-" + envoyTraceID + "-" + envoySpanID + "-01", // version ff is invalid
		"00-" + strings.ToUpper(envoyTraceID) + "-" + envoySpanID + "-01",
		"00-" + envoyTraceID + "-" + envoySpanID + "-1",
		"00-" + envoyTraceID + "-" + envoySpanID + "-01-extra", // version 00 has no more fields
		"00-" + envoyTraceID + "x-" + envoySpanID + "-01",
		strings.Repeat("0", 4096),
	} {
		t.Run(tp[:min(len(tp), 24)], func(t *testing.T) {
			e := newEnv(t)
			client, rec := startTracedServer(t, e)
			req := grpcReq("ModelInfer", inferBody(t, "resnet", "1", 64), bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
			if got := checkWith(t, client, tp, req); got != codes.OK {
				t.Fatalf("answer %v, want OK", got)
			}
			cs := spanNamed(t, rec, checkSpan)
			if cs.Parent().IsValid() || cs.SpanContext().TraceID().String() == envoyTraceID {
				t.Fatalf("Check span under %v in trace %s: the malformed traceparent was taken", cs.Parent(), cs.SpanContext().TraceID())
			}
			if attrsOf(cs)[telemetry.AttrDecision].AsString() != "allow" {
				t.Errorf("Check span attributes %v", attrsOf(cs))
			}
		})
	}
	t.Run("unsampled parent", func(t *testing.T) {
		e := newEnv(t)
		client, rec := startTracedServer(t, e)
		req := grpcReq("ModelInfer", inferBody(t, "resnet", "1", 64), bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
		if got := checkWith(t, client, "00-"+envoyTraceID+"-"+envoySpanID+"-00", req); got != codes.OK {
			t.Fatalf("answer %v, want OK", got)
		}
		// A sampled check after it: once its span ended, the first's would have.
		checkWith(t, client, "00-"+strings.Repeat("1", 32)+"-"+envoySpanID+"-01", req)
		spanNamed(t, rec, checkSpan)
		if n := len(rec.Ended()); n != 1 {
			t.Fatalf("%d spans recorded, want only the sampled check's: %v", n, spanNames(rec))
		}
	})
}

// TestCheckExemplar: a sampled check's duration carries its trace id as
// exemplar; an unsampled one none.
func TestCheckExemplar(t *testing.T) {
	e := newEnv(t)
	client, _ := startTracedServer(t, e)
	req := grpcReq("ModelInfer", inferBody(t, "resnet", "1", 64), bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
	checkWith(t, client, "00-"+envoyTraceID+"-"+envoySpanID+"-00", req)
	if ex := exemplars(t, e); len(ex) != 0 {
		t.Fatalf("exemplars %v after an unsampled check, want none", ex)
	}
	checkWith(t, client, "00-"+envoyTraceID+"-"+envoySpanID+"-01", req)
	ex := exemplars(t, e)
	if len(ex) != 1 || ex[0] != envoyTraceID {
		t.Fatalf("exemplar trace ids %v, want [%s]", ex, envoyTraceID)
	}
}

// exemplars are the trace ids of helix_authz_check_duration_seconds's
// exemplars.
func exemplars(t *testing.T, e *env) []string {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, mf := range mfs {
		if mf.GetName() != "helix_authz_check_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, b := range m.GetHistogram().GetBucket() {
				ids = append(ids, exemplarTraceID(b.GetExemplar())...)
			}
		}
	}
	return ids
}

func exemplarTraceID(ex *dto.Exemplar) []string {
	if ex == nil {
		return nil
	}
	for _, l := range ex.GetLabel() {
		if l.GetName() == telemetry.ExemplarLabel {
			return []string{l.GetValue()}
		}
	}
	return []string{"(no trace_id label)"}
}

// BenchmarkCheckTraced: Check over gRPC with the stats handler (tracing
// on), Envoy's traceparent unsampled (most requests at a 1% gateway
// sampling) and sampled (spans recorded in memory, none exported). Compare
// with BenchmarkCheckJWT/grpc/c=1, tracing off.
func BenchmarkCheckTraced(b *testing.B) {
	for _, flags := range []string{"00", "01"} {
		b.Run("sampled="+flags, func(b *testing.B) {
			e := newEnv(b)
			client, _ := startTracedServer(b, e)
			req := grpcReq("ModelInfer", inferBody(b, "resnet", "1", 64), bearerHdr(e.mint(b, claims([]string{"models:resnet:infer"}, []string{"resnet"}))))
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+envoyTraceID+"-"+envoySpanID+"-"+flags)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := client.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
