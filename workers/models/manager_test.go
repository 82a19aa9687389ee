package models

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// fakeBackend stands in for ONNX Runtime in these unit tests of the
// manager: a "model file" is JSON naming its IO, and an instance adds
// INPUT0 and INPUT1 element-wise (INT32), optionally after a delay.
type fakeBackend struct {
	mu        sync.Mutex
	instances int // live instances
	delay     time.Duration
	executing atomic.Int32 // Execute calls under way
}

type fakeModel struct {
	Inputs, Outputs []backend.IO
	Offset          int32 // added to OUTPUT0, so versions are told apart
}

func (b *fakeBackend) Name() string { return "onnxruntime" }

func (b *fakeBackend) Inspect(_ context.Context, path string) ([]backend.IO, []backend.IO, error) {
	m, err := readFake(path)
	if err != nil {
		return nil, nil, err
	}
	return m.Inputs, m.Outputs, nil
}

func (b *fakeBackend) NewInstance(_ context.Context, spec backend.InstanceSpec) (backend.Instance, error) {
	m, err := readFake(spec.ModelPath)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.instances++
	b.mu.Unlock()
	return &fakeInstance{b: b, offset: m.Offset}, nil
}

func (b *fakeBackend) live() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.instances
}

func readFake(path string) (*fakeModel, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	m := &fakeModel{}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", backend.ErrUnsupported, path, err)
	}
	return m, nil
}

type fakeInstance struct {
	b      *fakeBackend
	offset int32
}

func (i *fakeInstance) Execute(ctx context.Context, in []tensor.Tensor, outputs []string) ([]tensor.Tensor, error) {
	i.b.executing.Add(1)
	defer i.b.executing.Add(-1)
	if i.b.delay > 0 {
		time.Sleep(i.b.delay)
	}
	a, b := in[0].Data, in[1].Data
	sum := make([]byte, len(a))
	diff := make([]byte, len(a))
	for k := 0; k+4 <= len(a); k += 4 {
		x, y := int32(binary.LittleEndian.Uint32(a[k:])), int32(binary.LittleEndian.Uint32(b[k:]))
		binary.LittleEndian.PutUint32(sum[k:], uint32(x+y+i.offset))
		binary.LittleEndian.PutUint32(diff[k:], uint32(x-y))
	}
	var out []tensor.Tensor
	for _, name := range outputs {
		data := sum
		if name == "OUTPUT1" {
			data = diff
		}
		out = append(out, tensor.Tensor{Name: name, DataType: tensor.Int32, Shape: in[0].Shape, Data: data})
	}
	return out, nil
}

func (i *fakeInstance) Close() error {
	i.b.mu.Lock()
	i.b.instances--
	i.b.mu.Unlock()
	return nil
}

var simpleIO = fakeModel{
	Inputs:  []backend.IO{{Name: "INPUT0", DataType: tensor.Int32, Shape: []int64{-1, 4}}, {Name: "INPUT1", DataType: tensor.Int32, Shape: []int64{-1, 4}}},
	Outputs: []backend.IO{{Name: "OUTPUT0", DataType: tensor.Int32, Shape: []int64{-1, 4}}, {Name: "OUTPUT1", DataType: tensor.Int32, Shape: []int64{-1, 4}}},
}

const simpleConfig = `max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 4 ] }, { name: "INPUT1" data_type: TYPE_INT32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 4 ] }, { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 4 ] } ]
instance_group [ { count: 2 } ]
`

