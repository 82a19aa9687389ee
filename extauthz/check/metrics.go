package check

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of Check. A nil *metrics records nothing.
type metrics struct {
	checks   *prometheus.CounterVec
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_authz_checks_total",
			Help: "Envoy authorization checks by result (ok, denied, unavailable) and reason.",
		}, []string{"result", "reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "helix_authz_check_duration_seconds",
			Help:    "Time to answer an Envoy authorization check.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
	}
	m.checks = register(reg, m.checks, log)
	m.duration = register(reg, m.duration, log)
	return m
}

// register registers c, or returns the collector already registered under
// its name (a second Service on the same registry shares it).
func register[C prometheus.Collector](reg prometheus.Registerer, c C, log *slog.Logger) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	log.Error("authz: registering metrics", "err", err)
	return c
}

func (m *metrics) observe(result, reason string, d time.Duration) {
	if m == nil {
		return
	}
	m.checks.WithLabelValues(result, reason).Inc()
	m.duration.Observe(d.Seconds())
}
