package infer

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/internal/telemetry"
)

// tracerName names the worker's spans' instrumentation scope.
const tracerName = "github.com/helixflow/helixflow/workers"

// StartSpan continues the W3C trace context found in carrier (a malformed
// traceparent is ignored: the span then starts a new trace, sampled as a
// root) with the server span of one inference request. Callers check
// telemetry.Enabled first and End the span.
// A nil carrier keeps ctx's trace context (a WebSocket message's, taken
// from its upgrade request with Extract).
func StartSpan(ctx context.Context, name string, carrier propagation.TextMapCarrier) (context.Context, trace.Span) {
	if carrier != nil {
		ctx = Extract(ctx, carrier)
	}
	return otel.Tracer(tracerName).Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
}

// Extract returns ctx with the W3C trace context (and baggage) in carrier;
// ctx itself when there is none or it is malformed.
func Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, carrier)
}

// SetModel names the model on the request's span when it is recording.
func SetModel(ctx context.Context, model string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(telemetry.AttrModel.String(model))
	}
}

// EncodeStart returns the time encoding starts when the request's span is
// recording, the zero time otherwise (no clock read for unsampled
// requests).
func EncodeStart(ctx context.Context) time.Time {
	if trace.SpanFromContext(ctx).IsRecording() {
		return time.Now()
	}
	return time.Time{}
}

// EncodeDone records the encode span from start (EncodeStart's answer) to
// now; it does nothing when start is zero.
func EncodeDone(ctx context.Context, start time.Time) {
	if start.IsZero() {
		return
	}
	_, span := tracer(ctx).Start(ctx, telemetry.SpanEncode, trace.WithTimestamp(start))
	span.End()
}

// ChildSpan records a finished child span of ctx's span from start to end.
// err, when set, marks the span failed.
func ChildSpan(ctx context.Context, name string, start, end time.Time, err error, opts ...trace.SpanStartOption) {
	_, span := tracer(ctx).Start(ctx, name, append(opts, trace.WithTimestamp(start))...)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End(trace.WithTimestamp(end))
}

// SpanError marks span failed with err when it is recording.
func SpanError(span trace.Span, err error) {
	if span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}

// tracer is the worker's tracer from the provider of ctx's span, so that
// child spans go where their parent went.
func tracer(ctx context.Context) trace.Tracer {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName)
}
