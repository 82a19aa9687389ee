package stats

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/helixflow/helixflow/workers/scheduler"
)

func TestRecorderStatisticsAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRecorder("mlp", 3, m)
	r.RequestDone(scheduler.RequestStats{Success: true, BatchSize: 2, Queue: time.Millisecond, ComputeInfer: 2 * time.Millisecond, Total: 4 * time.Millisecond})
	r.RequestDone(scheduler.RequestStats{Success: true, BatchSize: 6, Queue: time.Millisecond, ComputeInfer: 2 * time.Millisecond, Total: 4 * time.Millisecond})
	r.RequestDone(scheduler.RequestStats{Success: false, FailureReason: scheduler.FailureRejected, Total: time.Millisecond})
	r.ExecutionDone(scheduler.ExecutionStats{BatchSize: 8, Requests: 2, ComputeInfer: 2 * time.Millisecond})
	r.PendingChanged(5)

	st := r.Snapshot()
	if st.Name != "mlp" || st.Version != "3" || st.InferenceCount != 8 || st.ExecutionCount != 1 {
		t.Fatalf("snapshot %v", st)
	}
	if s := st.InferenceStats; s.Success.Count != 2 || s.Success.Ns != uint64(8*time.Millisecond) || s.Fail.Count != 1 || s.Queue.Ns != uint64(2*time.Millisecond) {
		t.Fatalf("inference stats %v", s)
	}
	if len(st.BatchStats) != 1 || st.BatchStats[0].BatchSize != 8 || st.BatchStats[0].ComputeInfer.Count != 1 {
		t.Fatalf("batch stats %v", st.BatchStats)
	}
	if st.LastInference == 0 {
		t.Fatal("last_inference not set")
	}

	want := `
# HELP nv_inference_count Number of inferences performed (a batch of n counts n)
# TYPE nv_inference_count counter
nv_inference_count{model="mlp",version="3"} 8
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="mlp",reason="REJECTED",version="3"} 1
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="mlp",version="3"} 5
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="mlp",version="3"} 2000
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"nv_inference_count", "nv_inference_request_failure", "nv_inference_pending_request_count", "nv_inference_queue_duration_us"); err != nil {
		t.Fatal(err)
	}

	r.Close()
	if n, err := testutil.GatherAndCount(reg, "nv_inference_count"); err != nil || n != 0 {
		t.Fatalf("series left after Close: %d, %v", n, err)
	}
}

func TestRecorderWithoutMetrics(t *testing.T) {
	r := NewRecorder("m", 1, nil)
	r.RequestDone(scheduler.RequestStats{Success: true, BatchSize: 1})
	r.ExecutionDone(scheduler.ExecutionStats{BatchSize: 1})
	r.PendingChanged(0)
	r.Close()
	if r.Snapshot().InferenceCount != 1 {
		t.Fatal("statistics not kept without metrics")
	}
}
