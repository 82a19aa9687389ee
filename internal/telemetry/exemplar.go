package telemetry

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
)

// ExemplarLabel is the exemplar label that carries a trace id, the name
// Grafana's exemplar links and Prometheus's exemplar storage expect.
const ExemplarLabel = "trace_id"

// Observe records v on o (a histogram), with the trace id of ctx's span as
// an exemplar when that span is sampled, so that a latency spike on a
// dashboard links to a trace of it. An unsampled or absent span costs one
// context lookup and no allocation. Exemplars are exposed only in the
// OpenMetrics format (MetricsHandler).
func Observe(ctx context.Context, o prometheus.Observer, v float64) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if eo, ok := o.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(v, prometheus.Labels{ExemplarLabel: sc.TraceID().String()})
			return
		}
	}
	o.Observe(v)
}

// MetricsHandler serves reg's metrics, in OpenMetrics to a scraper that
// asks for it (Prometheus does): only that format carries the exemplars.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
}
