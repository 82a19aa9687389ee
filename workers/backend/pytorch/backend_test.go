package pytorch

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

// These tests run the real libtorch through the shim `make deps` builds
// (.deps/pytorch/libhelix_torch.so); without it they are skipped, except
// under CI=true, where they fail.

func testBackend(tb testing.TB) *Backend {
	tb.Helper()
	path, err := FindLibrary()
	if err != nil {
		testdeps.Missing(tb, "libtorch shim unavailable (make deps): %v", err)
	}
	b, err := New(Options{LibraryPath: path, IntraOpThreads: 1})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := b.Version(); err != nil {
		tb.Fatal(err)
	}
	return b
}

func model(name string) string { return filepath.Join("testdata", name+".pt") }

func io(name string, dt tensor.DataType, shape ...int64) backend.IO {
	return backend.IO{Name: name, DataType: dt, Shape: shape}
}

func newTestInstance(tb testing.TB, b *Backend, name string, inputs, outputs []backend.IO) backend.Instance {
	tb.Helper()
	spec := backend.InstanceSpec{ModelName: name, ModelVersion: 1, ModelPath: model(name), Inputs: inputs, Outputs: outputs, Device: "cpu"}
	if err := b.CheckDeclared(context.Background(), spec.ModelPath, inputs, outputs); err != nil {
		tb.Fatal(err)
	}
	inst, err := b.NewInstance(context.Background(), spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := inst.Close(); err != nil {
			tb.Error(err)
		}
	})
	return inst
}

// encode writes float values as dt's little-endian bytes.
func encode(tb testing.TB, dt tensor.DataType, values ...float64) []byte {
	tb.Helper()
	size := dt.ElementSize()
	out := make([]byte, len(values)*size)
	for i, v := range values {
		b := out[i*size:]
		switch dt {
		case tensor.Bool:
			if v != 0 {
				b[0] = 1
			}
		case tensor.Uint8:
			b[0] = uint8(v)
		case tensor.Int8:
			b[0] = uint8(int8(v))
		case tensor.Int16:
			binary.LittleEndian.PutUint16(b, uint16(int16(v)))
		case tensor.Int32:
			binary.LittleEndian.PutUint32(b, uint32(int32(v)))
		case tensor.Int64:
			binary.LittleEndian.PutUint64(b, uint64(int64(v)))
		case tensor.FP16:
			h, _ := tensor.Float64ToFP16(v)
			binary.LittleEndian.PutUint16(b, h)
		case tensor.BF16:
			h, _ := tensor.Float64ToBF16(v)
			binary.LittleEndian.PutUint16(b, h)
		case tensor.FP32:
			binary.LittleEndian.PutUint32(b, math.Float32bits(float32(v)))
		case tensor.FP64:
			binary.LittleEndian.PutUint64(b, math.Float64bits(v))
		default:
			tb.Fatalf("no encoding for %s", dt)
		}
	}
	return out
}

