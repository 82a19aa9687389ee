package exec_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/cuda/exec"
	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/internal/cpusim"
	"github.com/helixflow/helixflow/workers/backend/cuda/kernels"
	"github.com/helixflow/helixflow/workers/backend/cuda/lower"
	"github.com/helixflow/helixflow/workers/backend/onnxruntime"
	"github.com/helixflow/helixflow/workers/tensor"
)

var ortOnce struct {
	sync.Once
	b   *onnxruntime.Backend
	err error
}

// reference returns ONNX Runtime (CPU), the reference the emulated device
// is checked against. Without the library the test is skipped, except in
// CI, where it fails.
func reference(t *testing.T) *onnxruntime.Backend {
	t.Helper()
	ortOnce.Do(func() {
		ortOnce.b, ortOnce.err = onnxruntime.New(onnxruntime.Options{IntraOpThreads: 1, InterOpThreads: 1})
	})
	if ortOnce.err != nil {
		testdeps.Missing(t, "onnxruntime unavailable (make deps): %v", ortOnce.err)
	}
	return ortOnce.b
}

func simDevice(t *testing.T) *cpusim.Device {
	t.Helper()
	d, err := cpusim.New(t.TempDir())
	if err != nil {
		testdeps.Missing(t, "the CPU emulation needs g++: %v", err)
	}
	return d
}

// randomInputs makes a batch of inputs for the model's IO: normal floats,
// token ids below vocab, small integers.
func randomInputs(r *rand.Rand, ios []graph.IO, batch int64, vocab int64) []tensor.Tensor {
	var out []tensor.Tensor
	for _, io := range ios {
		shape := append([]int64{}, io.Shape...)
		if shape[0] < 0 {
			shape[0] = batch
		}
		n := graph.Numel(shape)
		var t *graph.Tensor
		switch io.DType {
		case graph.Float:
			v := make([]float64, n)
			for i := range v {
				v[i] = r.NormFloat64()
			}
			t = graph.NewFloats(graph.Float, shape, v)
		default:
			v := make([]int64, n)
			for i := range v {
				v[i] = r.Int64N(vocab)
			}
			t = graph.NewInts(io.DType, shape, v)
		}
		out = append(out, tensor.Tensor{Name: io.Name, DataType: io.DType.DataType(), Shape: shape, Data: t.Data})
	}
	return out
}

// relErr is max|got-want| / max|want|: the error relative to the tensor's
// scale (elementwise relative error is meaningless for values near zero).
func relErr(dt graph.DType, got, want []byte, shape []int64) float64 {
	g := (&graph.Tensor{DType: dt, Shape: shape, Data: got}).Floats()
	w := (&graph.Tensor{DType: dt, Shape: shape, Data: want}).Floats()
	var diff, scale float64
	for i := range w {
		diff = math.Max(diff, math.Abs(g[i]-w[i]))
		scale = math.Max(scale, math.Abs(w[i]))
		if math.IsNaN(g[i]) {
			return math.Inf(1)
		}
	}
	if scale == 0 {
		return diff
	}
	return diff / scale
}

