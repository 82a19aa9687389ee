package scheduler

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

// fakeInstance is a backend.Instance for tests. By default it answers
// output "y" with input "x" (FP32) doubled and output "t" with a copy of
// input "s"; fn replaces that. With gate set, every Execute first takes a
// token from gate (or returns when its context ends).
type fakeInstance struct {
	gate chan struct{}
	fn   func(inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error)
	load *meter // shared across instances; may be nil

	mu         sync.Mutex
	calls      int
	running    int
	overlapped bool // Execute ran twice at once on this instance
	closed     int
	closedBusy bool // Close came while Execute ran, or after another Close
	lastInputs []tensor.Tensor
}

// meter counts executions running at once across instances.
type meter struct {
	mu      sync.Mutex
	running int
	peak    int
}

func (m *meter) add(d int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running += d
	m.peak = max(m.peak, m.running)
}

func (m *meter) now() (running, peak int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running, m.peak
}

var _ backend.Instance = (*fakeInstance)(nil)

func (f *fakeInstance) Execute(ctx context.Context, inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error) {
	f.mu.Lock()
	f.calls++
	f.running++
	if f.running > 1 {
		f.overlapped = true
	}
	f.lastInputs = inputs
	f.mu.Unlock()
	f.load.add(1)
	defer func() {
		f.load.add(-1)
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.fn != nil {
		return f.fn(inputs, outputs)
	}
	return respond(inputs, outputs)
}

func (f *fakeInstance) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running > 0 || f.closed > 0 {
		f.closedBusy = true
	}
	f.closed++
	return nil
}

func (f *fakeInstance) stats() (calls, closed int, overlapped, closedBusy bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.closed, f.overlapped, f.closedBusy
}

// respond is the fake model: y = 2x, t = s.
func respond(inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error) {
	find := func(name string) (tensor.Tensor, error) {
		i := slices.IndexFunc(inputs, func(t tensor.Tensor) bool { return t.Name == name })
		if i < 0 {
			return tensor.Tensor{}, fmt.Errorf("fake model needs input %q", name)
		}
		return inputs[i], nil
	}
	outs := make([]tensor.Tensor, 0, len(outputs))
	for _, name := range outputs {
		switch name {
		case "y":
			x, err := find("x")
			if err != nil {
				return nil, err
			}
			vals := floats(x)
			for i := range vals {
				vals[i] *= 2
			}
			outs = append(outs, f32("y", x.Shape, vals...))
		case "t":
			s, err := find("s")
			if err != nil {
				return nil, err
			}
			outs = append(outs, tensor.Tensor{Name: "t", DataType: s.DataType, Shape: slices.Clone(s.Shape), Data: slices.Clone(s.Data)})
		default:
			return nil, fmt.Errorf("fake model has no output %q", name)
		}
	}
	return outs, nil
}

func f32(name string, shape []int64, vals ...float32) tensor.Tensor {
	data := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
	}
	return tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: slices.Clone(shape), Data: data}
}

func floats(t tensor.Tensor) []float32 {
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

func strs(name string, vals ...string) tensor.Tensor {
	elems := make([][]byte, len(vals))
	for i, v := range vals {
		elems[i] = []byte(v)
	}
	return tensor.Tensor{Name: name, DataType: tensor.Bytes, Shape: []int64{int64(len(vals))}, Data: tensor.EncodeBytes(elems)}
}

// rowsRequest is a request of n rows of x ([n,2], values from base up)
// asking for y.
func rowsRequest(n int, base float32) *Request {
	vals := make([]float32, 2*n)
	for i := range vals {
		vals[i] = base + float32(i)
	}
	return &Request{Inputs: []tensor.Tensor{f32("x", []int64{int64(n), 2}, vals...)}, Outputs: []string{"y"}}
}

// recorder is a test Observer.
type recorder struct {
	mu      sync.Mutex
	reqs    []RequestStats
	execs   []ExecutionStats
	pending []int
}

func (r *recorder) RequestDone(s RequestStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, s)
}

func (r *recorder) ExecutionDone(e ExecutionStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execs = append(r.execs, e)
}

func (r *recorder) PendingChanged(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, n)
}

// batches returns (batch size, requests) of every execution so far.
func (r *recorder) batches() [][2]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][2]int
	for _, e := range r.execs {
		out = append(out, [2]int{e.BatchSize, e.Requests})
	}
	return out
}

func (r *recorder) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.reqs {
		if !s.Success {
			out = append(out, s.FailureReason)
		}
	}
	return out
}

// start makes a Scheduler that is closed, and checked for leaked
// goroutines, when the test ends.
func start(t testing.TB, cfg Config) *Scheduler {
	t.Helper()
	checkNoLeaks(t)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Model == "" {
		cfg.Model = "mlp"
		cfg.Version = 1
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		// Free any instance still waiting at its gate.
		for _, inst := range cfg.Instances {
			if f, ok := inst.(*fakeInstance); ok && f.gate != nil {
				drain(f.gate)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// drain closes gate unless it is closed already.
func drain(gate chan struct{}) {
	defer func() { _ = recover() }()
	close(gate)
}

// checkNoLeaks fails the test if goroutines started during it outlive it.
func checkNoLeaks(t testing.TB) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines leaked (%d before):\n%s", runtime.NumGoroutine()-before, before, buf)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// result is what one asynchronous Do returned.
type result struct {
	outs []tensor.Tensor
	err  error
	at   time.Time
}

// goDo runs Do in a goroutine; the channel gets its result.
func goDo(ctx context.Context, s *Scheduler, r *Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		outs, err := s.Do(ctx, r)
		ch <- result{outs, err, time.Now()}
	}()
	return ch
}

func get(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Do did not return")
		return result{}
	}
}

// mustContain fails unless err is non-nil and its message has every part.
func mustContain(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("error = nil, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
