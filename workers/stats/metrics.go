package stats

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the worker's inference metrics, named and labelled as
// Triton names them (nv_inference_*) so existing dashboards work, plus
// latency histograms that Triton lacks.
type Metrics struct {
	success, failure, count, execCount              *prometheus.CounterVec
	requestUS, queueUS, inputUS, inferUS, outputUS  *prometheus.CounterVec
	cacheHits, cacheMisses, cacheHitUS, cacheMissUS *prometheus.CounterVec
	pending                                         *prometheus.GaugeVec
	requestSeconds, queueSeconds, computeSeconds    *prometheus.HistogramVec
	batchSize                                       *prometheus.HistogramVec
}

var modelLabels = []string{"model", "version"}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(append([]string{}, modelLabels...), labels...))
	}
	latency := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, modelLabels)
	}
	m := &Metrics{
		success:   counter("nv_inference_request_success", "Number of successful inference requests, all batch sizes"),
		failure:   counter("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", "reason"),
		count:     counter("nv_inference_count", "Number of inferences performed (a batch of n counts n)"),
		execCount: counter("nv_inference_exec_count", "Number of model executions performed (a batch counts 1)"),
		requestUS: counter("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds (includes cached requests)"),
		queueUS:   counter("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds"),
		inputUS:   counter("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds"),
		inferUS:   counter("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds"),
		outputUS:  counter("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds"),
		// Triton's response cache metrics, per model version.
		cacheHits:   counter("nv_cache_num_hits_per_model", "Number of response cache hits per model"),
		cacheMisses: counter("nv_cache_num_misses_per_model", "Number of response cache misses per model"),
		cacheHitUS:  counter("nv_cache_hit_duration_per_model", "Total cache hit duration per model, in microseconds"),
		cacheMissUS: counter("nv_cache_miss_duration_per_model", "Total cache miss (insert+lookup) duration per model, in microseconds"),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nv_inference_pending_request_count",
			Help: "Instantaneous number of pending requests awaiting execution per-model.",
		}, modelLabels),
		requestSeconds: histogram("helix_inference_request_duration_seconds", "End-to-end inference request latency inside the worker, in seconds", latency),
		queueSeconds:   histogram("helix_inference_queue_duration_seconds", "Time requests wait in the model's queue, in seconds", latency),
		computeSeconds: histogram("helix_inference_compute_duration_seconds", "Time of one model execution (input, infer and output), in seconds", latency),
		batchSize:      histogram("helix_inference_batch_size", "Batch size of model executions", prometheus.ExponentialBuckets(1, 2, 11)),
	}
	for _, c := range []prometheus.Collector{
		m.success, m.failure, m.count, m.execCount, m.requestUS, m.queueUS, m.inputUS, m.inferUS, m.outputUS,
		m.cacheHits, m.cacheMisses, m.cacheHitUS, m.cacheMissUS, m.pending, m.requestSeconds, m.queueSeconds, m.computeSeconds, m.batchSize,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register inference metrics: %w", err)
		}
	}
	return m, nil
}

// failureReasons are the reason label values of nv_inference_request_failure.
var failureReasons = []string{"REJECTED", "CANCELED", "BACKEND", "OTHER"}

// forget removes a model version's series, as Triton does on unload.
func (m *Metrics) forget(model, version string) {
	labels := prometheus.Labels{"model": model, "version": version}
	for _, v := range []*prometheus.CounterVec{m.success, m.failure, m.count, m.execCount, m.requestUS, m.queueUS, m.inputUS, m.inferUS, m.outputUS,
		m.cacheHits, m.cacheMisses, m.cacheHitUS, m.cacheMissUS} {
		v.DeletePartialMatch(labels)
	}
	m.pending.Delete(labels)
	m.requestSeconds.Delete(labels)
	m.queueSeconds.Delete(labels)
	m.computeSeconds.Delete(labels)
	m.batchSize.Delete(labels)
}