// TestProgramsMatchOnnxRuntime lowers each test network, runs it on the
// CPU emulation of the device (the generated kernels compiled with g++,
// GEMMs by cuBLAS's definition) and compares every output with ONNX
// Runtime at several batch sizes and precisions.
func TestProgramsMatchOnnxRuntime(t *testing.T) {
	ref := reference(t)
	tests := []struct {
		model     string
		precision lower.Precision
		tol       float64
		vocab     int64
	}{
		{"mlp_tiny", lower.FP32, 1e-5, 0},
		{"mlp_tiny", lower.FP16, 1e-2, 0},
		{"mlp_tiny", lower.BF16, 3e-2, 0},
		{"cnn_tiny", lower.FP32, 1e-5, 0},
		{"cnn_tiny", lower.FP16, 1e-2, 0},
		{"encoder_tiny", lower.FP32, 1e-5, 50},
		{"encoder_tiny_gelu", lower.FP32, 1e-5, 50},
		{"encoder_tiny_gelu", lower.FP16, 1e-2, 50},
		{"simple_int", lower.FP32, 0, 1000},
		{"ops_tiny", lower.FP32, 1e-5, 10},
		{"ops_tiny", lower.FP16, 1e-2, 10},
	}
	// Lower every network first and compile the union of their kernels
	// once (kernels are named by their text, so the networks share them).
	const maxBatch = 5
	lowered := make([]*lower.Model, len(tests))
	graphs := make([]*graph.Graph, len(tests))
	var all []kernels.Kernel
	for i, tt := range tests {
		g, err := graph.Load(filepath.Join("..", "testdata", tt.model+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Fold(); err != nil {
			t.Fatal(err)
		}
		m, err := lower.Compile(g, lower.Options{Precision: tt.precision, WorkspaceBytes: 4 << 10}, maxBatch)
		if err != nil {
			t.Fatalf("%s/%s: %v", tt.model, tt.precision, err)
		}
		graphs[i], lowered[i] = g, m
		all = append(all, m.KernelList()...)
	}
	dev := simDevice(t)
	mod, err := dev.Compile(kernels.Module(all), cpusim.KernelNames(all))
	if err != nil {
		t.Fatal(err)
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.model, tt.precision), func(t *testing.T) {
			path := filepath.Join("..", "testdata", tt.model+".onnx")
			g, m := graphs[i], lowered[i]
			w, err := exec.UploadWeights(dev, m)
			if err != nil {
				t.Fatal(err)
			}
			run, err := exec.NewRunner(dev, m, mod, w, exec.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := run.Close(); err != nil {
					t.Error(err)
				}
				if err := w.Free(); err != nil {
					t.Error(err)
				}
			})
			inst, err := ref.NewInstance(context.Background(), backend.InstanceSpec{ModelName: tt.model, ModelPath: path, Device: "cpu"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = inst.Close() })

			r := rand.New(rand.NewPCG(7, uint64(len(tt.model))))
			for _, batch := range []int64{1, 3, maxBatch} {
				inputs := randomInputs(r, g.Inputs, batch, tt.vocab)
				want, err := inst.Execute(context.Background(), inputs, nil)
				if err != nil {
					t.Fatal(err)
				}
				raw := make([][]byte, len(inputs))
				for i, in := range inputs {
					raw[i] = in.Data
				}
				got, err := run.Run(context.Background(), batch, raw)
				if err != nil {
					t.Fatalf("batch %d: %v", batch, err)
				}
				for i, o := range g.Outputs {
					e := relErr(o.DType, got[i], want[i].Data, want[i].Shape)
					if e > tt.tol || (tt.tol == 0 && e != 0) {
						t.Errorf("batch %d: output %s differs from ONNX Runtime by %.2e of its scale (tolerance %.0e)", batch, o.Name, e, tt.tol)
					} else {
						t.Logf("batch %d: output %s within %.1e", batch, o.Name, e)
					}
				}
			}
		})
	}
}

func TestToCublasSwapsOperands(t *testing.T) {
	g := &lower.Gemm{M: 2, N: 3, K: 4, TransA: true, LDA: 2, LDB: 3, LDC: 3, StrideA: 8, StrideB: 0, StrideC: 6, Batch: 5, Alpha: 1}
	c, err := exec.ToCublas(g, 100, 200, 300)
	if err != nil {
		t.Fatal(err)
	}
	want := exec.CublasGemm{TransA: false, TransB: true, M: 3, N: 2, K: 4, A: 200, LDA: 3, StrideA: 0,
		B: 100, LDB: 2, StrideB: 8, C: 300, LDC: 3, StrideC: 6, Batch: 5, Alpha: 1}
	if c != want {
		t.Errorf("ToCublas = %+v, want %+v", c, want)
	}
	g.M = 1 << 32
	if _, err := exec.ToCublas(g, 1, 2, 3); err == nil {
		t.Error("a dimension over cuBLAS's int was accepted")
	}
}

func TestPackParams(t *testing.T) {
	args := []lower.Arg{
		{Kind: 0, Ref: lower.Ref{Space: lower.Arena, ID: 1, Offset: 8}},
		{Kind: 1, I: -2},
		{Kind: 2, F: 1.5},
		{Kind: 3, Dims: [6]int64{1, 2, 3}},
	}
	p := exec.PackParams(args, func(r lower.Ref) exec.Ptr { return exec.Ptr(1000*r.ID) + exec.Ptr(r.Offset) })
	if binary.LittleEndian.Uint64(p[0]) != 1008 || int64(binary.LittleEndian.Uint64(p[1])) != -2 ||
		math.Float32frombits(binary.LittleEndian.Uint32(p[2])) != 1.5 || len(p[3]) != 48 || binary.LittleEndian.Uint64(p[3][16:]) != 3 {
		t.Errorf("packed %v", p)
	}
}
