package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// decoupledInstance answers each element of input "x" as one response
// (output "y" holding it), waiting for a token from step before each when
// step is set. It records how many executions overlapped.
type decoupledInstance struct {
	fakeInstance
	step chan struct{}

	mu      sync.Mutex
	running int
	peak    int
	ctxErr  error // the context's error when the last execution ended
}

var _ backend.DecoupledInstance = (*decoupledInstance)(nil)

func (d *decoupledInstance) ExecuteDecoupled(ctx context.Context, inputs []tensor.Tensor, outputs []string, send func([]tensor.Tensor) error) error {
	d.mu.Lock()
	d.running++
	d.peak = max(d.peak, d.running)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running--
		d.ctxErr = ctx.Err()
		d.mu.Unlock()
	}()
	for _, v := range floats(inputs[0]) {
		if d.step != nil {
			select {
			case <-d.step:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := send([]tensor.Tensor{f32("y", []int64{1}, v)}); err != nil {
			return err
		}
	}
	return nil
}

func decoupledRequest(send func([]tensor.Tensor) error, vals ...float32) *Request {
	return &Request{
		Inputs:  []tensor.Tensor{f32("x", []int64{int64(len(vals))}, vals...)},
		Outputs: []string{"y"},
		Send:    send,
	}
}

func TestDecoupledSendsEachResponse(t *testing.T) {
	inst := &decoupledInstance{}
	rec := &recorder{}
	s := start(t, Config{Instances: []backend.Instance{inst}, Observer: rec})
	var got []float32
	r := decoupledRequest(func(outs []tensor.Tensor) error {
		got = append(got, floats(outs[0])...)
		return nil
	}, 1, 2, 3)
	outs, err := s.Do(t.Context(), r)
	if err != nil || outs != nil {
		t.Fatalf("Do = %v, %v; want no outputs and no error", outs, err)
	}
	if len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Errorf("responses = %v, want [1 2 3]", got)
	}
	if r.Usage.Rows != 1 || r.Usage.Compute <= 0 {
		t.Errorf("usage = %+v, want 1 row and some compute", r.Usage)
	}
	if b := rec.batches(); len(b) != 1 || b[0] != [2]int{1, 1} {
		t.Errorf("executions = %v, want one of batch 1", b)
	}
}

// TestDecoupledRunsAlone checks that decoupled requests are never batched,
// even with the dynamic batcher, and run one at a time per instance.
func TestDecoupledRunsAlone(t *testing.T) {
	inst := &decoupledInstance{step: make(chan struct{})}
	rec := &recorder{}
	s := start(t, Config{MaxBatchSize: 8, Dynamic: &DynamicBatching{MaxQueueDelay: 50 * time.Millisecond},
		Instances: []backend.Instance{inst}, Observer: rec})
	var chans []<-chan result
	for i := range 4 {
		chans = append(chans, goDo(t.Context(), s, decoupledRequest(func([]tensor.Tensor) error { return nil }, float32(i))))
	}
	go func() {
		for range 4 {
			inst.step <- struct{}{}
		}
	}()
	for _, ch := range chans {
		if r := get(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if inst.peak != 1 {
		t.Errorf("%d executions overlapped, want 1", inst.peak)
	}
	for _, b := range rec.batches() {
		if b != [2]int{1, 1} {
			t.Errorf("execution %v, want batch 1 of 1 request", b)
		}
	}
}

// TestDecoupledCancelStopsExecution checks that a caller that goes away
// mid-stream stops the execution, that Do returns only after it ended (Send
// is never called after Do returned) and that the failure is CANCELED.
func TestDecoupledCancelStopsExecution(t *testing.T) {
	inst := &decoupledInstance{step: make(chan struct{})}
	rec := &recorder{}
	s := start(t, Config{Instances: []backend.Instance{inst}, Observer: rec})
	ctx, cancel := context.WithCancel(t.Context())
	var (
		mu       sync.Mutex
		returned bool
		late     bool
	)
	first := make(chan struct{})
	ch := goDo(ctx, s, decoupledRequest(func([]tensor.Tensor) error {
		mu.Lock()
		defer mu.Unlock()
		late = late || returned
		if !late {
			select {
			case <-first:
			default:
				close(first)
			}
		}
		return nil
	}, 1, 2, 3))
	inst.step <- struct{}{}
	<-first
	cancel()
	r := get(t, ch)
	mu.Lock()
	returned = true
	mu.Unlock()
	if infer.CodeOf(r.err) != infer.CodeCancelled {
		t.Fatalf("error = %v, want CANCELLED", r.err)
	}
	inst.mu.Lock()
	running, ctxErr := inst.running, inst.ctxErr
	inst.mu.Unlock()
	if running != 0 || ctxErr == nil {
		t.Errorf("execution still running (%d) or its context not cancelled (%v)", running, ctxErr)
	}
	if late {
		t.Error("Send was called after Do returned")
	}
	if f := rec.failures(); len(f) != 1 || f[0] != FailureCanceled {
		t.Errorf("failures = %v, want [CANCELED]", f)
	}
}

// TestDecoupledSendErrorEnds checks that an error from Send (the client
// went away) ends the execution and is returned.
func TestDecoupledSendErrorEnds(t *testing.T) {
	inst := &decoupledInstance{}
	s := start(t, Config{Instances: []backend.Instance{inst}})
	n := 0
	_, err := s.Do(t.Context(), decoupledRequest(func([]tensor.Tensor) error {
		n++
		return infer.Errorf(infer.CodeCancelled, "client gone")
	}, 1, 2, 3))
	mustContain(t, err, "client gone")
	if n != 1 {
		t.Errorf("Send called %d times, want 1", n)
	}
}

// TestDecoupledNeedsDecoupledInstance checks the error for an instance
// that cannot serve decoupled requests.
func TestDecoupledNeedsDecoupledInstance(t *testing.T) {
	s := start(t, Config{Instances: []backend.Instance{&fakeInstance{}}})
	_, err := s.Do(t.Context(), decoupledRequest(func([]tensor.Tensor) error { return nil }, 1))
	mustContain(t, err, "mlp", "cannot serve a decoupled request")
}

// TestDecoupledCloseCancelsRunning checks that a Close that runs out of
// time cancels a running decoupled execution (its Do returns) and that a
// queued one is answered UNAVAILABLE.
func TestDecoupledCloseCancelsRunning(t *testing.T) {
	checkNoLeaks(t)
	inst := &decoupledInstance{step: make(chan struct{})}
	s, err := New(Config{Model: "mlp", Instances: []backend.Instance{inst}})
	if err != nil {
		t.Fatal(err)
	}
	running := goDo(t.Context(), s, decoupledRequest(func([]tensor.Tensor) error { return nil }, 1))
	waitFor(t, "the first execution", func() bool {
		inst.mu.Lock()
		defer inst.mu.Unlock()
		return inst.running == 1
	})
	queued := goDo(t.Context(), s, decoupledRequest(func([]tensor.Tensor) error { return nil }, 2))
	waitFor(t, "the second request to queue", func() bool { return s.Pending() == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err == nil {
		t.Error("Close returned no error although an execution was still running")
	}
	if r := get(t, queued); infer.CodeOf(r.err) != infer.CodeUnavailable {
		t.Errorf("queued request: %v, want UNAVAILABLE", r.err)
	}
	if r := get(t, running); infer.CodeOf(r.err) != infer.CodeUnavailable {
		t.Errorf("running request: %v, want UNAVAILABLE (unloaded)", r.err)
	}
}
