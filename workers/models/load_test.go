package models

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/scheduler"
)

func TestNewChecksConfig(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no repository", Config{ControlMode: ModeNone}, "no model repository given"},
		{"repository missing", Config{Repository: filepath.Join(root, "missing"), ControlMode: ModeNone}, "missing"},
		{"bad control mode", Config{Repository: root, ControlMode: "sometimes"}, `unknown model control mode "sometimes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	for _, s := range []string{"none", "explicit", "poll"} {
		if m, err := ParseControlMode(s); err != nil || string(m) != s {
			t.Errorf("ParseControlMode(%q) = %q, %v", s, m, err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	writeModel(t, root, "gpu", `backend: "cuda"`+"\n"+simpleConfig, 1)
	m := newManager(t, root, ModeExplicit, &fakeBackend{})
	ctx := t.Context()
	tests := []struct {
		name  string
		model string
		opts  infer.LoadOptions
		code  infer.Code
		want  string
	}{
		{"file overrides", "simple", infer.LoadOptions{Files: map[string][]byte{"file:1/model.onnx": []byte("x")}},
			infer.CodeUnimplemented, "file overrides are not supported"},
		{"config override too large", "simple", infer.LoadOptions{ConfigJSON: `{"name":"` + strings.Repeat("x", repository.MaxConfigBytes) + `"}`},
			infer.CodeInvalidArgument, "config parameter is over"},
		{"config override names another model", "simple", infer.LoadOptions{ConfigJSON: `{"name":"other"}`},
			infer.CodeInvalidArgument, `does not match the model folder "simple"`},
		{"backend this worker lacks", "gpu", infer.LoadOptions{},
			infer.CodeInvalidArgument, `backend "cuda" is not available in this worker`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.LoadModel(ctx, tt.model, tt.opts)
			if infer.CodeOf(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (code %v), want %v containing %q", err, infer.CodeOf(err), tt.code, tt.want)
			}
		})
	}
	// A config given with the load request replaces config.pbtxt.
	if err := m.LoadModel(ctx, "simple", infer.LoadOptions{ConfigJSON: `{"max_batch_size": 2}`}); err != nil {
		t.Fatal(err)
	}
	if cfg, err := m.ModelConfig(ctx, "simple", ""); err != nil || cfg.MaxBatchSize != 2 {
		t.Fatalf("config after load with a config override: %v, %v", cfg, err)
	}
}

func TestUnloadModelNotLoaded(t *testing.T) {
	root := t.TempDir()
	m := newManager(t, root, ModeExplicit, &fakeBackend{})
	// As in Triton, unloading a model that is not loaded succeeds...
	if err := m.UnloadModel(t.Context(), "never-loaded", false); err != nil {
		t.Fatalf("unload of a model not loaded: %v", err)
	}
	// ...but a name that could never be a model is refused.
	if err := m.UnloadModel(t.Context(), "../x", false); infer.CodeOf(err) != infer.CodeInvalidArgument {
		t.Fatalf("unload of ../x: %v", err)
	}
}

// failingBackend fails the nth NewInstance call (counting from 1).
type failingBackend struct {
	*fakeBackend
	failAt int32
	calls  atomic.Int32
}

func (b *failingBackend) NewInstance(ctx context.Context, spec backend.InstanceSpec) (backend.Instance, error) {
	if b.calls.Add(1) == b.failAt {
		return nil, errors.New("out of device memory")
	}
	return b.fakeBackend.NewInstance(ctx, spec)
}

// TestFailedInstanceReleasesTheOthers: when one instance of a load fails,
// the instances already created for it (this version's and earlier
// versions') are closed, and the error names the version.
func TestFailedInstanceReleasesTheOthers(t *testing.T) {
	for _, failAt := range []int32{2, 3} { // second instance of version 1; first of version 2
		root := t.TempDir()
		writeModel(t, root, "simple", simpleConfig+"version_policy { all {} }\n", 1, 2)
		be := &failingBackend{fakeBackend: &fakeBackend{}, failAt: failAt}
		m, err := New(Config{Repository: root, ControlMode: ModeExplicit,
			Backends: map[string]backend.Backend{"onnxruntime": be}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		err = m.LoadModel(t.Context(), "simple", infer.LoadOptions{})
		if infer.CodeOf(err) != infer.CodeInternal || !strings.Contains(err.Error(), "out of device memory") {
			t.Fatalf("failAt %d: err = %v", failAt, err)
		}
		if n := be.live(); n != 0 {
			t.Fatalf("failAt %d: %d instances left open after the failed load", failAt, n)
		}
	}
}

// TestReshape: an input and an output with reshape are seen by the backend
// in their reshaped form and by the client in the declared dims.
func TestReshape(t *testing.T) {
	const cfg = `max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 2, 2 ] reshape: { shape: [ 4 ] } },
        { name: "INPUT1" data_type: TYPE_INT32 dims: [ 2, 2 ] reshape: { shape: [ 4 ] } } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 2, 2 ] reshape: { shape: [ 4 ] } },
         { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 4 ] } ]
