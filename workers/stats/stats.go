// Package stats accounts for inference work per model version: Triton's
// statistics extension (the ModelStatistics RPC and /stats) and the
// Prometheus metrics, both fed by the scheduler's observer calls.
package stats

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/scheduler"
)

// Recorder accumulates statistics for one model version. It implements
// scheduler.Observer and is safe for concurrent use.
type Recorder struct {
	model   string
	version string
	metrics *Metrics // nil: statistics only

	mu            sync.Mutex
	lastInference time.Time
	inferences    uint64
	executions    uint64
	success       duration
	fail          duration
	queue         duration
	computeInput  duration
	computeInfer  duration
	computeOutput duration
	cacheHit      duration
	cacheMiss     duration
	batches       map[int]*batchStats
}

type duration struct {
	count uint64
	total time.Duration
}

func (d *duration) add(t time.Duration) {
	d.count++
	d.total += t
}

func (d duration) proto() *pb.StatisticDuration {
	return &pb.StatisticDuration{Count: d.count, Ns: uint64(d.total.Nanoseconds())}
}

type batchStats struct {
	input, infer, output duration
}

var _ scheduler.Observer = (*Recorder)(nil)

// NewRecorder returns a Recorder for model at version; metrics may be nil.
func NewRecorder(model string, version int64, metrics *Metrics) *Recorder {
	return &Recorder{
		model:   model,
		version: strconv.FormatInt(version, 10),
		metrics: metrics,
		batches: make(map[int]*batchStats),
	}
}

// RequestDone records one finished request.
func (r *Recorder) RequestDone(s scheduler.RequestStats) {
	r.mu.Lock()
	if s.Success {
		r.success.add(s.Total)
		r.queue.add(s.Queue)
		r.computeInput.add(s.ComputeInput)
		r.computeInfer.add(s.ComputeInfer)
		r.computeOutput.add(s.ComputeOutput)
		r.inferences += uint64(s.BatchSize)
		r.lastInference = time.Now()
	} else {
		r.fail.add(s.Total)
	}
	r.mu.Unlock()

	m := r.metrics
	if m == nil {
		return
	}
	if !s.Success {
		reason := s.FailureReason
		if reason == "" {
			reason = "OTHER"
		}
		m.failure.WithLabelValues(r.model, r.version, reason).Inc()
		return
	}
	m.success.WithLabelValues(r.model, r.version).Inc()
	m.count.WithLabelValues(r.model, r.version).Add(float64(s.BatchSize))
	m.requestUS.WithLabelValues(r.model, r.version).Add(micros(s.Total))
	m.queueUS.WithLabelValues(r.model, r.version).Add(micros(s.Queue))
	m.inputUS.WithLabelValues(r.model, r.version).Add(micros(s.ComputeInput))
	m.inferUS.WithLabelValues(r.model, r.version).Add(micros(s.ComputeInfer))
	m.outputUS.WithLabelValues(r.model, r.version).Add(micros(s.ComputeOutput))
	observe(m.requestSeconds.WithLabelValues(r.model, r.version), s.Total.Seconds(), s.Trace)
	observe(m.queueSeconds.WithLabelValues(r.model, r.version), s.Queue.Seconds(), s.Trace)
}

// CacheHit records a request answered from the response cache: it
// succeeded in total, of which lookup went to finding and copying the
// result. As in Triton, it counts in success and queue (with no wait) but
// not in the inference, execution and compute figures: no model ran.
func (r *Recorder) CacheHit(total, lookup time.Duration) {
	r.mu.Lock()
	r.success.add(total)
	r.queue.add(0)
	r.cacheHit.add(lookup)
	r.lastInference = time.Now()
	r.mu.Unlock()
	if m := r.metrics; m != nil {
		m.success.WithLabelValues(r.model, r.version).Inc()
		m.requestUS.WithLabelValues(r.model, r.version).Add(micros(total))
		m.cacheHits.WithLabelValues(r.model, r.version).Inc()
		m.cacheHitUS.WithLabelValues(r.model, r.version).Add(micros(lookup))
		m.requestSeconds.WithLabelValues(r.model, r.version).Observe(total.Seconds())
	}
}

// CacheMiss records a response-cache miss: d is the time spent looking the
// request up and storing its result.
func (r *Recorder) CacheMiss(d time.Duration) {
	r.mu.Lock()
	r.cacheMiss.add(d)
	r.mu.Unlock()
	if m := r.metrics; m != nil {
		m.cacheMisses.WithLabelValues(r.model, r.version).Inc()
		m.cacheMissUS.WithLabelValues(r.model, r.version).Add(micros(d))
	}
}

// ExecutionDone records one model execution (a whole batch).
func (r *Recorder) ExecutionDone(e scheduler.ExecutionStats) {
	r.mu.Lock()
	r.executions++
	b := r.batches[e.BatchSize]
	if b == nil {
		b = &batchStats{}
		r.batches[e.BatchSize] = b
	}
	b.input.add(e.ComputeInput)
	b.infer.add(e.ComputeInfer)
	b.output.add(e.ComputeOutput)
	r.mu.Unlock()

	if m := r.metrics; m != nil {
		m.execCount.WithLabelValues(r.model, r.version).Inc()
		m.computeSeconds.WithLabelValues(r.model, r.version).Observe((e.ComputeInput + e.ComputeInfer + e.ComputeOutput).Seconds())
		m.batchSize.WithLabelValues(r.model, r.version).Observe(float64(e.BatchSize))
	}
}

// PendingChanged records the number of queued requests.
func (r *Recorder) PendingChanged(n int) {
	if m := r.metrics; m != nil {
		m.pending.WithLabelValues(r.model, r.version).Set(float64(n))
	}
}

// Snapshot returns the statistics in the shape of Triton's statistics extension.
func (r *Recorder) Snapshot() *pb.ModelStatistics {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last uint64
	if !r.lastInference.IsZero() {
		last = uint64(r.lastInference.UnixMilli())
	}
	st := &pb.ModelStatistics{
		Name:           r.model,
		Version:        r.version,
		LastInference:  last,
		InferenceCount: r.inferences,
		ExecutionCount: r.executions,
		InferenceStats: &pb.InferStatistics{
			Success:       r.success.proto(),
			Fail:          r.fail.proto(),
			Queue:         r.queue.proto(),
			ComputeInput:  r.computeInput.proto(),
			ComputeInfer:  r.computeInfer.proto(),
			ComputeOutput: r.computeOutput.proto(),
			CacheHit:      r.cacheHit.proto(),
			CacheMiss:     r.cacheMiss.proto(),
		},
	}
	for _, size := range slices.Sorted(maps.Keys(r.batches)) {
		b := r.batches[size]
		st.BatchStats = append(st.BatchStats, &pb.InferBatchStatistics{
			BatchSize:     uint64(size),
			ComputeInput:  b.input.proto(),
			ComputeInfer:  b.infer.proto(),
			ComputeOutput: b.output.proto(),
		})
	}
	return st
}

// Close removes the version's metric series (Triton drops an unloaded
// model's metrics).
func (r *Recorder) Close() {
	if r.metrics != nil {
		r.metrics.forget(r.model, r.version)
	}
}

// observe records v with a trace_id exemplar when the request was sampled,
// so that a latency spike on a dashboard links to a trace (served in the
// OpenMetrics format only).
func observe(o prometheus.Observer, v float64, id trace.TraceID) {
	if id.IsValid() {
		if eo, ok := o.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": id.String()})
			return
		}
	}
	o.Observe(v)
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
