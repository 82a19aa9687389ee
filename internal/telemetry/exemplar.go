package telemetry

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// ExemplarLabel is the exemplar label that carries a trace id, the name
// Grafana's exemplar links and Prometheus's exemplar storage expect.
const ExemplarLabel = "trace_id"

// Observe records v on o (a histogram), with the trace id of ctx's span as
// an exemplar when that span is sampled, so that a latency spike on a
// dashboard links to a trace of it. An unsampled or absent span costs one
// context lookup and no allocation. Exemplars are exposed only in the
// OpenMetrics format (promhttp.HandlerOpts{EnableOpenMetrics: true}).
func Observe(ctx context.Context, o prometheus.Observer, v float64) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if eo, ok := o.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(v, prometheus.Labels{ExemplarLabel: sc.TraceID().String()})
			return
		}
	}
	o.Observe(v)
}
