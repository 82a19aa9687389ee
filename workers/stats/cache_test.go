package stats

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRecorderCache(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRecorder("simple", 1, m)
	r.CacheMiss(3 * time.Microsecond)
	r.CacheHit(10*time.Microsecond, 4*time.Microsecond)
	r.CacheHit(10*time.Microsecond, 2*time.Microsecond)

	st := r.Snapshot()
	s := st.InferenceStats
	if s.CacheHit.Count != 2 || s.CacheHit.Ns != 6000 || s.CacheMiss.Count != 1 || s.CacheMiss.Ns != 3000 {
		t.Fatalf("cache stats hit %v miss %v", s.CacheHit, s.CacheMiss)
	}
	// A hit is a success but no inference or execution: no model ran.
	if s.Success.Count != 2 || st.InferenceCount != 0 || st.ExecutionCount != 0 || s.ComputeInfer.Count != 0 || st.LastInference == 0 {
		t.Fatalf("snapshot %v", st)
	}
	want := `
# HELP nv_cache_hit_duration_per_model Total cache hit duration per model, in microseconds
# TYPE nv_cache_hit_duration_per_model counter
nv_cache_hit_duration_per_model{model="simple",version="1"} 6
# HELP nv_cache_miss_duration_per_model Total cache miss (insert+lookup) duration per model, in microseconds
# TYPE nv_cache_miss_duration_per_model counter
nv_cache_miss_duration_per_model{model="simple",version="1"} 3
# HELP nv_cache_num_hits_per_model Number of response cache hits per model
# TYPE nv_cache_num_hits_per_model counter
nv_cache_num_hits_per_model{model="simple",version="1"} 2
# HELP nv_cache_num_misses_per_model Number of response cache misses per model
# TYPE nv_cache_num_misses_per_model counter
nv_cache_num_misses_per_model{model="simple",version="1"} 1
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="simple",version="1"} 2
`
	names := []string{"nv_cache_hit_duration_per_model", "nv_cache_miss_duration_per_model", "nv_cache_num_hits_per_model",
		"nv_cache_num_misses_per_model", "nv_inference_request_success"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if n, err := testutil.GatherAndCount(reg, names...); err != nil || n != 0 {
		t.Fatalf("series left after Close: %d, %v", n, err)
	}
}
