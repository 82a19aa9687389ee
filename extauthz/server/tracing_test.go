package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/internal/telemetry"
)

// withGlobalTracing installs tp (nil: the no-op provider telemetry.Setup
// installs with tracing off) and the W3C propagator as the globals, as
// telemetry.Setup does, for the test.
func withGlobalTracing(t *testing.T, tp trace.TracerProvider) {
	t.Helper()
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}

// TestGRPCTracing: with tracing on, the Check listener's options continue
// the caller's trace in a server span that Check annotates; with it off
// they add nothing to the hot path.
func TestGRPCTracing(t *testing.T) {
	withGlobalTracing(t, nil)
	off := len(GRPCOptions())

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	withGlobalTracing(t, tp)
	opts := GRPCOptions()
	if len(opts) != off+1 {
		t.Fatalf("%d options with tracing on, %d off: want one more (the stats handler)", len(opts), off)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	check.New(check.Config{}).Register(gs)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop(); <-done })

	const traceID, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+traceID+"-"+parent+"-01")
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:  &authv3.AttributeContext_Peer{Address: &corev3.Address{}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v2/models/m", Headers: map[string]string{}}},
	}}
	if _, err := authv3.NewAuthorizationClient(conn).Check(ctx, req); err != nil {
		t.Fatal(err)
	}
	var spans []sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(5 * time.Second); len(spans) == 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		spans = rec.Ended() // the server span ends after the answer is sent
	}
	if len(spans) != 1 {
		t.Fatalf("%d spans, want the Check's", len(spans))
	}
	s := spans[0]
	if s.Name() != "envoy.service.auth.v3.Authorization/Check" || s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != parent {
		t.Fatalf("span %q in trace %s under %s, want Check in %s under %s", s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), traceID, parent)
	}
	var decision, reason string
	for _, kv := range s.Attributes() {
		switch kv.Key {
		case telemetry.AttrDecision:
			decision = kv.Value.AsString()
		case telemetry.AttrReason:
			reason = kv.Value.AsString()
		}
	}
	if decision != telemetry.DecisionDeny || reason != "no_credential" {
		t.Fatalf("decision %q reason %q, want deny no_credential", decision, reason)
	}
}

// TestOAuthTracing: with tracing on, OAuth2 requests get a server span in
// the caller's trace, named by endpoint whatever the path or method sent;
// with it off the handler is untouched.
func TestOAuthTracing(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !trace.SpanContextFromContext(r.Context()).IsSampled() {
			t.Error("handler's context carries no sampled span")
		}
	})
	withGlobalTracing(t, nil)
	if _, same := oauthTracing(h).(http.HandlerFunc); !same {
		t.Fatal("tracing off: the OAuth handler was wrapped")
	}

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	withGlobalTracing(t, tp)
	wrapped := oauthTracing(h)
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	for _, tt := range []struct{ method, path, name string }{
		{"POST", "/oauth2/token", "POST /oauth2/token"},
		{"GET", "/.well-known/jwks.json", "GET /.well-known/jwks.json"},
		{"POST", "/oauth2/made-up-" + strings.Repeat("x", 40), "POST oauth (unknown path)"},
		{"BREW", "/oauth2/token", "HTTP /oauth2/token"},
	} {
		rec.Reset()
		r := httptest.NewRequest(tt.method, tt.path, nil)
		r.Header.Set("traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
		wrapped.ServeHTTP(httptest.NewRecorder(), r)
		spans := rec.Ended()
		if len(spans) != 1 || spans[0].Name() != tt.name || spans[0].SpanContext().TraceID().String() != traceID {
			var got []string
			for _, s := range spans {
				got = append(got, s.Name()+" in "+s.SpanContext().TraceID().String())
			}
			t.Errorf("%s %s: spans %v, want %q in the caller's trace", tt.method, tt.path, got, tt.name)
		}
	}
}
