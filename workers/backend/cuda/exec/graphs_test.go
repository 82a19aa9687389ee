package exec_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/helixflow/helixflow/workers/backend/cuda/exec"
	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/internal/cpusim"
	"github.com/helixflow/helixflow/workers/backend/cuda/kernels"
	"github.com/helixflow/helixflow/workers/backend/cuda/lower"
)

// graphDevice adds to the CPU emulation what the CUDA driver has and it
// lacks: capture of enqueued work as one replayable graph, and events on
// the stream (a counter stands in for the clock).
type graphDevice struct {
	*cpusim.Device
	capturing  bool
	captured   []exec.Prepared
	captureErr error // returned by BeginCapture
	replays    int
	clock      float64
	events     int // live events
}

type simGraph struct{ steps []exec.Prepared }

type simEvent struct{ at float64 }

func (d *graphDevice) BeginCapture() error {
	if d.captureErr != nil {
		return d.captureErr
	}
	d.capturing, d.captured = true, nil
	return nil
}

func (d *graphDevice) EndCapture() (exec.Prepared, error) {
	d.capturing = false
	return &simGraph{steps: d.captured}, nil
}

func (d *graphDevice) Enqueue(p exec.Prepared) error {
	d.clock++
	switch {
	case d.capturing:
		d.captured = append(d.captured, p)
		return nil
	case isGraph(p):
		d.replays++
		for _, s := range p.(*simGraph).steps {
			if err := d.Device.Enqueue(s); err != nil {
				return err
			}
		}
		return nil
	}
	return d.Device.Enqueue(p)
}

func isGraph(p exec.Prepared) bool { _, ok := p.(*simGraph); return ok }

func (d *graphDevice) Release(p exec.Prepared) {
	if !isGraph(p) {
		d.Device.Release(p)
	}
}

func (d *graphDevice) NewEvent() (exec.Event, error) { d.events++; return &simEvent{}, nil }
func (d *graphDevice) Record(e exec.Event) error     { e.(*simEvent).at = d.clock; return nil }
func (d *graphDevice) DestroyEvent(exec.Event)       { d.events-- }
func (d *graphDevice) Elapsed(start, end exec.Event) (float64, error) {
	return end.(*simEvent).at - start.(*simEvent).at, nil
}