`
	root := t.TempDir()
	writeModel(t, root, "reshaped", cfg, 1)
	m := newManager(t, root, ModeNone, &fakeBackend{})
	req := simpleRequest("reshaped")
	for i := range req.Inputs {
		req.Inputs[i].Shape = []int64{1, 2, 2}
	}
	resp, err := m.Infer(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Outputs[0].Shape; !reflect.DeepEqual(got, []int64{1, 2, 2}) {
		t.Fatalf("OUTPUT0 shape %v, want the declared [1 2 2]", got)
	}
	if got := resp.Outputs[1].Shape; !reflect.DeepEqual(got, []int64{1, 4}) {
		t.Fatalf("OUTPUT1 shape %v, want [1 4]", got)
	}
	if string(resp.Outputs[0].Data) != string(int32s(1002, 1003, 1004, 1005)) {
		t.Fatalf("OUTPUT0 data %v", resp.Outputs[0].Data)
	}
}

func TestBatchShape(t *testing.T) {
	tests := []struct {
		shape, dims []int64
		batched     bool
		want        []int64
	}{
		{[]int64{3, 4}, []int64{2, 2}, true, []int64{3, 2, 2}},
		{[]int64{3, 5, 7}, []int64{-1, 7}, true, []int64{3, 5, 7}},
		{[]int64{4}, []int64{2, 2}, false, []int64{2, 2}},
		{[]int64{6, 2}, []int64{-1, 2, 2}, false, []int64{6, 2, 2}},
		{nil, []int64{-1}, true, []int64{-1}},
	}
	for _, tt := range tests {
		if got := batchShape(tt.shape, tt.dims, tt.batched); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("batchShape(%v, %v, %v) = %v, want %v", tt.shape, tt.dims, tt.batched, got, tt.want)
		}
	}
}

func TestSchedulerConfig(t *testing.T) {
	cfgWith := func(db *pb.ModelDynamicBatching) *pb.ModelConfig {
		c := &pb.ModelConfig{Name: "m", MaxBatchSize: 8}
		if db != nil {
			c.SchedulingChoice = &pb.ModelConfig_DynamicBatching{DynamicBatching: db}
		}
		return c
	}
	tests := []struct {
		name string
		cfg  *pb.ModelConfig
		want scheduler.Config
	}{
		{"no dynamic batching", cfgWith(nil), scheduler.Config{Model: "m", Version: 3, MaxBatchSize: 8}},
		{"dynamic batching", cfgWith(&pb.ModelDynamicBatching{
			MaxQueueDelayMicroseconds: 1500, PreserveOrdering: true, PreferredBatchSize: []int32{4, 8},
		}), scheduler.Config{Model: "m", Version: 3, MaxBatchSize: 8, Dynamic: &scheduler.DynamicBatching{
			MaxQueueDelay: 1500 * time.Microsecond, PreserveOrdering: true, PreferredBatchSizes: []int{4, 8},
		}}},
		{"queue policy, reject", cfgWith(&pb.ModelDynamicBatching{DefaultQueuePolicy: &pb.ModelQueuePolicy{
			MaxQueueSize: 16, DefaultTimeoutMicroseconds: 2000, AllowTimeoutOverride: true,
			TimeoutAction: pb.ModelQueuePolicy_REJECT,
		}}), scheduler.Config{Model: "m", Version: 3, MaxBatchSize: 8, Dynamic: &scheduler.DynamicBatching{},
			MaxQueueSize: 16, DefaultTimeout: 2 * time.Millisecond, AllowTimeoutOverride: true, TimeoutAction: scheduler.Reject}},
		{"queue policy, delay", cfgWith(&pb.ModelDynamicBatching{DefaultQueuePolicy: &pb.ModelQueuePolicy{
			TimeoutAction: pb.ModelQueuePolicy_DELAY,
		}}), scheduler.Config{Model: "m", Version: 3, MaxBatchSize: 8, Dynamic: &scheduler.DynamicBatching{},
			TimeoutAction: scheduler.Delay}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := schedulerConfig(tt.cfg, 3, nil, nil, nil); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("scheduler config\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestPollRepositoryVanishes: a poll that cannot read the repository is
// reported and changes nothing; polling goes on once it is back.
func TestPollRepositoryVanishes(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	m := newManager(t, root, ModePoll, &fakeBackend{})
	ctx := t.Context()
	moved := root + ".moved"
	if err := os.Rename(root, moved); err != nil {
		t.Fatal(err)
	}
	m.pollOnce(ctx)
	if ok, _ := m.ModelReady(ctx, "simple", "1"); !ok {
		t.Fatal("a vanished repository unloaded the models")
	}
	if err := os.Rename(moved, root); err != nil {
		t.Fatal(err)
	}
	writeModel(t, root, "simple", simpleConfig, 2)
	waitFor(t, func() bool { ok, _ := m.ModelReady(ctx, "simple", "2"); return ok })
}
