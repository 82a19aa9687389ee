package ensemble

import (
	"context"
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/tensor"
)

// fakeService runs the fake step models of plan_test.go: scale (Y =
// float(X)), add (SUM = A + B), small (Y = 2X). Each call takes compute
// 1 ms of Usage. before, when set, runs first (to hold or fail a step).
type fakeService struct {
	mu       sync.Mutex
	calls    []*infer.Request
	before   func(ctx context.Context, req *infer.Request) error
	failWith map[string]error
}

func (f *fakeService) Infer(ctx context.Context, req *infer.Request) (*infer.Response, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	f.mu.Unlock()
	req.Usage = infer.Usage{Rows: 1, Compute: time.Millisecond}
	if f.before != nil {
		if err := f.before(ctx, req); err != nil {
			return nil, err
		}
	}
	if err := f.failWith[req.Model]; err != nil {
		return nil, err
	}
	in := func(name string) tensor.Tensor {
		for _, t := range req.Inputs {
			if t.Name == name {
				return t
			}
		}
		panic("no input " + name)
	}
	var out tensor.Tensor
	switch req.Model {
	case "scale":
		x := in("X")
		vals := make([]float32, len(x.Data))
		for i, b := range x.Data {
			vals[i] = float32(b)
		}
		out = fp32("Y", x.Shape, vals...)
	case "add":
		a, b := floats(in("A")), floats(in("B"))
		for i := range a {
			a[i] += b[i]
		}
		out = fp32("SUM", in("A").Shape, a...)
	case "small":
		x := floats(in("X"))
		for i := range x {
			x[i] *= 2
		}
		out = fp32("Y", in("X").Shape, x...)
	}
	return &infer.Response{Model: req.Model, Outputs: []tensor.Tensor{out}}, nil
}

func fp32(name string, shape []int64, vals ...float32) tensor.Tensor {
	data := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
	}
	return tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: shape, Data: data}
}

func floats(t tensor.Tensor) []float32 {
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

// recorder is a scheduler.Observer that keeps what it is told.
type recorder struct {
	mu    sync.Mutex
	reqs  []scheduler.RequestStats
	execs []scheduler.ExecutionStats
}

func (r *recorder) RequestDone(s scheduler.RequestStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, s)
}

func (r *recorder) ExecutionDone(e scheduler.ExecutionStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execs = append(r.execs, e)
}

func (r *recorder) PendingChanged(int) {}

func image(batch int) tensor.Tensor {
	data := make([]byte, 4*batch)
	for i := range data {
		data[i] = byte(i + 1)
	}
	return tensor.Tensor{Name: "IMG", DataType: tensor.Uint8, Shape: []int64{int64(batch), 4}, Data: data}
}

func newRunner(t *testing.T, config string, svc Service, obs scheduler.Observer) *Runner {
	t.Helper()
	p, err := New(ensembleConfig(t, config), fakeLookup)
	if err != nil {
		t.Fatal(err)
	}
	return NewRunner(p, svc, obs)
}

