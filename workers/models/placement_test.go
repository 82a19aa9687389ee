package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
)

// gpuBackend is fakeBackend seen as a GPU backend: it counts gpus (or
// fails to) and records where each instance was asked to go.
type gpuBackend struct {
	*fakeBackend
	gpus     int
	countErr error

	mu    sync.Mutex
	specs []backend.InstanceSpec
}

func (b *gpuBackend) GPUCount(context.Context) (int, error) { return b.gpus, b.countErr }

func (b *gpuBackend) NewInstance(ctx context.Context, spec backend.InstanceSpec) (backend.Instance, error) {
	b.mu.Lock()
	b.specs = append(b.specs, spec)
	b.mu.Unlock()
	return b.fakeBackend.NewInstance(ctx, spec)
}

func TestPlacements(t *testing.T) {
	group := func(kind pb.ModelInstanceGroup_Kind, count int32, gpus ...int32) *pb.ModelInstanceGroup {
		return &pb.ModelInstanceGroup{Kind: kind, Count: count, Gpus: gpus}
	}
	const cpu, gpu = pb.ModelInstanceGroup_KIND_CPU, pb.ModelInstanceGroup_KIND_GPU
	tests := []struct {
		name    string
		be      backend.Backend
		groups  []*pb.ModelInstanceGroup
		want    []int
		wantErr string
	}{
		{"cpu groups", &fakeBackend{}, []*pb.ModelInstanceGroup{group(cpu, 2), group(cpu, 1)}, []int{-1, -1, -1}, ""},
		{"named gpus, count on each", &fakeBackend{}, []*pb.ModelInstanceGroup{group(gpu, 2, 1, 3)}, []int{1, 1, 3, 3}, ""},
		{"no gpus named: every gpu the backend sees", &gpuBackend{fakeBackend: &fakeBackend{}, gpus: 2},
			[]*pb.ModelInstanceGroup{group(gpu, 1)}, []int{0, 1}, ""},
		{"cpu and gpu mixed", &gpuBackend{fakeBackend: &fakeBackend{}, gpus: 1},
			[]*pb.ModelInstanceGroup{group(cpu, 1), group(gpu, 2)}, []int{-1, 0, 0}, ""},
		{"gpu kind on a cpu-only backend", &fakeBackend{}, []*pb.ModelInstanceGroup{group(cpu, 1), group(gpu, 1)}, nil,
			"instance_group[1] is KIND_GPU but backend"},
		{"no gpu visible", &gpuBackend{fakeBackend: &fakeBackend{}}, []*pb.ModelInstanceGroup{group(gpu, 1)}, nil,
			"this worker sees no GPU"},
		{"gpu count fails", &gpuBackend{fakeBackend: &fakeBackend{}, countErr: errors.New("nvml: driver not loaded")},
			[]*pb.ModelInstanceGroup{group(gpu, 1)}, nil, "nvml: driver not loaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := placements(t.Context(), tt.be, &pb.ModelConfig{Backend: "cuda", InstanceGroup: tt.groups})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("placements = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestGPUModelInstances loads a cuda-backend model end to end: each
// instance is created for its GPU, and a GPU-less worker reports the model
// UNAVAILABLE with the reason.
func TestGPUModelInstances(t *testing.T) {
	const cfg = `backend: "cuda"
max_batch_size: 8
instance_group [ { count: 1 kind: KIND_GPU } ]
`
	root := t.TempDir()
	writeModel(t, root, "gpu", cfg, 1)
	be := &gpuBackend{fakeBackend: &fakeBackend{}, gpus: 2}
	m, err := New(Config{Repository: root, ControlMode: ModeExplicit, Backends: map[string]backend.Backend{"cuda": be},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if err := m.LoadModel(ctx, "gpu", infer.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	var places []string
	for _, s := range be.specs {
		places = append(places, fmt.Sprintf("%s:%d", s.Device, s.GPU))
	}
	if !reflect.DeepEqual(places, []string{"gpu:0", "gpu:1"}) {
		t.Fatalf("instances placed on %v, want gpu:0 and gpu:1", places)
	}
	if _, err := m.Infer(ctx, simpleRequest("gpu")); err != nil {
		t.Fatal(err)
	}

	be.gpus = 0
	err = m.LoadModel(ctx, "gpu", infer.LoadOptions{})
	if infer.CodeOf(err) != infer.CodeInternal || !strings.Contains(err.Error(), "sees no GPU") {
		t.Fatalf("reload without GPUs: %v", err)
	}
	// The versions already serving keep serving.
	if _, err := m.Infer(ctx, simpleRequest("gpu")); err != nil {
		t.Fatalf("failed reload took the model down: %v", err)
	}
}