// lowerTiny lowers mlp_tiny (FP32) and compiles its kernels on dev.
func lowerTiny(t *testing.T, dev exec.Device) (*graph.Graph, *lower.Model, exec.Module) {
	t.Helper()
	g, err := graph.Load(filepath.Join("..", "testdata", "mlp_tiny.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Fold(); err != nil {
		t.Fatal(err)
	}
	m, err := lower.Compile(g, lower.Options{Precision: lower.FP32, WorkspaceBytes: 4 << 10}, 4)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := dev.Compile(kernels.Module(m.KernelList()), cpusim.KernelNames(m.KernelList()))
	if err != nil {
		t.Fatal(err)
	}
	return g, m, mod
}

func newRunner(t *testing.T, dev exec.Device, m *lower.Model, mod exec.Module, opts exec.Options) *exec.Runner {
	t.Helper()
	w, err := exec.UploadWeights(dev, m)
	if err != nil {
		t.Fatal(err)
	}
	r, err := exec.NewRunner(dev, m, mod, w, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		if err := w.Free(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// TestCapturedGraphsRunTheSameSteps: a batch size captured as a CUDA graph
// at load computes exactly what the step-by-step replay computes, through
// one graph launch per run; a device that cannot capture falls back to
// the steps.
func TestCapturedGraphsRunTheSameSteps(t *testing.T) {
	dev := &graphDevice{Device: simDevice(t)}
	g, m, mod := lowerTiny(t, dev)
	captured := newRunner(t, dev, m, mod, exec.Options{GraphBatches: []int64{3, 99}}) // 99: no such program, skipped
	plain := newRunner(t, dev.Device, m, mod, exec.Options{})

	in := graph.NewFloats(graph.Float, []int64{3, 16}, slices.Repeat([]float64{0.5, -1, 2, 0.25}, 12)).Data
	want, err := plain.Run(context.Background(), 3, [][]byte{in})
	if err != nil {
		t.Fatal(err)
	}
	got, err := captured.Run(context.Background(), 3, [][]byte{in})
	if err != nil {
		t.Fatal(err)
	}
	if dev.replays != 1 {
		t.Fatalf("%d graph launches for a captured batch, want 1", dev.replays)
	}
	if len(got) != len(g.Outputs) || !bytes.Equal(got[0], want[0]) {
		t.Fatal("the captured graph computed something else than the steps")
	}
	// Batch 2 was not captured: its steps run one by one.
	if _, err := captured.Run(context.Background(), 2, [][]byte{in[:2*16*4]}); err != nil || dev.replays != 1 {
		t.Fatalf("uncaptured batch: %v, %d graph launches", err, dev.replays)
	}

	// A device without graph support (ErrNotSupported from BeginCapture)
	// still runs the batch.
	noGraphs := &graphDevice{Device: dev.Device, captureErr: exec.ErrNotSupported}
	r := newRunner(t, noGraphs, m, mod, exec.Options{GraphBatches: []int64{3}})
	if got, err := r.Run(context.Background(), 3, [][]byte{in}); err != nil || !bytes.Equal(got[0], want[0]) || noGraphs.replays != 0 {
		t.Fatalf("without graph support: %v, %d graph launches", err, noGraphs.replays)
	}
	// Any other capture failure fails the load, naming the batch.
	broken := &graphDevice{Device: dev.Device, captureErr: errors.New("capture invalidated")}
	w, err := exec.UploadWeights(broken, m)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Free()
	if _, err := exec.NewRunner(broken, m, mod, w, exec.Options{GraphBatches: []int64{3}}); err == nil ||
		!errors.Is(err, broken.captureErr) {
		t.Fatalf("NewRunner with a failing capture: %v", err)
	}
}

// TestRunChecksInputs: wrong input counts and sizes are refused with the
// input named, and a cancelled context runs nothing.
func TestRunChecksInputs(t *testing.T) {
	dev := simDevice(t)
	_, m, mod := lowerTiny(t, dev)
	r := newRunner(t, dev, m, mod, exec.Options{})
	ok := make([]byte, 2*16*4)
	if _, err := r.Run(context.Background(), 2, nil); err == nil {
		t.Fatal("no inputs accepted")
	}
	if _, err := r.Run(context.Background(), 2, [][]byte{ok[:10]}); err == nil {
		t.Fatal("a short input accepted")
	}
	if _, err := r.Run(context.Background(), 9, [][]byte{ok}); err == nil {
		t.Fatal("a batch over the largest program accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Run(ctx, 2, [][]byte{ok}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}

// TestProfile: one device time per step, each named by its node and kind;
// devices without events say so.
func TestProfile(t *testing.T) {
	dev := &graphDevice{Device: simDevice(t)}
	_, m, mod := lowerTiny(t, dev)
	r := newRunner(t, dev, m, mod, exec.Options{})
	times, err := r.Profile(2)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := m.Program(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(times) != len(prog.Steps) {
		t.Fatalf("%d times for %d steps", len(times), len(prog.Steps))
	}
	gemms := 0
	for i, st := range times {
		s := prog.Steps[i]
		if st.Node != s.Node || st.Millis != 1 { // one enqueue between two events on the counter clock
			t.Errorf("step %d: %+v", i, st)
		}
		if s.Gemm != nil {
			gemms++
			if st.Kind != "gemm" || st.M != s.Gemm.M || st.N != s.Gemm.N || st.K != s.Gemm.K {
				t.Errorf("GEMM step %d: %+v", i, st)
			}
		} else if st.Kind != s.Launch.Kernel {
			t.Errorf("kernel step %d: kind %q, want %q", i, st.Kind, s.Launch.Kernel)
		}
	}
	if gemms == 0 {
		t.Error("mlp_tiny profiled without a GEMM")
	}
	if dev.events != 0 {
		t.Errorf("%d events not destroyed", dev.events)
	}
	plain := newRunner(t, dev.Device, m, mod, exec.Options{})
	if _, err := plain.Profile(2); !errors.Is(err, exec.ErrNotSupported) {
		t.Fatalf("Profile on a device without events: %v", err)
	}
}
