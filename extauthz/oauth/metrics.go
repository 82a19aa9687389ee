package oauth

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/internal/telemetry"
)

// metrics of the token endpoint; a nil *metrics records nothing.
type metrics struct {
	issued   *prometheus.CounterVec
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_authz_tokens_issued_total",
			Help: "Token requests by result: issued, or the OAuth2 error code returned.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "helix_authz_token_duration_seconds",
			Help:    "Time to answer a token request, whatever the result.",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 14),
		}),
	}
	for _, c := range []prometheus.Collector{m.issued, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("oauth: register metrics: %w", err)
		}
	}
	return m, nil
}

// observe counts a token request; its duration carries the trace id of
// ctx's span as an exemplar when the request is sampled.
func (m *metrics) observe(ctx context.Context, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.issued.WithLabelValues(result).Inc()
	telemetry.Observe(ctx, m.duration, d.Seconds())
}
