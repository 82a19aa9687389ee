package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

func TestNewRejectsBadConfig(t *testing.T) {
	inst := []backend.Instance{&fakeInstance{}}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no instances", Config{}, "no instances"},
		{"nil instance", Config{Instances: []backend.Instance{nil}}, "nil instance"},
		{"negative max batch", Config{Instances: inst, MaxBatchSize: -1}, "max_batch_size -1"},
		{"negative queue", Config{Instances: inst, MaxQueueSize: -1}, "max_queue_size -1"},
		{"negative timeout", Config{Instances: inst, DefaultTimeout: -1}, "default timeout"},
		{"bad action", Config{Instances: inst, TimeoutAction: 7}, "timeout action 7"},
		{"negative delay", Config{Instances: inst, MaxBatchSize: 4, Dynamic: &DynamicBatching{MaxQueueDelay: -1}}, "max queue delay"},
		{"preferred above max", Config{Instances: inst, MaxBatchSize: 4, Dynamic: &DynamicBatching{PreferredBatchSizes: []int{2, 8}}}, "preferred batch size 8"},
		{"preferred zero", Config{Instances: inst, MaxBatchSize: 4, Dynamic: &DynamicBatching{PreferredBatchSizes: []int{0}}}, "preferred batch size 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Model = "mlp"
			s, err := New(tt.cfg)
			if err == nil {
				_ = s.Close(context.Background())
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v is not ErrConfig", err)
			}
			mustContain(t, err, "mlp", tt.want)
		})
	}
}

func TestRejectsInvalidRequests(t *testing.T) {
	inst := &fakeInstance{}
	rec := &recorder{}
	s := start(t, Config{MaxBatchSize: 4, Dynamic: &DynamicBatching{}, Instances: []backend.Instance{inst}, Observer: rec})
	x := func(shape ...int64) tensor.Tensor {
		n, _ := tensor.ElementCount(shape)
		return f32("x", shape, make([]float32, n)...)
	}
	tests := []struct {
		name   string
		inputs []tensor.Tensor
		want   []string
	}{
		{"batch above max", []tensor.Tensor{x(5, 2)}, []string{"batch-size must be <= 4", "got 5", "'mlp'"}},
		{"zero batch", []tensor.Tensor{x(0, 2)}, []string{"batch-size must be >= 1", "got 0"}},
		{"batch sizes differ", []tensor.Tensor{x(2, 2), strs("s", "a", "b", "c")}, []string{"input 's' batch size 3", "input 'x' batch size 2"}},
		{"no inputs", nil, []string{"no inputs", "'mlp'"}},
		{"scalar input", []tensor.Tensor{x()}, []string{"input 'x' has no shape"}},
		{"duplicate input", []tensor.Tensor{x(1, 2), x(1, 2)}, []string{"input 'x' is given more than once"}},
		{"data shorter than shape", []tensor.Tensor{{Name: "x", DataType: tensor.FP32, Shape: []int64{2, 2}, Data: make([]byte, 12)}}, []string{"tensor \"x\" has 12 bytes", "needs 16"}},
		{"bad BYTES data", []tensor.Tensor{{Name: "s", DataType: tensor.Bytes, Shape: []int64{1}, Data: []byte{9, 0, 0, 0, 'a'}}}, []string{"BYTES element 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Do(context.Background(), &Request{Inputs: tt.inputs, Outputs: []string{"y"}})
			if got := infer.CodeOf(err); got != infer.CodeInvalidArgument {
				t.Errorf("code = %v (%v), want invalid argument", got, err)
			}
			mustContain(t, err, tt.want...)
		})
	}
	if calls, _, _, _ := inst.stats(); calls != 0 {
		t.Errorf("instance ran %d times for invalid requests", calls)
	}
	for _, r := range rec.failures() {
		if r != FailureOther {
			t.Errorf("failure reason %q, want %q", r, FailureOther)
		}
	}
}

