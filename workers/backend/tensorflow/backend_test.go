package tensorflow

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

// testBackend returns a Backend whose library loads; without it the test
// is skipped, except in CI, where it fails.
func testBackend(tb testing.TB) *Backend {
	tb.Helper()
	b, err := New(Options{IntraOpThreads: 1, InterOpThreads: 1})
	if err != nil {
		tb.Fatal(err)
	}
	if _, _, err := b.Library(); err != nil {
		testdeps.Missing(tb, "tensorflow unavailable (make deps): %v", err)
	}
	return b
}

func testModel(name string) string { return filepath.Join("testdata", name) }

func newTestInstance(tb testing.TB, name string, inputs, outputs []backend.IO) backend.Instance {
	tb.Helper()
	inst, err := testBackend(tb).NewInstance(context.Background(), backend.InstanceSpec{
		ModelName: name, ModelPath: testModel(name), Device: "cpu", Inputs: inputs, Outputs: outputs,
	})
	if err != nil {
		tb.Fatalf("NewInstance(%s): %v", name, err)
	}
	tb.Cleanup(func() {
		if err := inst.Close(); err != nil {
			tb.Errorf("Close(%s): %v", name, err)
		}
	})
	return inst
}

// kserveTypes are the datatypes of testdata/types, in its signature's order.
var kserveTypes = []tensor.DataType{
	tensor.BF16, tensor.Bool, tensor.Bytes, tensor.FP16, tensor.FP32, tensor.FP64, tensor.Int16,
	tensor.Int32, tensor.Int64, tensor.Int8, tensor.Uint16, tensor.Uint32, tensor.Uint64, tensor.Uint8,
}

func TestInspect(t *testing.T) {
	b := testBackend(t)
	var typesIn, typesOut []backend.IO
	for _, dt := range kserveTypes {
		typesIn = append(typesIn, backend.IO{Name: "IN_" + string(dt), DataType: dt, Shape: []int64{-1, -1}})
		typesOut = append(typesOut, backend.IO{Name: "OUT_" + string(dt), DataType: dt, Shape: []int64{-1, -1}})
	}
	tests := []struct {
		model         string
		inputs, outs  []backend.IO
		wantErrSubstr string
	}{
		{model: "types", inputs: typesIn, outs: typesOut},
		{model: "add_sub",
			inputs: []backend.IO{{Name: "a", DataType: tensor.FP32, Shape: []int64{-1, 4}}, {Name: "b", DataType: tensor.FP32, Shape: []int64{-1, 4}}},
			outs:   []backend.IO{{Name: "diff", DataType: tensor.FP32, Shape: []int64{-1, 4}}, {Name: "sum", DataType: tensor.FP32, Shape: []int64{-1, 4}}}},
		{model: "other_sig", wantErrSubstr: `no signature "serving_default" (signatures: predict)`},
		{model: "absent", wantErrSubstr: "SavedModel folder: stat testdata/absent: no such file"},
		{model: "gen.py", wantErrSubstr: "is a file; a SavedModel is a folder"},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			in, out, err := b.Inspect(context.Background(), testModel(tt.model))
			if tt.wantErrSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
					t.Fatalf("Inspect error = %v, want one containing %q", err, tt.wantErrSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(in, tt.inputs, ioEqual) || !slices.EqualFunc(out, tt.outs, ioEqual) {
				t.Errorf("Inspect = %v, %v; want %v, %v", in, out, tt.inputs, tt.outs)
			}
		})
	}
}

func ioEqual(a, b backend.IO) bool {
	return a.Name == b.Name && a.DataType == b.DataType && slices.Equal(a.Shape, b.Shape)
}

