package models

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/tensor"
)

// recordingBackend is fakeBackend whose instances record what they
// execute and fail an execution whose INPUT0 starts with 666.
type recordingBackend struct {
	*fakeBackend
	mu   sync.Mutex
	seen [][]tensor.Tensor
}

func (b *recordingBackend) NewInstance(ctx context.Context, spec backend.InstanceSpec) (backend.Instance, error) {
	inst, err := b.fakeBackend.NewInstance(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &recordingInstance{Instance: inst, b: b}, nil
}

func (b *recordingBackend) executions() [][]tensor.Tensor {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]tensor.Tensor(nil), b.seen...)
}

type recordingInstance struct {
	backend.Instance
	b *recordingBackend
}

func (i *recordingInstance) Execute(ctx context.Context, in []tensor.Tensor, outputs []string) ([]tensor.Tensor, error) {
	i.b.mu.Lock()
	i.b.seen = append(i.b.seen, in)
	i.b.mu.Unlock()
	for _, t := range in {
		if t.Name == "INPUT0" && len(t.Data) >= 4 && binary.LittleEndian.Uint32(t.Data) == 666 {
			return nil, errors.New("the model rejects 666")
		}
	}
	return i.Instance.Execute(ctx, in, outputs)
}

func writeWarmupFile(t *testing.T, root, model, name string, data []byte) {
	t.Helper()
	dir := filepath.Join(root, model, WarmupDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWarmupRunsBeforeReady(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig+`
model_warmup [
  { name: "zeros" batch_size: 2 count: 3
    inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 4 ] zero_data: true } }
    inputs { key: "INPUT1" value { data_type: TYPE_INT32 dims: [ 4 ] random_data: true } } },
  { name: "file" batch_size: 1
    inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 4 ] input_data_file: "in0" } }
    inputs { key: "INPUT1" value { data_type: TYPE_INT32 dims: [ 4 ] zero_data: true } } }
]`, 1)
	writeWarmupFile(t, root, "simple", "in0", int32s(1, 2, 3, 4))
	be := &recordingBackend{fakeBackend: &fakeBackend{}}
	m := newManagerWith(t, root, be)

	runs := be.executions()
	// 2 instances: "zeros" 3 times each, then "file" once each.
	if len(runs) != 8 {
		t.Fatalf("%d warm-up executions, want 8", len(runs))
	}
	for i, in := range runs[:6] {
		if in[0].Name != "INPUT0" || !equalShape(in[0].Shape, 2, 4) || !bytes.Equal(in[0].Data, make([]byte, 32)) || !equalShape(in[1].Shape, 2, 4) {
			t.Fatalf("execution %d: %+v", i, in)
		}
	}
	if in := runs[6]; !equalShape(in[0].Shape, 1, 4) || !bytes.Equal(in[0].Data, int32s(1, 2, 3, 4)) {
		t.Fatalf("file sample: %+v", in)
	}
	ok, _ := m.ModelReady(context.Background(), "simple", "")
	if !ok {
		t.Fatal("model not ready after its warm-up")
	}
	// Warm-up is not inference: the statistics start at zero.
	st, err := m.ModelStatistics(context.Background(), "simple", "")
	if err != nil || st[0].InferenceCount != 0 || st[0].ExecutionCount != 0 {
		t.Fatalf("statistics after warm-up: %v, %v", st, err)
	}
}

func equalShape(s []int64, want ...int64) bool {
	if len(s) != len(want) {
		return false
	}
	for i := range s {
		if s[i] != want[i] {
			return false
		}
	}
	return true
}

func newManagerWith(t *testing.T, root string, be *recordingBackend) *Manager {
	t.Helper()
	m, err := New(Config{
		Repository: root, ControlMode: ModeNone,
		Backends: map[string]backend.Backend{"onnxruntime": be}, StrictReadiness: true,
		Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if n := be.live(); n != 0 {
			t.Errorf("%d backend instances left open", n)
		}
	})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWarmupFailureMakesModelUnavailable(t *testing.T) {
	const in1 = `inputs { key: "INPUT1" value { data_type: TYPE_INT32 dims: [ 4 ] zero_data: true } }`
	tests := []struct {
		name, warmup, want string
		code               infer.Code
	}{
		{"execution fails", `{ name: "evil" batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 4 ] input_data_file: "evil" } } ` + in1 + ` }`,
			"warm-up sample 'evil' failed on instance 0: the model rejects 666", infer.CodeInternal},
		{"unknown input", `{ name: "w" batch_size: 1 inputs { key: "NOPE" value { data_type: TYPE_INT32 dims: [ 4 ] zero_data: true } } }`,
			"warm-up sample 'w': input 'NOPE': not an input of the model", infer.CodeInvalidArgument},
		{"wrong type", `{ name: "w" batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } ` + in1 + ` }`,
			"input 'INPUT0': data_type TYPE_FP32, the model's input is TYPE_INT32", infer.CodeInvalidArgument},
		{"wrong dims", `{ name: "w" batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 5 ] zero_data: true } } ` + in1 + ` }`,
			"input 'INPUT0': dims [5] do not match the input's dims [4]", infer.CodeInvalidArgument},
		{"no data", `{ name: "w" batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 4 ] } } ` + in1 + ` }`,
			"sets none of zero_data, random_data and input_data_file", infer.CodeInvalidArgument},
		{"missing input", `{ name: "w" batch_size: 1 ` + in1 + ` }`, "warm-up sample 'w': input 'INPUT0' of the model has no warm-up data", infer.CodeInvalidArgument},
		{"batch 0", `{ name: "w" ` + in1 + ` }`, "warm-up sample 'w': batch_size must be at least 1", infer.CodeInvalidArgument},
		{"batch too big", `{ name: "w" batch_size: 9 ` + in1 + ` }`, "batch_size 9 is over max_batch_size 8", infer.CodeInvalidArgument},
		{"file missing", `{ batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 4 ] input_data_file: "absent" } } ` + in1 + ` }`,
			"warm-up sample 'model_warmup[0]': input 'INPUT0': input_data_file:", infer.CodeInvalidArgument},
		{"file path", `{ name: "w" batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 4 ] input_data_file: "../config.pbtxt" } } ` + in1 + ` }`,
			"must be the name of a file in the model's warmup folder", infer.CodeInvalidArgument},
		{"file size", `{ name: "w" batch_size: 1 inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 4 ] input_data_file: "short" } } ` + in1 + ` }`,
			"has 8 bytes, dims [4] of INT32 need 16", infer.CodeInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeModel(t, root, "simple", simpleConfig+"model_warmup [ "+tt.warmup+" ]", 1)
			writeWarmupFile(t, root, "simple", "evil", int32s(666, 0, 0, 0))
			writeWarmupFile(t, root, "simple", "short", int32s(1, 2))
			m, err := New(Config{Repository: root, ControlMode: ModeExplicit,
				Backends: map[string]backend.Backend{"onnxruntime": &recordingBackend{fakeBackend: &fakeBackend{}}}, Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			err = m.LoadModel(context.Background(), "simple", infer.LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) || infer.CodeOf(err) != tt.code {
				t.Fatalf("load: %v (code %v), want %v containing %q", err, infer.CodeOf(err), tt.code, tt.want)
			}
			idx, _ := m.RepositoryIndex(context.Background(), false)
			if len(idx) != 1 || idx[0].State != infer.StateUnavailable || !strings.Contains(idx[0].Reason, tt.want) {
				t.Fatalf("index %+v", idx)
			}
			if ok, _ := m.ModelReady(context.Background(), "simple", ""); ok {
				t.Fatal("model ready after a failed warm-up")
			}
		})
	}
}

func TestWarmupData(t *testing.T) {
	for _, dt := range []tensor.DataType{tensor.Bool, tensor.Uint8, tensor.Int16, tensor.Int64, tensor.FP16, tensor.BF16, tensor.FP32, tensor.FP64, tensor.Bytes} {
		for name, data := range map[string][]byte{"zero": zeroData(dt, 5), "random": randomData(dt, 5)} {
			tt := tensor.Tensor{Name: "x", DataType: dt, Shape: []int64{5}, Data: data}
			if err := tt.Validate(); err != nil {
				t.Errorf("%s %s: %v", name, dt, err)
			}
		}
	}
	for _, b := range randomData(tensor.Bool, 100) {
		if b > 1 {
			t.Fatalf("random BOOL byte %d", b)
		}
	}
	for i := range 100 {
		f := tensor.Tensor{DataType: tensor.FP32, Shape: []int64{100}, Data: randomData(tensor.FP32, 100)}
		v := mathFloat32(f.Data[4*i:])
		if v < 0 || v >= 1 {
			t.Fatalf("random FP32 %v outside [0, 1)", v)
		}
	}
}

func FuzzReadWarmupFile(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 'a'}, int64(1))
	f.Add([]byte{0, 0, 0, 0}, int64(2))
	f.Fuzz(func(t *testing.T, data []byte, n int64) {
		if n < 0 || n > 1<<10 {
			return
		}
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, WarmupDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, WarmupDir, "f"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, dt := range []tensor.DataType{tensor.Bytes, tensor.Int32} {
			row, err := readWarmupFile(dir, "f", dt, []int64{n}, n)
			if err != nil {
				continue
			}
			tt := tensor.Tensor{Name: "x", DataType: dt, Shape: []int64{n}, Data: row}
			if err := tt.Validate(); err != nil {
				t.Fatalf("accepted %s data that does not validate: %v", dt, err)
			}
		}
	})
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func mathFloat32(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }

func TestWarmupSamplesShapes(t *testing.T) {
	modelInputs := []backend.IO{{Name: "IN", DataType: tensor.FP32, Shape: []int64{-1, 4}}, {Name: "START", DataType: tensor.Int32, Shape: []int64{-1, 1}}}
	tests := []struct {
		name, config string
		want         [][]int64 // each input's shape, inputs by name
	}{
		{"batched reshape", `max_batch_size: 4 input [{ name: "IN" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape { shape: [ 4 ] } }]
			model_warmup [{ batch_size: 3 inputs { key: "IN" value { data_type: TYPE_FP32 dims: [ 2, 2 ] zero_data: true } } }]`, [][]int64{{3, 4}}},
		{"not batched", `input [{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }]
			model_warmup [{ batch_size: 1 inputs { key: "IN" value { data_type: TYPE_FP32 dims: [ 7 ] random_data: true } } }]`, [][]int64{{7}}},
		{"model-only input", `max_batch_size: 2 input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }]
			model_warmup [{ batch_size: 2 inputs { key: "IN" value { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } }
			  inputs { key: "START" value { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true } } }]`, [][]int64{{2, 4}, {2, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := repository.ParseConfig([]byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			samples, err := warmupSamples(cfg, t.TempDir(), modelInputs)
			if err != nil {
				t.Fatal(err)
			}
			if len(samples) != 1 || samples[0].runs != 1 || len(samples[0].inputs) != len(tt.want) {
				t.Fatalf("samples %+v", samples)
			}
			for i, in := range samples[0].inputs {
				if !equalShape(in.Shape, tt.want[i]...) {
					t.Errorf("input %s shape %v, want %v", in.Name, in.Shape, tt.want[i])
				}
				if err := (&tensor.Tensor{Name: in.Name, DataType: in.DataType, Shape: in.Shape, Data: in.Data}).Validate(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