func TestBatchesReachPreferredSize(t *testing.T) {
	const delay = 300 * time.Millisecond
	inst := &fakeInstance{gate: make(chan struct{})}
	rec := &recorder{}
	s := start(t, Config{
		MaxBatchSize: 8,
		Dynamic:      &DynamicBatching{PreferredBatchSizes: []int{4}, MaxQueueDelay: delay},
		Instances:    []backend.Instance{inst},
		Observer:     rec,
	})
	ctx := context.Background()

	// A request of a preferred size runs at once and holds the instance.
	first := goDo(ctx, s, rowsRequest(4, 0))
	waitFor(t, "first batch to start", func() bool { c, _, _, _ := inst.stats(); return c == 1 })

	var rest []<-chan result
	var sent []time.Time
	for i := range 6 {
		sent = append(sent, time.Now())
		rest = append(rest, goDo(ctx, s, rowsRequest(1, float32(10*i))))
		waitFor(t, "request queued", func() bool { return s.Pending() == i+1 }) // keep FIFO order known
	}
	queuedAt := time.Now()

	inst.gate <- struct{}{} // first batch
	inst.gate <- struct{}{} // the preferred batch of 4, without waiting for the delay
	waitFor(t, "second batch", func() bool { return len(rec.batches()) == 2 })
	if waited := time.Since(queuedAt); waited >= delay {
		t.Errorf("preferred batch waited %v, the queue delay is %v", waited, delay)
	}
	inst.gate <- struct{}{} // the 2 left run once the delay has passed
	if r := get(t, first); r.err != nil {
		t.Fatal(r.err)
	}
	for i, ch := range rest {
		r := get(t, ch)
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if want := []float32{float32(20 * i), float32(20*i + 2)}; !slices.Equal(floats(r.outs[0]), want) {
			t.Errorf("request %d got %v, want %v", i, floats(r.outs[0]), want)
		}
		// The delay counts from the oldest request of the batch.
		if i >= 4 && r.at.Sub(sent[4]) < delay {
			t.Errorf("request %d returned %v after its batch's oldest request, before the queue delay %v", i, r.at.Sub(sent[4]), delay)
		}
	}
	want := [][2]int{{4, 1}, {4, 4}, {2, 2}}
	if got := rec.batches(); !slices.Equal(got, want) {
		t.Errorf("batches (size, requests) = %v, want %v", got, want)
	}
}

