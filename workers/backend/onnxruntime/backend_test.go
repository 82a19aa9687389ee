package onnxruntime

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

func TestFindLibrary(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("env", func(t *testing.T) {
		t.Setenv(LibraryEnv, lib)
		got, err := FindLibrary()
		if err != nil || got != lib {
			t.Fatalf("FindLibrary() = %q, %v; want %q", got, err, lib)
		}
	})
	t.Run("env names a missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.so")
		t.Setenv(LibraryEnv, missing)
		_, err := FindLibrary()
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
			t.Fatalf("FindLibrary() error = %v; want one naming %s", err, missing)
		}
	})
	t.Run("deps folder above the working directory", func(t *testing.T) {
		root := t.TempDir()
		deps := filepath.Join(root, ".deps", "onnxruntime")
		work := filepath.Join(root, "a", "b")
		for _, d := range []string{deps, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		want := filepath.Join(deps, "libonnxruntime.so")
		if err := os.WriteFile(want, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv(LibraryEnv, "")
		t.Chdir(work)
		got, err := FindLibrary()
		if err != nil {
			t.Fatal(err)
		}
		// A copy next to the test binary would win; there is none.
		if got != want {
			t.Fatalf("FindLibrary() = %q; want %q", got, want)
		}
	})
	t.Run("error names every place", func(t *testing.T) {
		t.Setenv(LibraryEnv, "")
		t.Setenv("LD_LIBRARY_PATH", dir+"/empty")
		t.Chdir(t.TempDir())
		got, err := FindLibrary()
		if err == nil {
			// A system-wide copy answers before any error can be
			// produced; it must then be outside every place emptied here.
			if strings.HasPrefix(got, dir) {
				t.Fatalf("FindLibrary() = %q from an emptied place", got)
			}
			return
		}
		for _, want := range []string{LibraryEnv, filepath.Join(dir, "empty", "libonnxruntime.so"), "/usr/lib/libonnxruntime.so", ".deps/onnxruntime/libonnxruntime.so"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %s", err, want)
			}
		}
		if !errors.Is(err, ErrLibraryNotFound) {
			t.Errorf("error %v does not wrap ErrLibraryNotFound", err)
		}
	})
}

func TestNewBadLibrary(t *testing.T) {
	testBackend(t) // the process already holds a real library
	bogus := filepath.Join(t.TempDir(), "libonnxruntime.so")
	if err := os.WriteFile(bogus, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{LibraryPath: bogus}); err == nil || !strings.Contains(err.Error(), bogus) {
		t.Fatalf("New with a second library path: error = %v; want one naming %s", err, bogus)
	}
	if _, err := New(Options{IntraOpThreads: -1}); err == nil {
		t.Fatal("New with -1 intra-op threads: no error")
	}
}

func TestInspect(t *testing.T) {
	b := testBackend(t)
	dyn16 := []int64{-1, 16}
	tests := []struct {
		model         string
		inputs, outpt []backend.IO
	}{
		{
			model: "simple",
			inputs: []backend.IO{
				{Name: "INPUT0", DataType: tensor.Int32, Shape: dyn16},
				{Name: "INPUT1", DataType: tensor.Int32, Shape: dyn16},
			},
			outpt: []backend.IO{
				{Name: "OUTPUT0", DataType: tensor.Int32, Shape: dyn16},
				{Name: "OUTPUT1", DataType: tensor.Int32, Shape: dyn16},
			},
		},
		{
			model:  "reduce_sum",
			inputs: []backend.IO{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, -1}}},
			outpt:  []backend.IO{{Name: "OUTPUT", DataType: tensor.FP32, Shape: []int64{-1}}},
		},
		{
			model:  "scalar_output",
			inputs: []backend.IO{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, 3}}},
			outpt:  []backend.IO{{Name: "SUM", DataType: tensor.FP32, Shape: []int64{}}},
		},
		{
			model:  "mlp",
			inputs: []backend.IO{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, 64}}},
			outpt:  []backend.IO{{Name: "OUTPUT", DataType: tensor.FP32, Shape: []int64{-1, 10}}},
		},
	}
	for suffix, dt := range identityTypes {
		io := []backend.IO{{Name: "INPUT", DataType: dt, Shape: []int64{-1, 3}}}
		out := []backend.IO{{Name: "OUTPUT", DataType: dt, Shape: []int64{-1, 3}}}
		tests = append(tests, struct {
			model         string
			inputs, outpt []backend.IO
		}{"identity_" + suffix, io, out})
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			ins, outs, err := b.Inspect(context.Background(), model(tc.model))
			if err != nil {
				t.Fatal(err)
			}
			if !ioEqual(ins, tc.inputs) || !ioEqual(outs, tc.outpt) {
				t.Fatalf("Inspect = %+v, %+v; want %+v, %+v", ins, outs, tc.inputs, tc.outpt)
			}
		})
	}
}

func ioEqual(a, b []backend.IO) bool {
	return slices.EqualFunc(a, b, func(x, y backend.IO) bool {
		return x.Name == y.Name && x.DataType == y.DataType && slices.Equal(x.Shape, y.Shape)
	})
}

