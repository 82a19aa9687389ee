package ratelimit

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Results of helix_authz_ratelimit_decisions_total.
const (
	resultAllowed   = "allowed"
	resultOverLimit = "over_limit"
	resultError     = "error" // counters unavailable: the failure mode decided
)

type metrics struct {
	byResult     map[string]prometheus.Counter
	redisSeconds prometheus.Histogram
}

// newMetrics registers the limiter's metrics on reg (none when nil). Every
// result's series exists from the start, so that an alert's rate sees the
// first error after a restart.
func newMetrics(reg prometheus.Registerer) *metrics {
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "helix_authz_ratelimit_decisions_total",
		Help: "Plan rate-limit decisions by result: allowed, over_limit, or error (Redis failed or timed out; ratelimit.failure_mode decided).",
	}, []string{"result"})
	m := &metrics{
		byResult: make(map[string]prometheus.Counter, 3),
		redisSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "helix_authz_ratelimit_redis_seconds",
			Help:    "Time of one Redis round trip of the plan limiter (every window of a request at once).",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14),
		}),
	}
	for _, r := range []string{resultAllowed, resultOverLimit, resultError} {
		m.byResult[r] = decisions.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(decisions, m.redisSeconds)
	}
	return m
}

func (m *metrics) decisions(result string) { m.byResult[result].Inc() }