func TestInspectCorruptAndEmpty(t *testing.T) {
	b := testBackend(t)
	tests := []struct {
		name          string
		files         map[string]string
		wantErrSubstr string
	}{
		{"empty folder", nil, "saved_model.pb: no such file"},
		{"garbage", map[string]string{SavedModelFile: "\xff\xff\xff\xff not a protobuf"}, "malformed protobuf"},
		{"no meta graph", map[string]string{SavedModelFile: ""}, `no meta graph is tagged "serve" (tag sets: none)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := b.Inspect(context.Background(), dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
				t.Fatalf("Inspect error = %v, want one containing %q", err, tt.wantErrSubstr)
			}
			_, err = b.NewInstance(context.Background(), backend.InstanceSpec{ModelName: "m", ModelPath: dir})
			if err == nil {
				t.Fatal("NewInstance succeeded on a bad SavedModel")
			}
		})
	}
}

// bump is what testdata/types computes, on one element's bytes.
func bump(dt tensor.DataType, in []byte) []byte {
	switch dt {
	case tensor.Bool:
		if in[0] == 0 {
			return []byte{1}
		}
		return []byte{0}
	case tensor.FP16, tensor.BF16, tensor.FP32, tensor.FP64:
		return nil // compared against fixed values below
	}
	// Integers, little-endian: add one with carry.
	out := slices.Clone(in)
	for i := range out {
		out[i]++
		if out[i] != 0 {
			break
		}
	}
	return out
}

func TestExecuteEveryType(t *testing.T) {
	var ins, outs []backend.IO
	for _, dt := range kserveTypes {
		ins = append(ins, backend.IO{Name: "IN_" + string(dt), DataType: dt, Shape: []int64{-1, -1}})
		outs = append(outs, backend.IO{Name: "OUT_" + string(dt), DataType: dt, Shape: []int64{-1, -1}})
	}
	inst := newTestInstance(t, "types", ins, outs)
	// Two rows of two: 1 and 2 in each type (floats exact), then 3 and 255.
	floats := map[tensor.DataType][2][]byte{ // 1, 2 -> 2, 3 as bit patterns
		tensor.FP16: {{0x00, 0x3c, 0x00, 0x40}, {0x00, 0x40, 0x00, 0x42}},
		tensor.BF16: {{0x80, 0x3f, 0x00, 0x40}, {0x00, 0x40, 0x40, 0x40}},
		tensor.FP32: {binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0x3f800000), 0x40000000),
			binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0x40000000), 0x40400000)},
		tensor.FP64: {binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 0x3ff0000000000000), 0x4000000000000000),
			binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 0x4000000000000000), 0x4008000000000000)},
	}
	var inputs []tensor.Tensor
	want := map[string][]byte{}
	var names []string
	for _, dt := range kserveTypes {
		var in, out []byte
		switch {
		case dt == tensor.Bytes:
			for _, s := range []string{"a", "", "a string longer than twenty-two bytes", "\x00\xff"} {
				in = binary.LittleEndian.AppendUint32(in, uint32(len(s)))
				in = append(in, s...)
				out = binary.LittleEndian.AppendUint32(out, uint32(len(s)+1))
				out = append(out, s+"!"...)
			}
		case floats[dt][0] != nil:
			in = slices.Concat(floats[dt][0], floats[dt][0])
			out = slices.Concat(floats[dt][1], floats[dt][1])
		default:
			size := dt.ElementSize()
			for _, v := range []byte{1, 2, 3, 255} {
				e := make([]byte, size)
				e[0] = v
				if dt == tensor.Bool {
					e[0] = v & 1
				}
				in = append(in, e...)
				out = append(out, bump(dt, e)...)
			}
		}
		inputs = append(inputs, tensor.Tensor{Name: "IN_" + string(dt), DataType: dt, Shape: []int64{2, 2}, Data: in})
		want["OUT_"+string(dt)] = out
		names = append(names, "OUT_"+string(dt))
	}
	got, err := inst.Execute(context.Background(), inputs, names)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if g.Name != names[i] || !slices.Equal(g.Shape, []int64{2, 2}) || !slices.Equal(g.Data, want[g.Name]) {
			t.Errorf("output %s = %v %v % x, want shape [2 2] % x", names[i], g.Name, g.Shape, g.Data, want[names[i]])
		}
		if err := g.Validate(); err != nil {
			t.Error(err)
		}
	}
}

func TestExecuteBatchSizes(t *testing.T) {
	io := func(name string) backend.IO {
		return backend.IO{Name: name, DataType: tensor.FP32, Shape: []int64{-1, 4}}
	}
	inst := newTestInstance(t, "add_sub", []backend.IO{io("a"), io("b")}, []backend.IO{io("sum"), io("diff")})
	for _, batch := range []int{1, 3, 64, 0, 2} {
		a, b := make([]float32, 4*batch), make([]float32, 4*batch)
		for i := range a {
			a[i], b[i] = float32(i), float32(2*i)+0.5
		}
		shape := []int64{int64(batch), 4}
		got, err := inst.Execute(context.Background(), []tensor.Tensor{
			{Name: "a", DataType: tensor.FP32, Shape: shape, Data: f32Bytes(a)},
			{Name: "b", DataType: tensor.FP32, Shape: shape, Data: f32Bytes(b)},
		}, []string{"diff", "sum"})
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		wantDiff, wantSum := make([]float32, len(a)), make([]float32, len(a))
		for i := range a {
			wantDiff[i], wantSum[i] = a[i]-b[i], a[i]+b[i]
		}
		if !slices.Equal(got[0].Shape, shape) || !slices.Equal(got[0].Data, f32Bytes(wantDiff)) || !slices.Equal(got[1].Data, f32Bytes(wantSum)) {
			t.Errorf("batch %d: got %v", batch, got)
		}
	}
}

func f32Bytes(v []float32) []byte {
	out := make([]byte, 0, 4*len(v))
	for _, x := range v {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(x))
	}
	return out
}

func TestNewInstanceErrors(t *testing.T) {
	b := testBackend(t)
	fp32 := func(name string) backend.IO {
		return backend.IO{Name: name, DataType: tensor.FP32, Shape: []int64{-1, 4}}
	}
	tests := []struct {
		name          string
		spec          backend.InstanceSpec
		wantErrSubstr string
		unsupported   bool
	}{
		{"input not in signature", backend.InstanceSpec{ModelPath: testModel("add_sub"), Inputs: []backend.IO{fp32("c")}, Outputs: []backend.IO{fp32("sum")}},
			`input "c" is not in signature "serving_default"`, false},
		{"dtype differs", backend.InstanceSpec{ModelPath: testModel("add_sub"), Inputs: []backend.IO{{Name: "a", DataType: tensor.Int32}}, Outputs: []backend.IO{fp32("sum")}},
			`input "a" is INT32 in the config, DT_FLOAT in signature`, false},
		{"gpu", backend.InstanceSpec{ModelPath: testModel("add_sub"), Device: "gpu"}, "runs on the cpu only", true},
		{"bad thread count", backend.InstanceSpec{ModelPath: testModel("add_sub"), Parameters: map[string]string{ParamIntraOpThreads: "many"}},
			`parameter intra_op_thread_count = "many"`, false},
		{"no serving signature", backend.InstanceSpec{ModelPath: testModel("other_sig"), Inputs: []backend.IO{fp32("a")}},
			`no signature "serving_default" (signatures: predict)`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.ModelName = "m"
			inst, err := b.NewInstance(context.Background(), tt.spec)
			if err == nil {
				inst.Close()
				t.Fatal("NewInstance succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErrSubstr) || errors.Is(err, backend.ErrUnsupported) != tt.unsupported {
				t.Fatalf("error = %v, want one containing %q (unsupported %v)", err, tt.wantErrSubstr, tt.unsupported)
			}
		})
	}
}

func TestExecuteBadRequests(t *testing.T) {
	io := func(name string) backend.IO {
		return backend.IO{Name: name, DataType: tensor.FP32, Shape: []int64{-1, 4}}
	}
	inst := newTestInstance(t, "add_sub", []backend.IO{io("a"), io("b")}, []backend.IO{io("sum")})
	one := tensor.Tensor{Name: "a", DataType: tensor.FP32, Shape: []int64{1, 4}, Data: make([]byte, 16)}
	tests := []struct {
		name          string
		inputs        []tensor.Tensor
		outputs       []string
		wantErrSubstr string
	}{
		{"unknown input", []tensor.Tensor{{Name: "z", DataType: tensor.FP32}}, []string{"sum"}, `unknown input "z"`},
		{"wrong type", []tensor.Tensor{{Name: "a", DataType: tensor.Int32, Shape: []int64{1, 4}, Data: make([]byte, 16)}}, []string{"sum"}, `input "a" is INT32, the model takes FP32`},
		{"short data", []tensor.Tensor{{Name: "a", DataType: tensor.FP32, Shape: []int64{1, 4}, Data: make([]byte, 15)}}, []string{"sum"}, "15 bytes for shape [1 4]"},
		{"unknown output", []tensor.Tensor{one}, []string{"product"}, `unknown output "product"`},
		{"shapes disagree", []tensor.Tensor{one, {Name: "b", DataType: tensor.FP32, Shape: []int64{1, 3}, Data: make([]byte, 12)}}, []string{"sum"}, "tensorflow: run: code 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := inst.Execute(context.Background(), tt.inputs, tt.outputs)
			if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
				t.Fatalf("Execute error = %v, want one containing %q", err, tt.wantErrSubstr)
			}
		})
	}
}

func TestFindLibraryNamesWhereItLooked(t *testing.T) {
	t.Setenv(LibraryEnv, "/nonexistent/libtensorflow_cc.so.2")
	if _, err := FindLibrary(); err == nil || !strings.Contains(err.Error(), "HELIX_TENSORFLOW_LIB=/nonexistent") {
		t.Fatalf("FindLibrary error = %v", err)
	}
	t.Setenv(LibraryEnv, "")
	t.Setenv("LD_LIBRARY_PATH", "")
	t.Chdir(t.TempDir())
	// The repository's .deps/ is above the test's folder, not above a
	// temp dir: the search fails there unless the system holds a copy.
	if p, err := FindLibrary(); err == nil && !strings.HasPrefix(p, "/usr") {
		t.Fatalf("FindLibrary = %s from a temp dir", p)
	} else if err != nil && (!errors.Is(err, ErrLibraryNotFound) || !strings.Contains(err.Error(), ".deps/tensorflow/libtensorflow_cc.so.2")) {
		t.Fatalf("FindLibrary error = %v", err)
	}
}