func TestInspectErrors(t *testing.T) {
	b := testBackend(t)
	corrupt := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(corrupt, []byte("this is not a protobuf"), 0o644); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		path    string
		is      error
		message string
	}{
		{"missing file", context.Background(), "testdata/absent.onnx", fs.ErrNotExist, "testdata/absent.onnx"},
		{"directory", context.Background(), "testdata", fs.ErrInvalid, "testdata"},
		{"corrupt file", context.Background(), corrupt, nil, corrupt},
		{"FLOAT8E4M3FN input", context.Background(), model("float8_output"), backend.ErrUnsupported, `input "INPUT" has element type FLOAT8E4M3FN`},
		{"sequence output", context.Background(), model("sequence_output"), backend.ErrUnsupported, `output "OUTPUT" is a`},
		{"cancelled", cancelled, model("simple"), context.Canceled, "simple.onnx"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := b.Inspect(tc.ctx, tc.path)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not contain %q", err, tc.message)
			}
		})
	}
}

func TestNewInstanceErrors(t *testing.T) {
	b := testBackend(t)
	corrupt := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(corrupt, []byte{0x08, 0x07, 0xff, 0xff}, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		spec    backend.InstanceSpec
		is      error
		message string
	}{
		{"missing file", backend.InstanceSpec{ModelName: "m", ModelPath: "testdata/absent.onnx"}, fs.ErrNotExist, "testdata/absent.onnx"},
		{"corrupt file", backend.InstanceSpec{ModelName: "m", ModelPath: corrupt}, nil, corrupt},
		{"gpu", backend.InstanceSpec{ModelName: "m", ModelPath: model("simple"), Device: "gpu"}, backend.ErrUnsupported, `device "gpu"`},
		{
			"bad thread count",
			backend.InstanceSpec{ModelName: "m", ModelPath: model("simple"), Parameters: map[string]string{ParamIntraOpThreads: "many"}},
			nil, `intra_op_thread_count: "many"`,
		},
		{
			"negative thread count",
			backend.InstanceSpec{ModelName: "m", ModelPath: model("simple"), Parameters: map[string]string{ParamInterOpThreads: "-2"}},
			nil, `inter_op_thread_count: "-2"`,
		},
		{"scalar output", backend.InstanceSpec{ModelName: "m", ModelPath: model("scalar_output")}, backend.ErrUnsupported, `output "SUM" is a scalar`},
		{"unsupported type", backend.InstanceSpec{ModelName: "m", ModelPath: model("float8_output")}, backend.ErrUnsupported, "FLOAT8E4M3FN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := b.NewInstance(context.Background(), tc.spec)
			if err == nil {
				inst.Close()
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not contain %q", err, tc.message)
			}
		})
	}
}

func TestThreadParameters(t *testing.T) {
	inst := newTestInstance(t, "simple", map[string]string{ParamIntraOpThreads: "2", ParamInterOpThreads: "1"})
	out, err := inst.Execute(context.Background(), simpleInputs(2), []string{"OUTPUT0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := int32s(out[0].Data); got[31] != 32 {
		t.Fatalf("OUTPUT0[1][15] = %d; want 32", got[31])
	}
}

func TestIntraOpThreads(t *testing.T) {
	auto := Options{AutoThreads: true}
	tests := []struct {
		name      string
		opts      Options
		params    map[string]string
		instances int
		procs     int
		want      int
	}{
		{"ORT default", Options{}, nil, 2, 8, 0},
		{"option", Options{IntraOpThreads: 3}, nil, 1, 8, 3},
		{"option beats auto", Options{IntraOpThreads: 3, AutoThreads: true}, nil, 1, 8, 3},
		{"parameter beats option", Options{IntraOpThreads: 3}, map[string]string{ParamIntraOpThreads: "2"}, 1, 8, 2},
		{"parameter beats auto", auto, map[string]string{ParamIntraOpThreads: "2"}, 4, 8, 2},
		{"parameter 0 is ORT's default", auto, map[string]string{ParamIntraOpThreads: "0"}, 1, 8, 0},
		{"auto, one instance", auto, nil, 1, 8, 8},
		{"auto, instance count unknown", auto, nil, 0, 8, 8},
		{"auto, shared", auto, nil, 2, 8, 4},
		{"auto, rounds down", auto, nil, 3, 8, 2},
		{"auto, at least one", auto, nil, 4, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.opts.intraOpThreads(tc.params, tc.instances, tc.procs)
			if err != nil || got != tc.want {
				t.Fatalf("intraOpThreads = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestBackendLifecycle(t *testing.T) {
	shared := testBackend(t)
	b, err := New(Options{LibraryPath: shared.opts.LibraryPath})
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != "onnxruntime" {
		t.Errorf("Name() = %q", b.Name())
	}
	inst, err := b.NewInstance(context.Background(), backend.InstanceSpec{ModelName: "simple", ModelPath: model("simple")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err == nil || !strings.Contains(err.Error(), "1 instances are open") {
		t.Fatalf("Close with an open instance: error = %v", err)
	}
	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := inst.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := inst.Execute(context.Background(), simpleInputs(1), nil); err == nil {
		t.Fatal("Execute on a closed instance: no error")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Inspect(context.Background(), model("simple")); err == nil {
		t.Fatal("Inspect on a closed backend: no error")
	}
	// The shared backend still holds the environment.
	if _, _, err := shared.Inspect(context.Background(), model("simple")); err != nil {
		t.Fatalf("shared backend after another's Close: %v", err)
	}
}