func TestEveryDatatype(t *testing.T) {
	b := testBackend(t)
	for _, dt := range DataTypes() {
		t.Run(string(dt), func(t *testing.T) {
			inst := newTestInstance(t, b, "plus_one", []backend.IO{io("x", dt, -1, 3)}, []backend.IO{io("y", dt, -1, 3)})
			in, want := []float64{0, 1, 2, 3, 4, 5}, []float64{1, 2, 3, 4, 5, 6}
			if dt == tensor.Bool {
				in, want = []float64{1, 0, 1, 0, 0, 1}, []float64{0, 1, 0, 1, 1, 0}
			}
			for _, rows := range []int64{2, 1} { // a second batch size reuses the instance
				out, err := inst.Execute(context.Background(),
					[]tensor.Tensor{{Name: "x", DataType: dt, Shape: []int64{rows, 3}, Data: encode(t, dt, in[:rows*3]...)}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				got := out[0]
				if got.Name != "y" || got.DataType != dt || !slices.Equal(got.Shape, []int64{rows, 3}) {
					t.Fatalf("output %s %s %v, want y %s [%d 3]", got.Name, got.DataType, got.Shape, dt, rows)
				}
				if w := encode(t, dt, want[:rows*3]...); !slices.Equal(got.Data, w) {
					t.Errorf("data % x, want % x", got.Data, w)
				}
			}
		})
	}
}

func TestIndexedNamesAndOutputSelection(t *testing.T) {
	b := testBackend(t)
	f := tensor.FP32
	inst := newTestInstance(t, b, "add_sub",
		[]backend.IO{io("INPUT__1", f, -1, 2), io("INPUT__0", f, -1, 2)},
		[]backend.IO{io("OUTPUT__1", f, -1, 2), io("OUTPUT__0", f, -1, 2)})
	inputs := []tensor.Tensor{
		{Name: "INPUT__0", DataType: f, Shape: []int64{1, 2}, Data: encode(t, f, 10, 20)},
		{Name: "INPUT__1", DataType: f, Shape: []int64{1, 2}, Data: encode(t, f, 1, 2)},
	}
	out, err := inst.Execute(context.Background(), inputs, []string{"OUTPUT__0", "OUTPUT__1"})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Name != "OUTPUT__0" || !slices.Equal(out[0].Data, encode(t, f, 11, 22)) {
		t.Errorf("OUTPUT__0 = %s % x, want a + b", out[0].Name, out[0].Data)
	}
	if out[1].Name != "OUTPUT__1" || !slices.Equal(out[1].Data, encode(t, f, 9, 18)) {
		t.Errorf("OUTPUT__1 = %s % x, want a - b", out[1].Name, out[1].Data)
	}
	out, err = inst.Execute(context.Background(), inputs, []string{"OUTPUT__1"})
	if err != nil || len(out) != 1 || out[0].Name != "OUTPUT__1" {
		t.Fatalf("asking one output: %v, %v", out, err)
	}
}

func TestArgumentNamesAndListResult(t *testing.T) {
	b := testBackend(t)
	f := tensor.FP64
	// Declared in another order than forward(x, factor).
	inst := newTestInstance(t, b, "scale", []backend.IO{io("factor", f, 1), io("x", f, 3)}, []backend.IO{io("y", f, 3)})
	out, err := inst.Execute(context.Background(), []tensor.Tensor{
		{Name: "x", DataType: f, Shape: []int64{3}, Data: encode(t, f, 1, 2, 3)},
		{Name: "factor", DataType: f, Shape: []int64{1}, Data: encode(t, f, 0.5)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out[0].Data, encode(t, f, 0.5, 1, 1.5)) {
		t.Errorf("y = % x, want x * factor", out[0].Data)
	}

	halves := newTestInstance(t, b, "halves", []backend.IO{io("x", tensor.Int32, -1, 4)},
		[]backend.IO{io("left", tensor.Int32, -1, 2), io("right", tensor.Int32, -1, 2)})
	out, err = halves.Execute(context.Background(), []tensor.Tensor{
		{Name: "x", DataType: tensor.Int32, Shape: []int64{1, 4}, Data: encode(t, tensor.Int32, 1, 2, 3, 4)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out[0].Data, encode(t, tensor.Int32, 1, 2)) || !slices.Equal(out[1].Data, encode(t, tensor.Int32, 3, 4)) {
		t.Errorf("halves = % x, % x", out[0].Data, out[1].Data)
	}
}

func TestBadModels(t *testing.T) {
	b := testBackend(t)
	f := tensor.FP32
	x, y := []backend.IO{io("x", f, -1, 3)}, []backend.IO{io("y", f, -1, 3)}
	tests := []struct {
		name            string
		path            string
		inputs, outputs []backend.IO
		want            string
		is              error
	}{
		{"missing file", "testdata/absent.pt", x, y, "testdata/absent.pt: no such file", fs.ErrNotExist},
		{"directory", "testdata", x, y, "testdata is a directory", fs.ErrInvalid},
		{"corrupt file", model("corrupt"), x, y, "corrupt.pt", nil},
		{"wrong signature: one input for two arguments", model("add_sub"),
			[]backend.IO{io("INPUT__0", f, -1, 3)}, []backend.IO{io("OUTPUT__0", f, -1, 3)}, `argument "b" (position 1) is bound by no input`, nil},
		{"wrong signature: unknown argument name", model("plus_one"),
			[]backend.IO{io("input", f, -1, 3)}, y, `input "input" is neither an argument of forward(x: Tensor)`, nil},
		{"wrong signature: more outputs than results", model("plus_one"),
			x, []backend.IO{io("y", f, -1, 3), io("z", f, -1, 3)}, "forward() returns Tensor (1 tensor(s))", nil},
		{"dict result", model("as_dict"), x, y, "forward() returns Dict[str, Tensor]", backend.ErrUnsupported},
		{"no IO declared", model("plus_one"), nil, nil, "carries no reliable input and output names", backend.ErrUnsupported},
		{"datatype libtorch lacks", model("plus_one"), []backend.IO{io("x", tensor.Uint32, 3)}, []backend.IO{io("y", tensor.Uint32, 3)},
			"datatype UINT32", backend.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := b.CheckDeclared(context.Background(), tt.path, tt.inputs, tt.outputs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckDeclared: %v, want it to contain %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("CheckDeclared: %v is not %v", err, tt.is)
			}
			_, err = b.NewInstance(context.Background(), backend.InstanceSpec{ModelName: "m", ModelPath: tt.path, Inputs: tt.inputs, Outputs: tt.outputs})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewInstance: %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	b := testBackend(t)
	f := tensor.FP32
	inst := newTestInstance(t, b, "plus_one", []backend.IO{io("x", f, -1, 3)}, []backend.IO{io("y", f, -1, 3)})
	// Declared FP32 out of an INT32 input: forward() returns INT32.
	lying := newTestInstance(t, b, "plus_one", []backend.IO{io("x", tensor.Int32, -1, 3)}, []backend.IO{io("y", f, -1, 3)})
	good := tensor.Tensor{Name: "x", DataType: f, Shape: []int64{1, 3}, Data: encode(t, f, 1, 2, 3)}
	tests := []struct {
		name    string
		inst    backend.Instance
		inputs  []tensor.Tensor
		outputs []string
		want    string
	}{
		{"wrong datatype", inst, []tensor.Tensor{{Name: "x", DataType: tensor.FP64, Shape: []int64{1, 3}, Data: encode(t, tensor.FP64, 1, 2, 3)}}, nil,
			`input "x" has datatype FP64, the config declares FP32`},
		{"wrong shape", inst, []tensor.Tensor{{Name: "x", DataType: f, Shape: []int64{3, 1}, Data: encode(t, f, 1, 2, 3)}}, nil,
			`input "x" has shape [3 1], the config declares [-1 3]`},
		{"unknown input", inst, []tensor.Tensor{good, {Name: "z", DataType: f, Shape: []int64{1, 3}, Data: encode(t, f, 1, 2, 3)}}, nil, `has no input "z"`},
		{"input twice", inst, []tensor.Tensor{good, good}, nil, `input "x" is given twice`},
		{"missing input", inst, nil, nil, `input "x" is missing`},
		{"unknown output", inst, []tensor.Tensor{good}, []string{"w"}, `has no output "w"`},
		{"model disagrees with its config", lying, []tensor.Tensor{{Name: "x", DataType: tensor.Int32, Shape: []int64{1, 3}, Data: encode(t, tensor.Int32, 1, 2, 3)}}, nil,
			`forward() does not match the config: invalid tensor: output "y" has datatype INT32, the config declares FP32`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.inst.Execute(context.Background(), tt.inputs, tt.outputs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Execute: %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestMissingLibraryIsTheReason(t *testing.T) {
	b, err := New(Options{LibraryPath: filepath.Join(t.TempDir(), LibraryName)})
	if err != nil {
		t.Fatal(err)
	}
	err = b.CheckDeclared(context.Background(), model("plus_one"),
		[]backend.IO{io("x", tensor.FP32, 3)}, []backend.IO{io("y", tensor.FP32, 3)})
	if err == nil || !strings.Contains(err.Error(), "pytorch: libtorch is not available: the shim: stat ") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("CheckDeclared without the shim: %v", err)
	}
}

// TestGPUWithoutOne: these machines have no GPU, so a KIND_GPU instance is
// refused with what libtorch said (CUDA itself is exercised only where a
// GPU is present, which no test here can require).
func TestGPUWithoutOne(t *testing.T) {
	b := testBackend(t)
	n, err := b.GPUCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		t.Logf("libtorch sees %d GPU(s); this test checks the machine without one", n)
		return
	}
	_, err = b.NewInstance(context.Background(), backend.InstanceSpec{ModelName: "m", ModelPath: model("plus_one"), Device: "gpu", GPU: 0,
		Inputs: []backend.IO{io("x", tensor.FP32, 3)}, Outputs: []backend.IO{io("y", tensor.FP32, 3)}})
	if err == nil || !strings.Contains(err.Error(), "GPU 0: libtorch sees 0 GPU(s)") || !errors.Is(err, backend.ErrUnsupported) {
		t.Fatalf("NewInstance on GPU 0: %v", err)
	}
	t.Log(err)
}
