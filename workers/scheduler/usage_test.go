package scheduler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

func TestComputeShare(t *testing.T) {
	tests := []struct {
		exec            time.Duration
		rows, batchRows int
		want            time.Duration
	}{
		{100 * time.Millisecond, 1, 4, 25 * time.Millisecond},
		{100 * time.Millisecond, 3, 4, 75 * time.Millisecond},
		{100 * time.Millisecond, 4, 4, 100 * time.Millisecond},
		{10, 1, 3, 3}, // rounded down
		{time.Hour, 1, 1 << 20, time.Hour / (1 << 20)},
		{time.Hour, 1<<20 - 1, 1 << 20, time.Duration(int64(time.Hour) * (1<<20 - 1) / (1 << 20))},
		{0, 1, 4, 0},
		{-5, 1, 4, 0},
		{100, 0, 4, 0},
		{100, 1, 0, 0},
	}
	for _, tt := range tests {
		if got := computeShare(tt.exec, tt.rows, tt.batchRows); got != tt.want {
			t.Errorf("computeShare(%v, %d, %d) = %v, want %v", tt.exec, tt.rows, tt.batchRows, got, tt.want)
		}
	}
}

func TestComputeShareDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = computeShare(time.Second, 3, 7) }); n != 0 {
		t.Errorf("computeShare allocates %v times", n)
	}
}

// TestUsageSharesABatch runs requests of 1 and 3 rows in one batch: each
// gets its rows and its share of the execution's time, and the shares add
// up to the execution's time.
func TestUsageSharesABatch(t *testing.T) {
	gate := make(chan struct{})
	inst := &fakeInstance{gate: gate}
	inst.fn = func(in []tensor.Tensor, out []string) ([]tensor.Tensor, error) {
		time.Sleep(20 * time.Millisecond)
		return respond(in, out)
	}
	rec := &recorder{}
	s := start(t, Config{MaxBatchSize: 8, Dynamic: &DynamicBatching{PreferredBatchSizes: []int{4}}, Instances: []backend.Instance{inst}, Observer: rec})
	ctx := context.Background()

	hold := goDo(ctx, s, rowsRequest(4, 0))
	waitFor(t, "first batch to run", func() bool { c, _, _, _ := inst.stats(); return c == 1 })
	one, three := rowsRequest(1, 0), rowsRequest(3, 0)
	chOne := goDo(ctx, s, one)
	waitFor(t, "1 queued", func() bool { return s.Pending() == 1 })
	chThree := goDo(ctx, s, three)
	waitFor(t, "2 queued", func() bool { return s.Pending() == 2 })
	gate <- struct{}{}
	gate <- struct{}{}
	for _, ch := range []<-chan result{hold, chOne, chThree} {
		if r := get(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got := rec.batches(); len(got) != 2 || got[1] != [2]int{4, 2} {
		t.Fatalf("batches = %v, want the second of 4 rows in 2 requests", got)
	}
	e := rec.execs[1]
	exec := e.ComputeInput + e.ComputeInfer + e.ComputeOutput
	if one.Usage.Rows != 1 || three.Usage.Rows != 3 {
		t.Errorf("rows = %d, %d, want 1, 3", one.Usage.Rows, three.Usage.Rows)
	}
	if one.Usage.Compute < 5*time.Millisecond {
		t.Errorf("1-row share %v, the execution slept 20ms", one.Usage.Compute)
	}
	if sum := one.Usage.Compute + three.Usage.Compute; sum > exec || sum < exec-2 {
		t.Errorf("shares %v + %v = %v, want the execution's %v", one.Usage.Compute, three.Usage.Compute, sum, exec)
	}
	if d := 3*one.Usage.Compute - three.Usage.Compute; d < -3 || d > 3 {
		t.Errorf("3-row share %v is not 3 x the 1-row share %v", three.Usage.Compute, one.Usage.Compute)
	}
}

func TestUsageOfFailedRequests(t *testing.T) {
	inst := &fakeInstance{}
	inst.fn = func(in []tensor.Tensor, out []string) ([]tensor.Tensor, error) {
		time.Sleep(2 * time.Millisecond)
		return nil, errors.New("onnx says no")
	}
	s := start(t, Config{MaxBatchSize: 4, Instances: []backend.Instance{inst}})
	ctx := context.Background()

	// Executed and failed: compute was spent, no rows were answered.
	r := rowsRequest(2, 0)
	if _, err := s.Do(ctx, r); err == nil {
		t.Fatal("Do succeeded, want the backend's error")
	}
	if r.Usage.Rows != 0 || r.Usage.Compute < 2*time.Millisecond {
		t.Errorf("failed execution: usage %+v, want 0 rows and >= 2ms", r.Usage)
	}
	// Refused before the queue: nothing used, and a stale Usage is cleared.
	r = rowsRequest(5, 0)
	r.Usage = Usage{Rows: 9, Compute: time.Second}
	if _, err := s.Do(ctx, r); err == nil {
		t.Fatal("Do accepted 5 rows, max_batch_size is 4")
	}
	if r.Usage != (Usage{}) {
		t.Errorf("refused request: usage %+v, want none", r.Usage)
	}
}
