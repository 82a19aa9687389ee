package infer

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/helixflow/helixflow/internal/telemetry"
)

// recording installs an SDK provider that samples what its parent sampled
// (roots never), as telemetry.Setup does, and returns its recorder.
func recording(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})
	return rec
}

func TestRequestSpans(t *testing.T) {
	rec := recording(t)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx, span := StartSpan(context.Background(), "POST /v2/models/{model}/infer", propagation.MapCarrier{"traceparent": parent})
	SetModel(ctx, "simple")
	now := time.Now()
	ChildSpan(ctx, telemetry.SpanQueue, now.Add(-2*time.Millisecond), now.Add(-time.Millisecond), nil)
	ChildSpan(ctx, telemetry.SpanExecute, now.Add(-time.Millisecond), now, errors.New("backend failed"))
	start := EncodeStart(ctx)
	if start.IsZero() {
		t.Fatal("EncodeStart of a recording span is zero")
	}
	EncodeDone(ctx, start)
	SpanError(span, errors.New("request failed"))
	span.End()

	got := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		got[s.Name()] = s
	}
	server := got["POST /v2/models/{model}/infer"]
	if server == nil || server.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("server span %v: not in the caller's trace", server)
	}
	if server.Status().Code != codes.Error {
		t.Errorf("server span status %v, want error", server.Status())
	}
	for _, name := range []string{telemetry.SpanQueue, telemetry.SpanExecute, telemetry.SpanEncode} {
		s := got[name]
		if s == nil || s.Parent().SpanID() != server.SpanContext().SpanID() {
			t.Fatalf("%s: missing or not a child of the server span (%v)", name, s)
		}
	}
	if got[telemetry.SpanExecute].Status().Code != codes.Error || got[telemetry.SpanQueue].Status().Code == codes.Error {
		t.Error("only the failed child is marked failed")
	}
	var model string
	for _, a := range server.Attributes() {
		if a.Key == telemetry.AttrModel {
			model = a.Value.AsString()
		}
	}
	if model != "simple" {
		t.Errorf("helix.model = %q", model)
	}
}

func TestUnsampledAndMalformed(t *testing.T) {
	rec := recording(t)
	for _, tp := range []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "garbage", ""} {
		ctx, span := StartSpan(context.Background(), "x", propagation.MapCarrier{"traceparent": tp})
		if !EncodeStart(ctx).IsZero() {
			t.Errorf("traceparent %q: EncodeStart read the clock for an unrecorded request", tp)
		}
		EncodeDone(ctx, time.Time{})
		SetModel(ctx, "simple")
		SpanError(span, errors.New("x"))
		span.End()
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans recorded for unsampled or malformed parents", n)
	}
	// A nil carrier keeps ctx's own context (a WebSocket message's).
	ctx := Extract(context.Background(), propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	_, span := StartSpan(ctx, "message", nil)
	span.End()
	if n := len(rec.Ended()); n != 1 {
		t.Fatalf("message under an extracted sampled context: %d spans", n)
	}
}
