package cuda

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/cuda/driver"
	"github.com/helixflow/helixflow/workers/backend/cuda/lower"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/models"
	"github.com/helixflow/helixflow/workers/tensor"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// hasCUDA reports whether this machine has the CUDA libraries; the tests
// here are about machines that do not.
func hasCUDA() bool {
	_, err := driver.Load(driver.Config{SearchDirs: driver.SearchDirsFromEnv(os.Getenv(LibraryPathEnv))})
	return err == nil
}

func TestInspectNeedsNoGPU(t *testing.T) {
	b := New(Options{Logger: quiet()})
	in, out, err := b.Inspect(context.Background(), filepath.Join("testdata", "encoder_tiny.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0].Name != "input_ids" || in[0].DataType != tensor.Int64 || !slices.Equal(in[0].Shape, []int64{-1, 8}) {
		t.Errorf("inputs %+v", in)
	}
	if len(out) != 2 || out[0].Name != "embedding" || out[1].Name != "logits" || out[1].DataType != tensor.FP32 {
		t.Errorf("outputs %+v", out)
	}
	_, _, err = b.Inspect(context.Background(), filepath.Join("testdata", "unsupported.onnx"))
	if !errors.Is(err, backend.ErrUnsupported) || !strings.Contains(err.Error(), "Floor") || !strings.Contains(err.Error(), "HardSwish") {
		t.Errorf("Inspect(unsupported) = %v, want ErrUnsupported naming Floor and HardSwish", err)
	}
}

func TestParseParams(t *testing.T) {
	tests := []struct {
		p        map[string]string
		maxBatch int64
		want     params
		err      string
	}{
		{map[string]string{}, 8, params{precision: lower.FP32}, ""},
		{map[string]string{ParamPrecision: "fp16", ParamGraphBatchSizes: "1, 8"}, 8, params{precision: lower.FP16, graphs: []int64{1, 8}}, ""},
		{map[string]string{ParamGraphBatchSizes: "1"}, 0, params{precision: lower.FP32, graphs: []int64{0}}, ""},
		{map[string]string{ParamPrecision: "int8"}, 8, params{}, "parameter precision"},
		{map[string]string{ParamGraphBatchSizes: "16"}, 8, params{}, "parameter cuda_graph_batch_sizes"},
		{map[string]string{ParamGraphBatchSizes: "x"}, 8, params{}, "parameter cuda_graph_batch_sizes"},
	}
	for _, tt := range tests {
		got, err := parseParams(tt.p, tt.maxBatch)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseParams(%v) = %v, want error %q", tt.p, err, tt.err)
			}
			continue
		}
		if err != nil || got.precision != tt.want.precision || !slices.Equal(got.graphs, tt.want.graphs) {
			t.Errorf("parseParams(%v) = %+v, %v; want %+v", tt.p, got, err, tt.want)
		}
	}
}

func TestNewInstanceRefusesTheCPU(t *testing.T) {
	b := New(Options{Logger: quiet()})
	_, err := b.NewInstance(context.Background(), backend.InstanceSpec{ModelName: "m", ModelPath: filepath.Join("testdata", "mlp_tiny.onnx"), Device: "cpu"})
	if !errors.Is(err, backend.ErrUnsupported) || !strings.Contains(err.Error(), "KIND_GPU") {
		t.Errorf("NewInstance on the cpu = %v", err)
	}
}

// TestModelUnavailableWithoutCUDA serves a repository with a CPU model and
// a cuda model on a machine without the CUDA libraries: the CPU model
// serves, the cuda model is UNAVAILABLE with the missing library named.
func TestModelUnavailableWithoutCUDA(t *testing.T) {
	if hasCUDA() {
		t.Skip("this machine has the CUDA libraries")
	}
	repo := t.TempDir()
	write := func(name, config, model string) {
		dir := filepath.Join(repo, name, "1")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join("testdata", model+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, name, "config.pbtxt"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("gpu_mlp", "backend: \"cuda\"\nmax_batch_size: 8\ninstance_group [ { kind: KIND_GPU gpus: [ 0 ] } ]\n", "mlp_tiny")
	write("gpu_unsupported", "backend: \"cuda\"\nmax_batch_size: 8\n", "unsupported")
	libDir := t.TempDir()
	mgr, err := models.New(models.Config{
		Repository:  repo,
		ControlMode: models.ModeNone,
		Backends:    map[string]backend.Backend{Name: New(Options{LibraryDirs: []string{libDir}, Logger: quiet()})},
		Logger:      quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	index, err := mgr.RepositoryIndex(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]infer.IndexEntry{}
	for _, e := range index {
		reasons[e.Name] = e
	}
	mlp := reasons["gpu_mlp"]
	t.Logf("gpu_mlp: %s: %s", mlp.State, mlp.Reason)
	if mlp.State != infer.StateUnavailable {
		t.Fatalf("gpu_mlp is %s, want UNAVAILABLE", mlp.State)
	}
	for _, want := range []string{"CUDA is not available", "libcuda.so.1", filepath.Join(libDir, "libcuda.so.1"), LibraryPathEnv} {
		if !strings.Contains(mlp.Reason, want) {
			t.Errorf("reason %q does not mention %q", mlp.Reason, want)
		}
	}
	if u := reasons["gpu_unsupported"]; u.State != infer.StateUnavailable || !strings.Contains(u.Reason, "Floor") {
		t.Errorf("gpu_unsupported: %s %q, want UNAVAILABLE naming Floor", u.State, u.Reason)
	}
	if ready, _ := mgr.ModelReady(context.Background(), "gpu_mlp", ""); ready {
		t.Error("gpu_mlp is ready")
	}
}