func TestBatchesCutAtLargestReachablePreferredSize(t *testing.T) {
	const delay = time.Minute
	inst := &fakeInstance{gate: make(chan struct{})}
	rec := &recorder{}
	s := start(t, Config{
		MaxBatchSize: 8,
		Dynamic:      &DynamicBatching{PreferredBatchSizes: []int{2, 3, 6}, MaxQueueDelay: delay},
		Instances:    []backend.Instance{inst},
		Observer:     rec,
	})
	ctx := context.Background()
	chs := []<-chan result{goDo(ctx, s, rowsRequest(6, 0))}
	waitFor(t, "first batch to start", func() bool { c, _, _, _ := inst.stats(); return c == 1 })
	for i := range 5 {
		chs = append(chs, goDo(ctx, s, rowsRequest(1, float32(i))))
		waitFor(t, "request queued", func() bool { return s.Pending() == i+1 })
	}
	// Of 5 queued, 3 is the largest preferred size reachable, then 2: no
	// batch waits for the (long) queue delay.
	close(inst.gate)
	for _, ch := range chs {
		if r := get(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got, want := rec.batches(), [][2]int{{6, 1}, {3, 3}, {2, 2}}; !slices.Equal(got, want) {
		t.Errorf("batches = %v, want %v", got, want)
	}
}

func TestMaxQueueDelayGathersRequests(t *testing.T) {
	const delay = 200 * time.Millisecond
	inst := &fakeInstance{}
	rec := &recorder{}
	s := start(t, Config{
		MaxBatchSize: 8,
		Dynamic:      &DynamicBatching{MaxQueueDelay: delay},
		Instances:    []backend.Instance{inst},
		Observer:     rec,
	})
	begin := time.Now()
	var chs []<-chan result
	for i, n := range []int{1, 2, 1} {
		chs = append(chs, goDo(context.Background(), s, rowsRequest(n, float32(i))))
	}
	for _, ch := range chs {
		r := get(t, ch)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if took := r.at.Sub(begin); took < delay || took > delay+2*time.Second {
			t.Errorf("request took %v, want about the queue delay %v", took, delay)
		}
	}
	if got, want := rec.batches(), [][2]int{{4, 3}}; !slices.Equal(got, want) {
		t.Errorf("batches = %v, want %v", got, want)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, st := range rec.reqs {
		if st.Queue < delay/2 || st.Total < st.Queue {
			t.Errorf("stats %+v: queue time should be about the delay and within the total", st)
		}
	}
}

func TestMixedBatchSizesSplitBack(t *testing.T) {
	inst := &fakeInstance{gate: make(chan struct{})}
	rec := &recorder{}
	s := start(t, Config{
		MaxBatchSize: 8,
		Dynamic:      &DynamicBatching{PreferredBatchSizes: []int{6}, MaxQueueDelay: time.Hour},
		Instances:    []backend.Instance{inst},
		Observer:     rec,
	})
	ctx := context.Background()
	hold := goDo(ctx, s, rowsRequest(6, 0))
	waitFor(t, "first batch to start", func() bool { c, _, _, _ := inst.stats(); return c == 1 })

	type want struct {
		y []float32
		t []string
	}
	reqs := []*Request{
		{Inputs: []tensor.Tensor{f32("x", []int64{1, 2}, 1, 2), strs("s", "a")}, Outputs: []string{"y", "t"}},
		// Inputs in another order still batch by name.
		{Inputs: []tensor.Tensor{strs("s", "bb", ""), f32("x", []int64{2, 2}, 3, 4, 5, 6)}, Outputs: []string{"y", "t"}},
		{Inputs: []tensor.Tensor{f32("x", []int64{3, 2}, 7, 8, 9, 10, 11, 12), strs("s", "ccc", "dddd", "e")}, Outputs: []string{"y", "t"}},
	}
	wants := []want{
		{[]float32{2, 4}, []string{"a"}},
		{[]float32{6, 8, 10, 12}, []string{"bb", ""}},
		{[]float32{14, 16, 18, 20, 22, 24}, []string{"ccc", "dddd", "e"}},
	}
	var chs []<-chan result
	for _, r := range reqs {
		chs = append(chs, goDo(ctx, s, r))
		waitFor(t, "request queued", func() bool { return s.Pending() == len(chs) }) // keep FIFO order known
	}
	close(inst.gate)
	if r := get(t, hold); r.err != nil {
		t.Fatal(r.err)
	}
	for i, ch := range chs {
		r := get(t, ch)
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if len(r.outs) != 2 || r.outs[0].Name != "y" || r.outs[1].Name != "t" {
			t.Fatalf("request %d: outputs %v, want y and t", i, r.outs)
		}
		n := int64(i + 1)
		if !slices.Equal(r.outs[0].Shape, []int64{n, 2}) || !slices.Equal(r.outs[1].Shape, []int64{n}) {
			t.Errorf("request %d: shapes %v, %v", i, r.outs[0].Shape, r.outs[1].Shape)
		}
		if got := floats(r.outs[0]); !slices.Equal(got, wants[i].y) {
			t.Errorf("request %d: y = %v, want %v", i, got, wants[i].y)
		}
		elems, err := tensor.DecodeBytes(r.outs[1].Data, n)
		if err != nil {
			t.Fatalf("request %d: t: %v", i, err)
		}
		var got []string
		for _, e := range elems {
			got = append(got, string(e))
		}
		if !slices.Equal(got, wants[i].t) {
			t.Errorf("request %d: t = %q, want %q", i, got, wants[i].t)
		}
	}
	if got, want := rec.batches(), [][2]int{{6, 1}, {6, 3}}; !slices.Equal(got, want) {
		t.Errorf("batches = %v, want %v", got, want)
	}
}

func TestIncompatibleRequestsRunSeparately(t *testing.T) {
	inst := &fakeInstance{gate: make(chan struct{})}
	rec := &recorder{}
	s := start(t, Config{
		MaxBatchSize: 8,
		Dynamic:      &DynamicBatching{MaxQueueDelay: 50 * time.Millisecond},
		Instances:    []backend.Instance{inst},
		Observer:     rec,
	})
	ctx := context.Background()
	hold := goDo(ctx, s, rowsRequest(8, 0))
	waitFor(t, "first batch to start", func() bool { c, _, _, _ := inst.stats(); return c == 1 })

	reqs := []*Request{
		{Inputs: []tensor.Tensor{f32("x", []int64{1, 2}, 1, 2)}, Outputs: []string{"y"}},
		{Inputs: []tensor.Tensor{f32("x", []int64{1, 3}, 1, 2, 3)}, Outputs: []string{"y"}}, // other row length
		{Inputs: []tensor.Tensor{f32("x", []int64{1, 2}, 1, 2), strs("s", "a")}, Outputs: []string{"t"}},
		{Inputs: []tensor.Tensor{f32("x", []int64{1, 2}, 1, 2), strs("s", "a")}, Outputs: []string{"y", "t"}}, // other outputs
		{Inputs: []tensor.Tensor{f32("x", []int64{2, 2}, 5, 6, 7, 8)}, Outputs: []string{"y"}},
	}
	var chs []<-chan result
	for _, r := range reqs {
		chs = append(chs, goDo(ctx, s, r))
		waitFor(t, "request queued", func() bool { return s.Pending() == len(chs) })
	}
	close(inst.gate)
	if r := get(t, hold); r.err != nil {
		t.Fatal(r.err)
	}
	for i, ch := range chs {
		if r := get(t, ch); r.err != nil {
			t.Errorf("request %d: %v", i, r.err)
		}
	}
	if got, want := rec.batches(), [][2]int{{8, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {2, 1}}; !slices.Equal(got, want) {
		t.Errorf("batches = %v, want %v", got, want)
	}
}

func TestNonBatchingModelPassesTensorsThrough(t *testing.T) {
	inst := &fakeInstance{}
	rec := &recorder{}
	s := start(t, Config{Dynamic: &DynamicBatching{MaxQueueDelay: time.Hour}, Instances: []backend.Instance{inst}, Observer: rec})
	outs, err := s.Do(context.Background(), &Request{Inputs: []tensor.Tensor{f32("x", []int64{3}, 1, 2, 3)}, Outputs: []string{"y"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := floats(outs[0]); !slices.Equal(got, []float32{2, 4, 6}) || !slices.Equal(outs[0].Shape, []int64{3}) {
		t.Errorf("y = %v shape %v", got, outs[0].Shape)
	}
	if got, want := rec.batches(), [][2]int{{1, 1}}; !slices.Equal(got, want) {
		t.Errorf("batches = %v, want %v", got, want)
	}
}

func TestQueueFull(t *testing.T) {
	inst := &fakeInstance{gate: make(chan struct{})}
	rec := &recorder{}
	s := start(t, Config{MaxBatchSize: 4, MaxQueueSize: 2, Instances: []backend.Instance{inst}, Observer: rec})
	ctx := context.Background()
	hold := goDo(ctx, s, rowsRequest(1, 0))
	waitFor(t, "first request to run", func() bool { c, _, _, _ := inst.stats(); return c == 1 })
	q1, q2 := goDo(ctx, s, rowsRequest(1, 1)), goDo(ctx, s, rowsRequest(1, 2))
	waitFor(t, "2 queued requests", func() bool { return s.Pending() == 2 })

	_, err := s.Do(ctx, rowsRequest(1, 3))
	if infer.CodeOf(err) != infer.CodeResourceExhausted {
		t.Errorf("code = %v, want resource exhausted", infer.CodeOf(err))
	}
	mustContain(t, err, "model 'mlp' queue is full (max_queue_size 2)")
	if got := rec.failures(); !slices.Equal(got, []string{FailureRejected}) {
		t.Errorf("failures = %v", got)
	}

	close(inst.gate)
	for _, ch := range []<-chan result{hold, q1, q2} {
		if r := get(t, ch); r.err != nil {
			t.Error(r.err)
		}
	}
}

func TestDefaultMaxQueueSize(t *testing.T) {
	s := start(t, Config{Instances: []backend.Instance{&fakeInstance{}}})
	if s.maxQueue != DefaultMaxQueueSize {
		t.Errorf("max queue = %d, want %d", s.maxQueue, DefaultMaxQueueSize)
	}
}

func TestTimeoutOverride(t *testing.T) {
	tests := []struct {
		name     string
		def      time.Duration
		allow    bool
		request  time.Duration
		expected time.Duration
	}{
		{"default only", time.Second, false, 0, time.Second},
		{"override not allowed", time.Second, false, time.Millisecond, time.Second},
		{"override shortens", time.Second, true, time.Millisecond, time.Millisecond},
		{"override cannot lengthen", time.Second, true, time.Hour, time.Second},
		{"override without default", 0, true, time.Millisecond, time.Millisecond},
		{"no timeout", 0, true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Scheduler{cfg: Config{DefaultTimeout: tt.def, AllowTimeoutOverride: tt.allow}}
			if got := s.timeout(&Request{Timeout: tt.request}); got != tt.expected {
				t.Errorf("timeout = %v, want %v", got, tt.expected)
			}
		})
	}
}

func TestQueueTimeoutRejects(t *testing.T) {
	inst := &fakeInstance{gate: make(chan struct{})}
	rec := &recorder{}
	s := start(t, Config{MaxBatchSize: 4, DefaultTimeout: 50 * time.Millisecond, Instances: []backend.Instance{inst}, Observer: rec})
	ctx := context.Background()
	hold := goDo(ctx, s, rowsRequest(1, 0))
	waitFor(t, "first request to run", func() bool { c, _, _, _ := inst.stats(); return c == 1 })

	_, err := s.Do(ctx, rowsRequest(1, 1))
	if infer.CodeOf(err) != infer.CodeDeadlineExceeded {
		t.Errorf("code = %v (%v), want deadline exceeded", infer.CodeOf(err), err)
	}
	mustContain(t, err, "timeout expired", "'mlp'")
	if n := s.Pending(); n != 0 {
		t.Errorf("Pending = %d after timeout, want 0", n)
	}
	// The running request is past the queue, so its timeout does not apply.
	close(inst.gate)
	if r := get(t, hold); r.err != nil {
		t.Error(r.err)
	}
	if c, _, _, _ := inst.stats(); c != 1 {
		t.Errorf("instance ran %d times, want 1 (the timed-out request must not run)", c)
	}
	if got := rec.failures(); !slices.Equal(got, []string{FailureRejected}) {
		t.Errorf("failures = %v", got)
	}
}

func TestQueueTimeoutDelays(t *testing.T) {
	inst := &fakeInstance{gate: make(chan struct{})}
	var order []float32
	inst.fn = func(in []tensor.Tensor, out []string) ([]tensor.Tensor, error) {
		order = append(order, floats(in[0])[0]) // one instance: no race
		return respond(in, out)
	}
	s := start(t, Config{
		MaxBatchSize:         4,
		AllowTimeoutOverride: true,
		TimeoutAction:        Delay,
		Instances:            []backend.Instance{inst},
	})
	ctx := context.Background()
	hold := goDo(ctx, s, rowsRequest(1, 0))
	waitFor(t, "first request to run", func() bool { c, _, _, _ := inst.stats(); return c == 1 })

	late := rowsRequest(1, 1)
	late.Timeout = 20 * time.Millisecond
	a := goDo(ctx, s, late)
	waitFor(t, "queued", func() bool { return s.Pending() == 1 })
	b := goDo(ctx, s, rowsRequest(1, 2))
	waitFor(t, "queued", func() bool { return s.Pending() == 2 })
	waitFor(t, "timeout to move the request back", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.delayed) == 1
	})
	close(inst.gate)
	for _, ch := range []<-chan result{hold, a, b} {
		if r := get(t, ch); r.err != nil {
			t.Error(r.err)
		}
	}
	if want := []float32{0, 2, 1}; !slices.Equal(order, want) {
		t.Errorf("execution order = %v, want %v (delayed request last)", order, want)
	}
}

func TestCancelRemovesQueuedRequest(t *testing.T) {
	inst := &fakeInstance{gate: make(chan struct{})}
	rec := &recorder{}
	s := start(t, Config{MaxBatchSize: 4, Instances: []backend.Instance{inst}, Observer: rec})
	hold := goDo(context.Background(), s, rowsRequest(1, 0))
	waitFor(t, "first request to run", func() bool { c, _, _, _ := inst.stats(); return c == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	ch := goDo(ctx, s, rowsRequest(1, 1))
	waitFor(t, "queued", func() bool { return s.Pending() == 1 })
	cancel()
	r := get(t, ch)
	if infer.CodeOf(r.err) != infer.CodeCancelled || !errors.Is(r.err, context.Canceled) {
		t.Errorf("err = %v, want cancelled", r.err)
	}
	if n := s.Pending(); n != 0 {
		t.Errorf("Pending = %d after cancel, want 0", n)
	}
	close(inst.gate)
	if r := get(t, hold); r.err != nil {
		t.Error(r.err)
	}
	ctxClose, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelClose()
	if err := s.Close(ctxClose); err != nil {
		t.Fatal(err)
	}
	if c, _, _, _ := inst.stats(); c != 1 {
		t.Errorf("instance ran %d times, want 1 (the cancelled request must not run)", c)
	}
	if got := rec.failures(); !slices.Equal(got, []string{FailureCanceled}) {
		t.Errorf("failures = %v", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if last := rec.pending[len(rec.pending)-1]; last != 0 {
		t.Errorf("last PendingChanged = %d, want 0", last)
	}
}

func TestCancelWhileRunningDiscardsResult(t *testing.T) {
	inst := &fakeInstance{gate: make(chan struct{})}
	s := start(t, Config{MaxBatchSize: 4, Instances: []backend.Instance{inst}})
	ctx, cancel := context.WithCancel(context.Background())
	ch := goDo(ctx, s, rowsRequest(1, 0))
	waitFor(t, "request to run", func() bool { c, _, _, _ := inst.stats(); return c == 1 })
	cancel()
	if r := get(t, ch); infer.CodeOf(r.err) != infer.CodeCancelled {
		t.Errorf("err = %v, want cancelled", r.err)
	}
	close(inst.gate)
	// The instance is free again for others.
	if _, err := s.Do(context.Background(), rowsRequest(1, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestCloseDrains(t *testing.T) {
	inst := &fakeInstance{gate: make(chan struct{})}
	s := start(t, Config{MaxBatchSize: 1, Dynamic: &DynamicBatching{}, Instances: []backend.Instance{inst}})
	ctx := context.Background()
	chs := []<-chan result{goDo(ctx, s, rowsRequest(1, 0))}
	waitFor(t, "first request to run", func() bool { c, _, _, _ := inst.stats(); return c == 1 })
	for i := range 3 {
		chs = append(chs, goDo(ctx, s, rowsRequest(1, float32(i+1))))
	}
	waitFor(t, "3 queued requests", func() bool { return s.Pending() == 3 })

	closed := make(chan error, 1)
	go func() { closed <- s.Close(ctx) }()
	waitFor(t, "closing", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.closing })

	_, err := s.Do(ctx, rowsRequest(1, 9))
	if infer.CodeOf(err) != infer.CodeUnavailable {
		t.Errorf("Do while closing: code %v, want unavailable", infer.CodeOf(err))
	}
	mustContain(t, err, "model 'mlp' is unloading")
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the queue drained", err)
	case <-time.After(20 * time.Millisecond):
	}

	close(inst.gate)
	for i, ch := range chs {
		r := get(t, ch)
		if r.err != nil {
			t.Errorf("request %d: %v", i, r.err)
		} else if got := floats(r.outs[0])[0]; got != float32(2*i) {
			t.Errorf("request %d: y[0] = %v, want %v", i, got, 2*i)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	calls, closes, _, closedBusy := inst.stats()
	if calls != 4 || closes != 1 || closedBusy {
		t.Errorf("calls %d, closes %d, closed while busy %v; want 4, 1, false", calls, closes, closedBusy)
	}
}

func TestCloseGivesUpAtDeadline(t *testing.T) {
	inst := &fakeInstance{gate: make(chan struct{})} // never opened: Execute hangs until cancelled
	s := start(t, Config{MaxBatchSize: 4, Instances: []backend.Instance{inst}})
	ctx := context.Background()
	running := goDo(ctx, s, rowsRequest(1, 0))
	waitFor(t, "first request to run", func() bool { c, _, _, _ := inst.stats(); return c == 1 })
	queued := goDo(ctx, s, rowsRequest(1, 1))
	waitFor(t, "queued", func() bool { return s.Pending() == 1 })

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.Close(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want deadline exceeded", err)
	}
	if r := get(t, queued); infer.CodeOf(r.err) != infer.CodeUnavailable {
		t.Errorf("queued request: %v, want unavailable", r.err)
	}
	// Execute saw its context cancelled and failed the running batch.
	r := get(t, running)
	if r.err == nil || !errors.Is(r.err, context.Canceled) {
		t.Errorf("running request: %v, want the cancelled execution's error", r.err)
	}
	waitFor(t, "instance closed", func() bool { _, c, _, _ := inst.stats(); return c == 1 })
}

func TestInstancesRunConcurrently(t *testing.T) {
	load := &meter{}
	gate := make(chan struct{})
	var insts []backend.Instance
	var fakes []*fakeInstance
	for range 3 {
		f := &fakeInstance{gate: gate, load: load}
		fakes = append(fakes, f)
		insts = append(insts, f)
	}
	s := start(t, Config{MaxBatchSize: 4, Instances: insts})
	var chs []<-chan result
	for i := range 5 {
		chs = append(chs, goDo(context.Background(), s, rowsRequest(1, float32(i))))
	}
	waitFor(t, "3 executions and 2 queued", func() bool { n, _ := load.now(); return n == 3 && s.Pending() == 2 })
	time.Sleep(20 * time.Millisecond)
	if n, peak := load.now(); n != 3 || peak != 3 {
		t.Errorf("running %d, peak %d; want 3 (one per instance)", n, peak)
	}
	close(gate)
	for _, ch := range chs {
		if r := get(t, ch); r.err != nil {
			t.Error(r.err)
		}
	}
	for i, f := range fakes {
		if _, _, overlapped, _ := f.stats(); overlapped {
			t.Errorf("instance %d ran two executions at once", i)
		}
	}
}

func TestBackendErrorFailsOnlyItsBatch(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode infer.Code
	}{
		{"plain error", errors.New("onnx says no"), infer.CodeInternal},
		{"coded error", infer.Errorf(infer.CodeInvalidArgument, "onnx says no"), infer.CodeInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := make(chan struct{})
			inst := &fakeInstance{gate: gate}
			inst.fn = func(in []tensor.Tensor, out []string) ([]tensor.Tensor, error) {
				if slices.ContainsFunc(floats(in[0]), func(v float32) bool { return v < 0 }) {
					return nil, tt.err
				}
				return respond(in, out)
			}
			rec := &recorder{}
			s := start(t, Config{MaxBatchSize: 4, Dynamic: &DynamicBatching{PreferredBatchSizes: []int{2}}, Instances: []backend.Instance{inst}, Observer: rec})
			other := start(t, Config{Model: "other", MaxBatchSize: 4, Instances: []backend.Instance{&fakeInstance{}}})
			ctx := context.Background()

			hold := goDo(ctx, s, rowsRequest(2, 0))
			waitFor(t, "first batch to run", func() bool { c, _, _, _ := inst.stats(); return c == 1 })
			good, bad := goDo(ctx, s, rowsRequest(1, 1)), goDo(ctx, s, rowsRequest(1, -5))
			waitFor(t, "2 queued", func() bool { return s.Pending() == 2 })
			gate <- struct{}{}
			gate <- struct{}{}
			for _, ch := range []<-chan result{good, bad} {
				r := get(t, ch)
				if infer.CodeOf(r.err) != tt.wantCode {
					t.Errorf("code = %v (%v), want %v", infer.CodeOf(r.err), r.err, tt.wantCode)
				}
				mustContain(t, r.err, "model 'mlp' version 1", "onnx says no")
			}
			if r := get(t, hold); r.err != nil {
				t.Error(r.err)
			}
			close(gate)
			if _, err := s.Do(ctx, rowsRequest(1, 2)); err != nil {
				t.Errorf("request after the failed batch: %v", err)
			}
			if _, err := other.Do(ctx, rowsRequest(1, -5)); err != nil {
				t.Errorf("other model: %v", err)
			}
			if got := rec.failures(); !slices.Equal(got, []string{FailureBackend, FailureBackend}) {
				t.Errorf("failures = %v", got)
			}
		})
	}
}

func TestPanicIsRecovered(t *testing.T) {
	inst := &fakeInstance{}
	calls := 0
	inst.fn = func(in []tensor.Tensor, out []string) ([]tensor.Tensor, error) {
		calls++
		if calls == 1 {
			var m map[string]int
			m["boom"]++ // a backend bug
		}
		return respond(in, out)
	}
	s := start(t, Config{MaxBatchSize: 4, Instances: []backend.Instance{inst}})
	_, err := s.Do(context.Background(), rowsRequest(1, 0))
	if infer.CodeOf(err) != infer.CodeInternal {
		t.Errorf("code = %v, want internal", infer.CodeOf(err))
	}
	mustContain(t, err, "model 'mlp'", "panicked", "nil map")
	if _, err := s.Do(context.Background(), rowsRequest(1, 0)); err != nil {
		t.Errorf("the instance should still serve: %v", err)
	}
}

func TestBadOutputsFailTheBatch(t *testing.T) {
	tests := []struct {
		name string
		outs []tensor.Tensor
		want string
	}{
		{"wrong batch dim", []tensor.Tensor{f32("y", []int64{3, 2}, 0, 0, 0, 0, 0, 0)}, "output 'y' has shape [3 2], its first dimension must be the batch size 2"},
		{"scalar output", []tensor.Tensor{f32("y", nil, 0)}, "output 'y' has shape []"},
		{"too few outputs", nil, "instance returned 0 outputs, 1 were requested"},
		{"data too short", []tensor.Tensor{{Name: "y", DataType: tensor.FP32, Shape: []int64{2, 2}, Data: make([]byte, 4)}}, "splitting output 'y'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst := &fakeInstance{fn: func([]tensor.Tensor, []string) ([]tensor.Tensor, error) { return tt.outs, nil }}
			rec := &recorder{}
			s := start(t, Config{MaxBatchSize: 4, Instances: []backend.Instance{inst}, Observer: rec})
			_, err := s.Do(context.Background(), rowsRequest(2, 0))
			if infer.CodeOf(err) != infer.CodeInternal {
				t.Errorf("code = %v, want internal", infer.CodeOf(err))
			}
			mustContain(t, err, "model 'mlp'", tt.want)
			if got := rec.failures(); !slices.Equal(got, []string{FailureBackend}) {
				t.Errorf("failures = %v", got)
			}
		})
	}
}

func TestPreserveOrdering(t *testing.T) {
	for _, preserve := range []bool{false, true} {
		t.Run(map[bool]string{false: "unordered", true: "ordered"}[preserve], func(t *testing.T) {
			gate := make(chan struct{})
			slow := func(in []tensor.Tensor, out []string) ([]tensor.Tensor, error) {
				if floats(in[0])[0] == 0 {
					<-gate
				}
				return respond(in, out)
			}
			a, b := &fakeInstance{fn: slow}, &fakeInstance{fn: slow}
			s := start(t, Config{
				MaxBatchSize: 1,
				Dynamic:      &DynamicBatching{PreserveOrdering: preserve},
				Instances:    []backend.Instance{a, b},
			})
			t.Cleanup(func() { drain(gate) })
			ctx := context.Background()
			first := goDo(ctx, s, rowsRequest(1, 0))
			waitFor(t, "first request to run", func() bool {
				ca, _, _, _ := a.stats()
				cb, _, _, _ := b.stats()
				return ca+cb == 1
			})
			second := goDo(ctx, s, rowsRequest(1, 1))

			select {
			case r := <-second:
				if preserve {
					t.Fatalf("second request returned (%v) before the first", r.err)
				}
			case <-time.After(200 * time.Millisecond):
				if !preserve {
					t.Fatal("second request waited for the first without preserve_ordering")
				}
			}
			close(gate)
			if r := get(t, first); r.err != nil {
				t.Error(r.err)
			}
			if preserve {
				if r := get(t, second); r.err != nil {
					t.Error(r.err)
				}
			}
		})
	}
}

func TestObserverTimings(t *testing.T) {
	inst := &fakeInstance{fn: func(in []tensor.Tensor, out []string) ([]tensor.Tensor, error) {
		time.Sleep(10 * time.Millisecond)
		return respond(in, out)
	}}
	rec := &recorder{}
	s := start(t, Config{MaxBatchSize: 4, Dynamic: &DynamicBatching{MaxQueueDelay: 20 * time.Millisecond}, Instances: []backend.Instance{inst}, Observer: rec})
	if _, err := s.Do(context.Background(), rowsRequest(3, 0)); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) != 1 || len(rec.execs) != 1 {
		t.Fatalf("got %d request and %d execution reports, want 1 each", len(rec.reqs), len(rec.execs))
	}
	r, e := rec.reqs[0], rec.execs[0]
	if !r.Success || r.BatchSize != 3 || e.BatchSize != 3 || e.Requests != 1 {
		t.Errorf("request %+v, execution %+v", r, e)
	}
	if r.ComputeInfer < 10*time.Millisecond || r.ComputeInfer != e.ComputeInfer {
		t.Errorf("compute infer %v (execution %v), want >= 10ms and equal", r.ComputeInfer, e.ComputeInfer)
	}
	if r.Queue < 20*time.Millisecond {
		t.Errorf("queue %v, want >= the 20ms queue delay", r.Queue)
	}
	if sum := r.Queue + r.ComputeInput + r.ComputeInfer + r.ComputeOutput; r.Total < sum {
		t.Errorf("total %v is less than its parts %v", r.Total, sum)
	}
	if !slices.Equal(rec.pending, []int{1, 0}) {
		t.Errorf("PendingChanged calls = %v, want [1 0]", rec.pending)
	}
}

func TestConcurrentLoad(t *testing.T) {
	var insts []backend.Instance
	for range 2 {
		insts = append(insts, &fakeInstance{})
	}
	s := start(t, Config{
		MaxBatchSize: 8,
		Dynamic:      &DynamicBatching{PreferredBatchSizes: []int{4, 8}, MaxQueueDelay: time.Millisecond},
		Instances:    insts,
	})
	const n = 200
	var chs []<-chan result
	for i := range n {
		ctx := context.Background()
		var cancel context.CancelFunc = func() {}
		if i%7 == 0 {
			ctx, cancel = context.WithCancel(ctx)
		}
		chs = append(chs, goDo(ctx, s, rowsRequest(1+i%3, float32(i))))
		cancel()
	}
	for i, ch := range chs {
		r := get(t, ch)
		if i%7 == 0 {
			if r.err != nil && infer.CodeOf(r.err) != infer.CodeCancelled {
				t.Errorf("request %d: %v", i, r.err)
			}
			continue
		}
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if got := floats(r.outs[0]); len(got) != 2*(1+i%3) || got[0] != float32(2*i) {
			t.Errorf("request %d got %v", i, got)
		}
	}
	if n := s.Pending(); n != 0 {
		t.Errorf("Pending = %d, want 0", n)
	}
}

// badCloser is an instance whose Close fails or panics.
type badCloser struct {
	fakeInstance
	panics bool
}

func (b *badCloser) Close() error {
	if b.panics {
		panic("close bug")
	}
	return errors.New("close failed")
}

func TestCloseReportsInstanceErrors(t *testing.T) {
	checkNoLeaks(t)
	s, err := New(Config{
		Model:     "mlp",
		Instances: []backend.Instance{&badCloser{}, &badCloser{panics: true}, &fakeInstance{}},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Close(context.Background())
	mustContain(t, err, "model 'mlp'", "close failed", "panicked while closing: close bug")
}

// loneRequests makes a dynamic batcher with this max queue delay and runs
// n requests one after another through it, each waiting out the delay
// alone; it returns their median time in the queue.
func loneRequests(tb testing.TB, delay time.Duration, n int) time.Duration {
	tb.Helper()
	rec := &recorder{}
	s := start(tb, Config{
		MaxBatchSize: 8,
		Dynamic:      &DynamicBatching{MaxQueueDelay: delay},
		Instances:    []backend.Instance{&fakeInstance{}, &fakeInstance{}},
		Observer:     rec,
	})
	req := rowsRequest(1, 0)
	for range n {
		if _, err := s.Do(context.Background(), req); err != nil {
			tb.Fatal(err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	queued := make([]time.Duration, len(rec.reqs))
	for i, st := range rec.reqs {
		queued[i] = st.Queue
	}
	slices.Sort(queued)
	return queued[len(queued)/2]
}

func TestSubMillisecondQueueDelayIsHonoured(t *testing.T) {
	// The Go runtime rounds an idle sleep up to a whole millisecond: with a
	// timer alone these requests would wait ~1 ms. The median keeps a busy
	// machine's outliers out.
	const delay = 200 * time.Microsecond
	median := loneRequests(t, delay, 100)
	if median < delay || median > 3*delay {
		t.Errorf("median queue time %v with max_queue_delay %v; want within [%v, %v]", median, delay, delay, 3*delay)
	}
}

func TestQueueDelayWaitsWithoutBurningACore(t *testing.T) {
	// Lone requests wait out a sub-millisecond max_queue_delay: the wait
	// must sleep, not spin (which cost a core for the whole delay, taken
	// from the client and the other processes on a small machine). The
	// same requests without a delay give the CPU they cost anyway.
	const (
		delay = 900 * time.Microsecond
		n     = 40
	)
	cpu0 := processCPU(t)
	loneRequests(t, 0, n)
	cpu1 := processCPU(t)
	median := loneRequests(t, delay, n)
	waiting := processCPU(t) - cpu1 - (cpu1 - cpu0)
	t.Logf("waiting out the delays cost %v of CPU; median queue time %v", waiting, median)
	if limit := n * delay / 4; waiting > limit {
		t.Errorf("%d requests waiting out %v each used %v more CPU than without the delay; want at most %v (a quarter of the waits)",
			n, delay, waiting, limit)
	}
	if median < delay || median > delay+delay/2 {
		t.Errorf("median queue time %v with max_queue_delay %v; want within [%v, %v]", median, delay, delay, delay+delay/2)
	}
}

// processCPU is the CPU time (user and system) the test process used so far.
func processCPU(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