func TestRunDiamond(t *testing.T) {
	svc := &fakeService{}
	rec := &recorder{}
	r := newRunner(t, diamond, svc, rec)
	req := &scheduler.Request{Inputs: []tensor.Tensor{image(2)}, Outputs: []string{"OUT", "F"}}
	outs, err := r.Do(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 || outs[0].Name != "OUT" || outs[1].Name != "F" {
		t.Fatalf("outputs %v, want OUT then F", outs)
	}
	want := []float32{2, 4, 6, 8, 10, 12, 14, 16}
	if got := floats(outs[0]); !slices.Equal(got, want) || !slices.Equal(outs[0].Shape, []int64{2, 4}) {
		t.Errorf("OUT = %v %v, want %v [2 4]", got, outs[0].Shape, want)
	}
	// The steps saw their own tensor names, and asked for their outputs.
	if len(svc.calls) != 2 || svc.calls[1].Model != "add" || svc.calls[1].Inputs[0].Name != "A" || svc.calls[1].Outputs[0].Name != "SUM" {
		t.Errorf("step calls: %+v", svc.calls)
	}
	if req.Usage.Rows != 2 || req.Usage.Compute != 2*time.Millisecond {
		t.Errorf("usage %+v, want 2 rows and 2 ms (summed over steps)", req.Usage)
	}
	if len(rec.reqs) != 1 || !rec.reqs[0].Success || rec.reqs[0].BatchSize != 2 || len(rec.execs) != 1 {
		t.Errorf("stats: requests %+v executions %+v", rec.reqs, rec.execs)
	}

	// Asking only for F runs only the step that makes it.
	svc.calls = nil
	if _, err := r.Do(t.Context(), &scheduler.Request{Inputs: []tensor.Tensor{image(1)}, Outputs: []string{"F"}}); err != nil {
		t.Fatal(err)
	}
	if len(svc.calls) != 1 || svc.calls[0].Model != "scale" {
		t.Errorf("asking for F ran %d steps", len(svc.calls))
	}
}

// TestIndependentStepsRunInParallel: two steps that read only the
// ensemble's input run at the same time (each waits for the other to
// start), and the step after them runs once both are done.
func TestIndependentStepsRunInParallel(t *testing.T) {
	const config = `name: "ens" platform: "ensemble" max_batch_size: 2
input [{ name: "IN" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [4] }]
ensemble_scheduling { step [
  { model_name: "add" model_version: -1 input_map [{ key: "A" value: "L" }, { key: "B" value: "R" }] output_map { key: "SUM" value: "OUT" } },
  { model_name: "small" model_version: -1 input_map { key: "X" value: "IN" } output_map { key: "Y" value: "L" } },
  { model_name: "small" model_version: 1 input_map { key: "X" value: "IN" } output_map { key: "Y" value: "R" } }
] }`
	var started sync.WaitGroup
	started.Add(2)
	svc := &fakeService{before: func(ctx context.Context, req *infer.Request) error {
		if req.Model != "small" {
			return nil
		}
		started.Done()
		done := make(chan struct{})
		go func() { started.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-time.After(10 * time.Second):
			return infer.Errorf(infer.CodeInternal, "the other step never started")
		}
	}}
	r := newRunner(t, config, svc, nil)
	outs, err := r.Do(t.Context(), &scheduler.Request{Inputs: []tensor.Tensor{fp32("IN", []int64{1, 4}, 1, 2, 3, 4)}, Outputs: []string{"OUT"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := floats(outs[0]); !slices.Equal(got, []float32{4, 8, 12, 16}) {
		t.Errorf("OUT = %v", got)
	}
	if svc.calls[2].Model != "add" {
		t.Errorf("the last call was %q, want add", svc.calls[2].Model)
	}
	if v := []string{svc.calls[0].Version, svc.calls[1].Version}; !slices.Contains(v, "1") || !slices.Contains(v, "") {
		t.Errorf("step versions %q, want latest (\"\") and \"1\"", v)
	}
}

// TestStepErrorNamesTheStep: a failing step fails the request with the
// step's code and a message naming the ensemble, step index and model;
// the steps after it never run; the ensemble's statistics count a failure.
func TestStepErrorNamesTheStep(t *testing.T) {
	svc := &fakeService{failWith: map[string]error{
		"add": infer.Errorf(infer.CodeInvalidArgument, "unexpected shape for input 'A' for model 'add'"),
	}}
	rec := &recorder{}
	r := newRunner(t, diamond, svc, rec)
	req := &scheduler.Request{Inputs: []tensor.Tensor{image(1)}, Outputs: []string{"OUT"}}
	_, err := r.Do(t.Context(), req)
	if infer.CodeOf(err) != infer.CodeInvalidArgument || err == nil ||
		err.Error() != "ensemble 'ens' step 1 ('add'): unexpected shape for input 'A' for model 'add'" {
		t.Fatalf("err = %v (code %v)", err, infer.CodeOf(err))
	}
	if req.Usage.Rows != 0 || req.Usage.Compute != 2*time.Millisecond {
		t.Errorf("usage of a failed request %+v, want 0 rows, 2 ms", req.Usage)
	}
	if len(rec.reqs) != 1 || rec.reqs[0].Success || rec.reqs[0].FailureReason != scheduler.FailureOther || len(rec.execs) != 0 {
		t.Errorf("stats: %+v %+v", rec.reqs, rec.execs)
	}

	// A step model that is gone: NOT_FOUND naming the step.
	svc.failWith = map[string]error{"scale": infer.Errorf(infer.CodeNotFound, "Request for unknown model: 'scale' is not found")}
	_, err = r.Do(t.Context(), &scheduler.Request{Inputs: []tensor.Tensor{image(1)}, Outputs: []string{"OUT"}})
	if infer.CodeOf(err) != infer.CodeNotFound || !strings.Contains(err.Error(), "ensemble 'ens' step 0 ('scale'): Request for unknown model") {
		t.Fatalf("err = %v", err)
	}
	if n := len(svc.calls); n != 3 {
		t.Errorf("%d step calls, want 3 (the step after a failed one never runs)", n)
	}
}

// TestCancelStopsSteps: the client going away cancels the running step;
// the ensemble answers with the step's error and counts it CANCELED.
func TestCancelStopsSteps(t *testing.T) {
	svc := &fakeService{before: func(ctx context.Context, req *infer.Request) error {
		<-ctx.Done()
		return infer.Errorf(infer.CodeCancelled, "request cancelled")
	}}
	rec := &recorder{}
	r := newRunner(t, diamond, svc, rec)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err := r.Do(ctx, &scheduler.Request{Inputs: []tensor.Tensor{image(1)}, Outputs: []string{"OUT"}})
	if infer.CodeOf(err) != infer.CodeCancelled || !strings.Contains(err.Error(), "step 0 ('scale')") {
		t.Fatalf("err = %v", err)
	}
	if rec.reqs[0].FailureReason != scheduler.FailureCanceled {
		t.Errorf("failure reason %q", rec.reqs[0].FailureReason)
	}
}

// TestSequenceAndTimeoutReachSteps: a request in a sequence passes its
// sequence id and flags to each step, so step models with sequence
// batching see them; the queue timeout passes too.
func TestSequenceAndTimeoutReachSteps(t *testing.T) {
	svc := &fakeService{}
	r := newRunner(t, diamond, svc, nil)
	req := &scheduler.Request{
		Inputs: []tensor.Tensor{image(1)}, Outputs: []string{"OUT"}, Timeout: time.Second,
		Sequence: infer.Sequence{ID: infer.CorrelationID{Str: "abc"}, Start: true},
	}
	if _, err := r.Do(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	for _, c := range svc.calls {
		seq, err := infer.SequenceOf(c.Parameters)
		if err != nil || seq != req.Sequence || c.Timeout != time.Second {
			t.Errorf("step %s: sequence %+v (%v), timeout %v", c.Model, seq, err, c.Timeout)
		}
	}
}

func TestClosedRunnerIsUnavailable(t *testing.T) {
	r := newRunner(t, diamond, &fakeService{}, nil)
	if err := r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := r.Do(t.Context(), &scheduler.Request{Inputs: []tensor.Tensor{image(1)}, Outputs: []string{"OUT"}})
	if infer.CodeOf(err) != infer.CodeUnavailable {
		t.Fatalf("err = %v", err)
	}
}
