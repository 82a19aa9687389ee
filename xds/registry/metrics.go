package registry

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	workers, endpoints prometheus.Gauge
	expirations        prometheus.Counter
	infoDrops          prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "helix_xds_registry_workers",
			Help: "Workers holding a lease in the registry, ready or not.",
		}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "helix_xds_registry_endpoints",
			Help: "Routable (worker, model) pairs: ready workers times their ready models.",
		}),
		expirations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "helix_xds_registry_lease_expirations_total",
			Help: "Worker leases that lapsed without renewal.",
		}),
		infoDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "helix_xds_registry_model_info_dropped_total",
			Help: "Model descriptions (ModelInfo) in Register and Renew requests left out of the catalogue because they failed a check; the models are still routed.",
		}),
	}
	for _, c := range []prometheus.Collector{m.workers, m.endpoints, m.expirations, m.infoDrops} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register registry metrics: %w", err)
		}
	}
	return m, nil
}

// The methods accept a nil receiver: metrics are optional.

func (m *metrics) set(workers, endpoints int) {
	if m == nil {
		return
	}
	m.workers.Set(float64(workers))
	m.endpoints.Set(float64(endpoints))
}

func (m *metrics) expired(n int) {
	if m == nil {
		return
	}
	m.expirations.Add(float64(n))
}

func (m *metrics) infoDropped(n int) {
	if m == nil {
		return
	}
	m.infoDrops.Add(float64(n))
}
