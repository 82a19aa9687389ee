package check

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/internal/telemetry"
)

// Tracing. Check's span is the gRPC server's (otelgrpc, wired by
// extauthz/server when tracing is on), continued from the traceparent
// Envoy sends; Check only adds to it. Everything here first asks whether
// that span records: an unsampled request or tracing off costs a context
// lookup and allocates nothing.

// annotate puts the decision on the request's span: helix.decision, and
// for a denial helix.reason (a reason of docs/troubleshooting.md's
// check-reasons table); helix.client, helix.plan and helix.model when
// known. A backend that kept Check from deciding marks the span an error;
// a denial is an answer, not an error.
func annotate(ctx context.Context, d decision) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	if d.result == resultOK {
		attrs = append(attrs, telemetry.AttrDecision.String(telemetry.DecisionAllow))
	} else {
		attrs = append(attrs, telemetry.AttrDecision.String(telemetry.DecisionDeny), telemetry.AttrReason.String(d.reason))
	}
	if p := d.principal; p != nil {
		attrs = append(attrs, telemetry.AttrClient.String(p.ClientID))
		if p.Plan != "" {
			attrs = append(attrs, telemetry.AttrPlan.String(p.Plan))
		}
	}
	if d.target.model != "" {
		attrs = append(attrs, telemetry.AttrModel.String(d.target.model))
	}
	span.SetAttributes(attrs...)
	if d.result == resultUnavailable {
		span.SetStatus(otelcodes.Error, d.reason)
	}
}

// takeRateLimit is RateLimits.Take, in a child span "ratelimit" with the
// answer when the request's span records.
func (s *Service) takeRateLimit(ctx context.Context, plan, client, model string) (ratelimit.Decision, error) {
	return ratelimit.TakeTraced(ctx, s.rateLimits, plan, client, model)
}
