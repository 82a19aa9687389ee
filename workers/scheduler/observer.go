package scheduler

import (
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Failure reasons, spelled as the reason label of Triton's
// nv_inference_request_failure metric.
const (
	FailureRejected = "REJECTED" // queue full, queue timeout, model unloading
	FailureCanceled = "CANCELED" // the client went away
	FailureBackend  = "BACKEND"  // the instance failed or returned bad outputs
	FailureOther    = "OTHER"    // the request itself was invalid
)

// Observer is told about every finished request and execution, for
// statistics and metrics. Its methods are called synchronously from the
// scheduler's goroutines, so they must be fast and must not call back into
// the Scheduler.
type Observer interface {
	RequestDone(r RequestStats)
	ExecutionDone(e ExecutionStats)
	// PendingChanged reports the number of queued requests each time it
	// changes; calls are ordered, so the last one is current.
	PendingChanged(n int)
}

// RequestStats describes one finished Do call. Compute times are those of
// the execution the request was part of.
type RequestStats struct {
	Success bool
	// FailureReason is one of the Failure constants when Success is false.
	FailureReason string
	// BatchSize is the request's own batch size (1 for a model that does not
	// batch).
	BatchSize int
	// Queue is the time from enqueue to the start of its execution.
	Queue         time.Duration
	ComputeInput  time.Duration
	ComputeInfer  time.Duration
	ComputeOutput time.Duration
	// Total is the whole Do call.
	Total time.Duration
	// Trace is the request's trace when it is sampled (for exemplars),
	// zero otherwise.
	Trace trace.TraceID
}

// ExecutionStats describes one call of an instance's Execute.
type ExecutionStats struct {
	// BatchSize is the sum of the batched requests' batch sizes.
	BatchSize int
	// Requests is the number of requests in the batch.
	Requests      int
	ComputeInput  time.Duration
	ComputeInfer  time.Duration
	ComputeOutput time.Duration
}

type nopObserver struct{}

func (nopObserver) RequestDone(RequestStats)     {}
func (nopObserver) ExecutionDone(ExecutionStats) {}
func (nopObserver) PendingChanged(int)           {}
