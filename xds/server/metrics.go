package server

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	generation      *prometheus.GaugeVec
	resources       *prometheus.GaugeVec
	publishes       *prometheus.CounterVec
	publishErrors   prometheus.Counter
	publishDuration prometheus.Histogram
	connected       prometheus.Gauge
	nacks           *prometheus.CounterVec
	pushLatency     *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		generation: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "helix_xds_snapshot_generation",
			Help: "Number of versions published by each xDS cache (config, endpoints, secrets) since start.",
		}, []string{"cache"}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "helix_xds_snapshot_resources",
			Help: "Resources in the published xDS snapshot, by type.",
		}, []string{"type"}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_xds_publishes_total",
			Help: "New snapshot versions set, by cache.",
		}, []string{"cache"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "helix_xds_publish_errors_total",
			Help: "Publishes refused (invalid or inconsistent resources); the last good snapshot stayed in force.",
		}),
		publishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "helix_xds_publish_duration_seconds",
			Help:    "Time to publish: validate, hash and set the snapshots, and, when clusters come or go, wait for Envoys to take each make-before-break step.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "helix_xds_connected_envoys",
			Help: "Open ADS streams of Envoys (one per connected Envoy).",
		}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_xds_nacks_total",
			Help: "Configs rejected by Envoy (requests carrying error_detail), by resource type.",
		}, []string{"type"}),
		pushLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "helix_xds_push_latency_seconds",
			Help:    "Time from a snapshot version being set to an Envoy acknowledging it, by resource type.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"type"}),
	}
	// The NACK alert takes increase() of this counter: a series that first
	// appears at 1 would hide the first NACK after a start, so every type
	// helix-xds serves starts at 0.
	for _, t := range []string{"listener", "route", "cluster", "endpoint", "secret"} {
		m.nacks.WithLabelValues(t)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.generation, m.resources, m.publishes, m.publishErrors, m.publishDuration, m.connected, m.nacks, m.pushLatency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