// writeModel writes a model folder with the given config and versions.
func writeModel(t *testing.T, root, name, config string, versions ...int32) {
	t.Helper()
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(dir, "config.pbtxt"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range versions {
		m := simpleIO
		m.Offset = v * 1000
		data, _ := json.Marshal(m)
		vdir := filepath.Join(dir, fmt.Sprint(v))
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vdir, "model.onnx"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newManager(t *testing.T, root string, mode ControlMode, be *fakeBackend, startup ...string) *Manager {
	t.Helper()
	m, err := New(Config{
		Repository: root, ControlMode: mode, StartupModels: startup, PollInterval: 20 * time.Millisecond,
		Backends: map[string]backend.Backend{"onnxruntime": be}, StrictReadiness: true,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		if err := m.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if n := be.live(); n != 0 {
			t.Errorf("%d backend instances left open", n)
		}
	})
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

func int32s(vals ...int32) []byte {
	out := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		out = binary.LittleEndian.AppendUint32(out, uint32(v))
	}
	return out
}

func simpleRequest(model string) *infer.Request {
	return &infer.Request{Model: model, Inputs: []tensor.Tensor{
		{Name: "INPUT0", DataType: tensor.Int32, Shape: []int64{1, 4}, Data: int32s(1, 2, 3, 4)},
		{Name: "INPUT1", DataType: tensor.Int32, Shape: []int64{1, 4}, Data: int32s(1, 1, 1, 1)},
	}}
}

func TestInferAndMetadata(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1, 2)
	m := newManager(t, root, ModeNone, &fakeBackend{})
	ctx := context.Background()

	resp, err := m.Infer(ctx, simpleRequest("simple"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != "2" || resp.Outputs[0].Name != "OUTPUT0" || string(resp.Outputs[0].Data) != string(int32s(2002, 2003, 2004, 2005)) {
		t.Fatalf("response %+v", resp)
	}
	if string(resp.Outputs[1].Data) != string(int32s(0, 1, 2, 3)) {
		t.Fatalf("OUTPUT1 = %v", resp.Outputs[1].Data)
	}
	md, err := m.ModelMetadata(ctx, "simple", "")
	if err != nil || md.Platform != "onnxruntime_onnx" || len(md.Versions) != 1 || fmt.Sprint(md.Inputs[0].Shape) != "[-1 4]" {
		t.Fatalf("metadata %+v, %v", md, err)
	}
	st, err := m.ModelStatistics(ctx, "simple", "")
	if err != nil || len(st) != 1 || st[0].InferenceCount != 1 || st[0].ExecutionCount != 1 || st[0].InferenceStats.Success.Count != 1 {
		t.Fatalf("statistics %v, %v", st, err)
	}
	if !m.Ready() {
		t.Fatal("server not ready")
	}
}

func TestInferErrors(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	m := newManager(t, root, ModeNone, &fakeBackend{})
	tests := []struct {
		name   string
		mutate func(*infer.Request)
		code   infer.Code
		want   string
	}{
		{"unknown model", func(r *infer.Request) { r.Model = "nope" }, infer.CodeNotFound, "unknown model: 'nope'"},
		{"unknown version", func(r *infer.Request) { r.Version = "7" }, infer.CodeNotFound, "version 7 is not found"},
		{"bad version", func(r *infer.Request) { r.Version = "x" }, infer.CodeInvalidArgument, "not a number"},
		{"missing input", func(r *infer.Request) { r.Inputs = r.Inputs[:1] }, infer.CodeInvalidArgument, "missing input 'INPUT1'"},
		{"extra input", func(r *infer.Request) { r.Inputs = append(r.Inputs, tensor.Tensor{Name: "X"}) }, infer.CodeInvalidArgument, "unexpected inference input 'X'"},
		{"duplicate input", func(r *infer.Request) { r.Inputs[1].Name = "INPUT0" }, infer.CodeInvalidArgument, "more than once"},
		{"wrong type", func(r *infer.Request) { r.Inputs[0].DataType = tensor.FP32 }, infer.CodeInvalidArgument, "data-type is 'FP32', but model 'simple' expects 'INT32'"},
		{"wrong shape", func(r *infer.Request) { r.Inputs[0].Shape = []int64{1, 3} }, infer.CodeInvalidArgument, "Expected [-1,4], got [1,3]"},
		{"no batch dim", func(r *infer.Request) { r.Inputs[0].Shape = []int64{4} }, infer.CodeInvalidArgument, "Expected [-1,4], got [4]"},
		{"batch too big", func(r *infer.Request) {
			for i := range r.Inputs {
				r.Inputs[i].Shape = []int64{9, 4}
			}
		}, infer.CodeInvalidArgument, "batch-size must be <= 8"},
		{"batch mismatch", func(r *infer.Request) { r.Inputs[1].Shape = []int64{2, 4} }, infer.CodeInvalidArgument, "other inputs have 1"},
		{"short data", func(r *infer.Request) { r.Inputs[0].Data = r.Inputs[0].Data[:8] }, infer.CodeInvalidArgument, "has 8 bytes of data"},
		{"unknown output", func(r *infer.Request) { r.Outputs = []infer.RequestedOutput{{Name: "Z"}} }, infer.CodeInvalidArgument, "unexpected inference output 'Z'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := simpleRequest("simple")
			tt.mutate(req)
			_, err := m.Infer(context.Background(), req)
			if infer.CodeOf(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (code %v), want %v containing %q", err, infer.CodeOf(err), tt.code, tt.want)
			}
		})
	}
	// The model keeps serving after every bad request.
	if _, err := m.Infer(context.Background(), simpleRequest("simple")); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenModelIsUnavailableOthersServe(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	writeModel(t, root, "badconfig", "max_batch_size: oops", 1)
	writeModel(t, root, "badfile", simpleConfig, 1)
	if err := os.WriteFile(filepath.Join(root, "badfile", "1", "model.onnx"), []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeModel(t, root, "noversions", simpleConfig)
	m := newManager(t, root, ModeNone, &fakeBackend{})
	idx, err := m.RepositoryIndex(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]infer.IndexEntry{}
	for _, e := range idx {
		got[e.Name] = e
	}
	for name, want := range map[string]string{"badconfig": "config.pbtxt", "badfile": "unsupported by backend", "noversions": "no version is available"} {
		if e := got[name]; e.State != infer.StateUnavailable || !strings.Contains(e.Reason, want) {
			t.Errorf("%s: %+v, want UNAVAILABLE with reason containing %q", name, e, want)
		}
	}
	if e := got["simple"]; e.State != infer.StateReady || e.Version != "1" {
		t.Errorf("simple: %+v", e)
	}
	if _, err := m.Infer(context.Background(), simpleRequest("simple")); err != nil {
		t.Fatal(err)
	}
	if m.Ready() {
		t.Fatal("strict readiness: server must not be ready with broken models")
	}
}

func TestExplicitLoadUnload(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	writeModel(t, root, "other", simpleConfig, 1)
	be := &fakeBackend{}
	m := newManager(t, root, ModeExplicit, be, "other")
	ctx := context.Background()
	if ready, _ := m.ModelReady(ctx, "simple", ""); ready {
		t.Fatal("simple loaded without being asked")
	}
	if err := m.LoadModel(ctx, "simple", infer.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if ready, _ := m.ModelReady(ctx, "simple", "1"); !ready {
		t.Fatal("simple not ready after load")
	}
	if err := m.LoadModel(ctx, "../etc", infer.LoadOptions{}); infer.CodeOf(err) != infer.CodeInvalidArgument {
		t.Fatalf("bad name: %v", err)
	}
	if err := m.LoadModel(ctx, "missing", infer.LoadOptions{}); infer.CodeOf(err) != infer.CodeNotFound {
		t.Fatalf("missing model: %v", err)
	}
	if err := m.LoadModel(ctx, "simple", infer.LoadOptions{ConfigJSON: `{"max_batch_size": "x"}`}); infer.CodeOf(err) != infer.CodeInvalidArgument {
		t.Fatalf("bad config override: %v", err)
	}
	// A failed reload keeps the loaded version serving.
	if ready, _ := m.ModelReady(ctx, "simple", "1"); !ready {
		t.Fatal("failed reload took the model down")
	}
	if err := m.UnloadModel(ctx, "simple", false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Infer(ctx, simpleRequest("simple")); infer.CodeOf(err) != infer.CodeNotFound {
		t.Fatalf("infer after unload: %v", err)
	}
	if n := be.live(); n != 2 {
		t.Fatalf("%d instances live, want 2 (other's)", n)
	}
}

func TestLoadNotAllowedInNoneMode(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	m := newManager(t, root, ModeNone, &fakeBackend{})
	if err := m.LoadModel(context.Background(), "simple", infer.LoadOptions{}); infer.CodeOf(err) != infer.CodeUnavailable {
		t.Fatalf("err = %v", err)
	}
}

// TestReloadKeepsInFlightRequests reloads a model while requests run; none
// may fail, and after the reload new requests see the new version.
func TestReloadKeepsInFlightRequests(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	be := &fakeBackend{delay: 2 * time.Millisecond}
	m := newManager(t, root, ModeExplicit, be, "*")
	ctx := context.Background()

	var failures atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := m.Infer(ctx, simpleRequest("simple")); err != nil {
					failures.Add(1)
					t.Error(err)
					return
				}
			}
		}()
	}
	for v := int32(2); v <= 4; v++ {
		writeModel(t, root, "simple", simpleConfig, v)
		if err := m.LoadModel(ctx, "simple", infer.LoadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d requests failed during reloads", failures.Load())
	}
	resp, err := m.Infer(ctx, simpleRequest("simple"))
	if err != nil || resp.Version != "4" {
		t.Fatalf("after reload: %+v, %v", resp, err)
	}
	if n := be.live(); n != 2 {
		t.Fatalf("%d instances live after reloads, want 2", n)
	}
}

func TestPollMode(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	m := newManager(t, root, ModePoll, &fakeBackend{})
	ctx := context.Background()
	writeModel(t, root, "added", simpleConfig, 1)
	waitFor(t, func() bool { ok, _ := m.ModelReady(ctx, "added", "1"); return ok })
	writeModel(t, root, "simple", simpleConfig, 2)
	waitFor(t, func() bool { ok, _ := m.ModelReady(ctx, "simple", "2"); return ok })
	if err := os.RemoveAll(filepath.Join(root, "added")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { ok, _ := m.ModelReady(ctx, "added", ""); return !ok })
	if err := m.UnloadModel(ctx, "simple", false); infer.CodeOf(err) != infer.CodeUnavailable {
		t.Fatalf("unload in poll mode: %v", err)
	}
}

func TestVersionPolicyAndAutoComplete(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "all", simpleConfig+"version_policy { all {} }\n", 1, 2, 3)
	writeModel(t, root, "auto", "", 1) // no config.pbtxt at all
	m := newManager(t, root, ModeNone, &fakeBackend{})
	ctx := context.Background()
	for _, v := range []string{"1", "2", "3"} {
		resp, err := m.Infer(ctx, &infer.Request{Model: "all", Version: v, Inputs: simpleRequest("").Inputs})
		if err != nil || resp.Version != v {
			t.Fatalf("version %s: %+v %v", v, resp, err)
		}
	}
	cfg, err := m.ModelConfig(ctx, "auto", "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxBatchSize != 4 || len(cfg.Input) != 2 || cfg.GetDynamicBatching() == nil || cfg.Backend != "onnxruntime" {
		t.Fatalf("auto-completed config %v", cfg)
	}
	if _, err := m.Infer(ctx, simpleRequest("auto")); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
