package ratelimit

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/internal/telemetry"
)

// tracerName names the rate-limit span's tracer.
const tracerName = "github.com/helixflow/helixflow/extauthz/ratelimit"

// Taker takes a rate-limit decision (Limiter, or a caller's stand-in).
type Taker interface {
	Take(ctx context.Context, plan, client, model string) (Decision, error)
}

// TakeTraced is t.Take in a child span telemetry.SpanRateLimit of ctx's
// span, with the answer (helix.ratelimit.key, .limit, .remaining,
// .allowed), when that span records; otherwise just t.Take, at no cost
// (Check's hot path with tracing off or the request not sampled).
func TakeTraced(ctx context.Context, t Taker, plan, client, model string) (Decision, error) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return t.Take(ctx, plan, client, model)
	}
	ctx, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, telemetry.SpanRateLimit)
	defer span.End()
	d, err := t.Take(ctx, plan, client, model)
	attrs := []attribute.KeyValue{telemetry.AttrRateLimitAllowed.Bool(d.Allowed)}
	if d.Key != "" {
		attrs = append(attrs, telemetry.AttrRateLimitKey.String(d.Key))
	}
	if d.Limit > 0 {
		attrs = append(attrs, telemetry.AttrRateLimitLimit.Int64(int64(d.Limit)),
			telemetry.AttrRateLimitRemaining.Int64(int64(d.Remaining)))
	}
	span.SetAttributes(attrs...)
	if err != nil {
		// The failure mode decided (allowed says which way), not the
		// counters.
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, "rate-limit counters unavailable")
	}
	return d, err
}
