// Package cuda is the backend that runs ONNX models on NVIDIA GPUs with no
// Python and no CUDA toolkit in the serving path: the model is read and
// folded on the host (graph), lowered to kernel launches and cuBLAS GEMMs
// per batch size over one planned activation arena (lower, plan), its
// kernels written as CUDA C (kernels) and compiled at load with NVRTC, and
// run through the CUDA driver API on one stream per instance (exec,
// driver). The CUDA libraries are loaded at run time: a worker without
// them still serves its CPU models, and a cuda model shows UNAVAILABLE
// with the reason.
package cuda

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/cuda/driver"
	"github.com/helixflow/helixflow/workers/backend/cuda/exec"
	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/lower"
	"github.com/helixflow/helixflow/workers/gpu"
)

// Name is the backend's name as config.pbtxt's `backend` field spells it.
const Name = "cuda"

// LibraryPathEnv names the environment variable with extra folders
// (colon-separated) searched first for libcuda.so.1, libcublas.so.* and
// libnvrtc.so.* (NVIDIA's pip wheels put them in site-packages/nvidia/*/lib).
const LibraryPathEnv = "HELIX_CUDA_LIBRARY_PATH"

// The config.pbtxt parameters the backend reads.
const (
	// ParamPrecision: fp32 (default), tf32 (float32 tensors, TF32 tensor
	// core GEMMs), fp16 or bf16 (float32 tensors held in 16 bits on the
	// GPU, accumulating in float32; the model's IO stays as declared).
	ParamPrecision = "precision"
	// ParamGraphBatchSizes lists batch sizes ("1,8,64") to capture as CUDA
	// graphs at load: one launch replays the whole model.
	ParamGraphBatchSizes = "cuda_graph_batch_sizes"
)

// ErrUnavailable is wrapped when this machine cannot run the backend (no
// driver, no GPU, libraries missing).
var ErrUnavailable = errors.New("CUDA is not available")

// ErrOutOfMemory is wrapped when a model does not fit the GPU's free memory.
var ErrOutOfMemory = errors.New("out of GPU memory")

// Discovery names GPUs as NVML sees them; *gpu.NVML (workers/gpu) is one.
type Discovery interface {
	ByUUID(uuid string) (gpu.GPU, error)
}

// Options configures a Backend.
type Options struct {
	// LibraryDirs are searched first for the CUDA libraries; nil means the
	// folders in $HELIX_CUDA_LIBRARY_PATH.
	LibraryDirs []string
	// Discovery, if set, names the GPU each instance runs on (NVML index,
	// model name) in logs.
	Discovery Discovery
	// BLASWorkspaceBytes is each instance's cuBLAS workspace (0: 32 MiB).
	BLASWorkspaceBytes int64
	// WorkspaceBytes bounds a convolution's im2col buffer (0: 128 MiB).
	WorkspaceBytes int64
	Logger         *slog.Logger
}

// Backend creates GPU instances of ONNX models. It is safe for concurrent
// use.
type Backend struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	models map[modelKey]*modelState
	// cubins caches compiled modules by source and architecture.
	cubins map[string][]byte
	// memory is each model's device memory in bytes (weights once per GPU,
	// plus every instance's arena and cuBLAS workspace).
	memory map[string]int64
}

var _ backend.Backend = (*Backend)(nil)

// New returns a Backend; it loads nothing until a model asks for it.
func New(opts Options) *Backend {
	if opts.LibraryDirs == nil {
		opts.LibraryDirs = driver.SearchDirsFromEnv(os.Getenv(LibraryPathEnv))
	}
	if opts.BLASWorkspaceBytes <= 0 {
		opts.BLASWorkspaceBytes = 32 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Backend{
		opts: opts, log: opts.Logger.With("backend", Name),
		models: map[modelKey]*modelState{}, cubins: map[string][]byte{}, memory: map[string]int64{},
	}
}

// Name returns "cuda".
func (b *Backend) Name() string { return Name }

// libs loads the CUDA libraries (retried on every call until it works).
func (b *Backend) libs() (*driver.Libs, error) {
	l, err := driver.Load(driver.Config{SearchDirs: b.opts.LibraryDirs})
	if err != nil {
		return nil, fmt.Errorf("%w: %w (set %s to the folders holding them)", ErrUnavailable, err, LibraryPathEnv)
	}
	if err := l.Init(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return l, nil
}

// GPUCount is the number of CUDA devices this process sees: the GPUs an
// instance group without `gpus` spreads over.
func (b *Backend) GPUCount(ctx context.Context) (int, error) {
	l, err := b.libs()
	if err != nil {
		return 0, fmt.Errorf("cuda: %w", err)
	}
	n, err := l.DeviceCount()
	if err != nil {
		return 0, fmt.Errorf("cuda: %w: %w", ErrUnavailable, err)
	}
	return n, nil
}

// Inspect reads the model's IO; it needs no GPU. It also checks that every
// operator is one the backend runs, so an unsupported model is refused at
// load with the operators named.
func (b *Backend) Inspect(ctx context.Context, modelPath string) (inputs, outputs []backend.IO, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	g, err := loadGraph(modelPath)
	if err != nil {
		return nil, nil, err
	}
	return ios(g.Inputs), ios(g.Outputs), nil
}

func loadGraph(path string) (*graph.Graph, error) {
	g, err := graph.Load(path)
	if err == nil {
		err = g.Fold()
	}
	if err != nil {
		if errors.Is(err, graph.ErrUnsupported) {
			return nil, fmt.Errorf("%w: cuda: %w", backend.ErrUnsupported, err)
		}
		return nil, fmt.Errorf("cuda: %w", err)
	}
	return g, nil
}

func ios(list []graph.IO) []backend.IO {
	out := make([]backend.IO, len(list))
	for i, io := range list {
		out[i] = backend.IO{Name: io.Name, DataType: io.DType.DataType(), Shape: slices.Clone(io.Shape)}
	}
	return out
}

// modelKey identifies what a model's shared state was built from.
type modelKey struct {
	path      string
	size      int64
	modTime   time.Time
	precision lower.Precision
	maxBatch  int64
	gpu       int
}

// modelState is shared by a model's instances on one GPU: the lowered
// programs, the loaded kernels and the weights.
type modelState struct {
	key     modelKey
	name    string
	refs    int
	lowered *lower.Model
	loader  *gpuDevice
	module  exec.Module
	weights *exec.Weights
}

// params reads the backend's config.pbtxt parameters.
type params struct {
	precision lower.Precision
	graphs    []int64
}

func parseParams(p map[string]string, maxBatch int64) (params, error) {
	var out params
	var err error
	if out.precision, err = lower.ParsePrecision(p[ParamPrecision]); err != nil {
		return out, fmt.Errorf("parameter %s: %w", ParamPrecision, err)
	}
	if s := strings.TrimSpace(p[ParamGraphBatchSizes]); s != "" {
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || n < 1 || (maxBatch > 0 && n > maxBatch) || (maxBatch == 0 && n != 1) {
				return out, fmt.Errorf("parameter %s: %q is not a batch size in 1..max_batch_size (%d)", ParamGraphBatchSizes, f, max(maxBatch, 1))
			}
			if maxBatch == 0 {
				n = 0 // a model that does not batch has one program
			}
			out.graphs = append(out.graphs, n)
		}
	}
	return out, nil
}

// NewInstance loads one instance of a model on the GPU spec names.
func (b *Backend) NewInstance(ctx context.Context, spec backend.InstanceSpec) (backend.Instance, error) {
	if spec.Device != "gpu" {
		return nil, fmt.Errorf("%w: cuda: model %q: device %q: the cuda backend runs on GPUs (instance_group kind KIND_GPU)",
			backend.ErrUnsupported, spec.ModelName, spec.Device)
	}
	maxBatch := int64(max(spec.MaxBatchSize, 0))
	p, err := parseParams(spec.Parameters, maxBatch)
	if err != nil {
		return nil, fmt.Errorf("cuda: model %q: %w", spec.ModelName, err)
	}
	libs, err := b.libs()
	if err != nil {
		return nil, fmt.Errorf("cuda: model %q: %w", spec.ModelName, err)
	}
	n, err := libs.DeviceCount()
	if err != nil {
		return nil, fmt.Errorf("cuda: %w: %w", ErrUnavailable, err)
	}
	if spec.GPU < 0 || spec.GPU >= n {
		return nil, fmt.Errorf("%w: cuda: model %q: GPU %d does not exist (this worker sees %d CUDA device%s)",
			ErrUnavailable, spec.ModelName, spec.GPU, n, plural(n))
	}
	st, err := b.acquire(ctx, libs, spec, p, maxBatch)
	if err != nil {
		return nil, err
	}
	inst, err := b.newInstance(st, spec, p)
	if err != nil {
		b.releaseState(st)
		return nil, err
	}
	return inst, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// acquire returns the model's shared state on the GPU, building it on
// first use: lowering (host only), NVRTC compilation, weight upload.
func (b *Backend) acquire(ctx context.Context, libs *driver.Libs, spec backend.InstanceSpec, p params, maxBatch int64) (*modelState, error) {
	fi, err := os.Stat(spec.ModelPath)
	if err != nil {
		return nil, fmt.Errorf("cuda: model file: %w", err)
	}
	key := modelKey{path: spec.ModelPath, size: fi.Size(), modTime: fi.ModTime(), precision: p.precision, maxBatch: maxBatch, gpu: spec.GPU}
	b.mu.Lock()
	defer b.mu.Unlock()
	if st, ok := b.models[key]; ok {
		st.refs++
		return st, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	g, err := loadGraph(spec.ModelPath)
	if err != nil {
		return nil, err
	}
	lm, err := lower.Compile(g, lower.Options{Precision: p.precision, WorkspaceBytes: b.opts.WorkspaceBytes}, maxBatch)
	if err != nil {
		if errors.Is(err, graph.ErrUnsupported) {
			return nil, fmt.Errorf("%w: cuda: model %q: %w", backend.ErrUnsupported, spec.ModelName, err)
		}
		return nil, fmt.Errorf("cuda: model %q: %w", spec.ModelName, err)
	}
	lowered := time.Since(start)
	info, err := libs.Device(spec.GPU)
	if err != nil {
		return nil, fmt.Errorf("cuda: GPU %d: %w", spec.GPU, err)
	}
	cctx, err := libs.Open(spec.GPU)
	if err != nil {
		return nil, fmt.Errorf("cuda: GPU %d: %w", spec.GPU, err)
	}
	loader := &gpuDevice{libs: libs, ctx: cctx, info: info}
	st := &modelState{key: key, name: spec.ModelName, refs: 1, lowered: lm, loader: loader}
	fail := func(err error) (*modelState, error) {
		b.freeState(st)
		return nil, err
	}
	if err := b.checkMemory(loader, spec, lm.WeightBytes()+lm.ArenaBytes()+b.opts.BLASWorkspaceBytes); err != nil {
		return fail(err)
	}
	names := make([]string, 0, len(lm.Kernels))
	for n := range lm.Kernels {
		names = append(names, n)
	}
	slices.Sort(names)
	src := lm.Source()
	cacheKey := fmt.Sprintf("%x/sm_%d%d", sha256.Sum256([]byte(src)), info.Major, info.Minor)
	cubin, ok := b.cubins[cacheKey]
	if !ok {
		if cubin, err = libs.CompileCUBIN(src, "helix_kernels.cu", info.Major, info.Minor); err != nil {
			return fail(fmt.Errorf("cuda: model %q: compiling %d kernels with NVRTC: %w", spec.ModelName, len(names), err))
		}
		b.cubins[cacheKey] = cubin
	}
	mod, err := loader.load(cubin, names)
	if err != nil {
		return fail(fmt.Errorf("cuda: model %q: loading kernels: %w", spec.ModelName, err))
	}
	st.module = mod
	if st.weights, err = exec.UploadWeights(loader, lm); err != nil {
		return fail(b.memoryError(spec, err))
	}
	b.models[key] = st
	b.memory[spec.ModelName] += st.weights.Bytes
	b.log.Info("cuda model loaded", "model", spec.ModelName, "version", spec.ModelVersion, "gpu", b.describe(info),
		"precision", p.precision, "max_batch_size", maxBatch, "kernels", len(names), "weights_bytes", st.weights.Bytes,
		"lowering", lowered.Round(time.Millisecond), "load", time.Since(start).Round(time.Millisecond))
	return st, nil
}

// describe names a CUDA device, with NVML's index where Discovery knows it.
func (b *Backend) describe(info driver.DeviceInfo) string {
	s := fmt.Sprintf("%d (%s, %s)", info.Ordinal, info.Name, info.UUID)
	if b.opts.Discovery != nil {
		if g, err := b.opts.Discovery.ByUUID(info.UUID); err == nil {
			s = fmt.Sprintf("%d (%s, %s, NVML index %d)", info.Ordinal, info.Name, info.UUID, g.Index)
		}
	}
	return s
}

// checkMemory refuses a load that would not fit the GPU's free memory, so
// that the model shows why instead of failing half-way.
func (b *Backend) checkMemory(d *gpuDevice, spec backend.InstanceSpec, need int64) error {
	free, total, err := d.ctx.MemInfo()
	if err != nil {
		return fmt.Errorf("cuda: GPU %d: %w", spec.GPU, err)
	}
	if uint64(need) > free {
		return fmt.Errorf("%w: cuda: model %q needs %d MiB on GPU %d, which has %d MiB free of %d MiB",
			ErrOutOfMemory, spec.ModelName, need>>20, spec.GPU, free>>20, total>>20)
	}
	return nil
}

func (b *Backend) memoryError(spec backend.InstanceSpec, err error) error {
	if errors.Is(err, driver.ErrOutOfMemory) {
		return fmt.Errorf("%w: cuda: model %q on GPU %d: %w", ErrOutOfMemory, spec.ModelName, spec.GPU, err)
	}
	return fmt.Errorf("cuda: model %q on GPU %d: %w", spec.ModelName, spec.GPU, err)
}

// releaseState drops one instance's hold on the shared state.
func (b *Backend) releaseState(st *modelState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st.refs--
	if st.refs > 0 {
		return
	}
	delete(b.models, st.key)
	if st.weights != nil {
		b.memory[st.name] -= st.weights.Bytes
	}
	b.freeState(st)
}

func (b *Backend) freeState(st *modelState) {
	var errs []error
	if st.weights != nil {
		errs = append(errs, st.weights.Free())
	}
	if st.module != nil {
		errs = append(errs, st.loader.Unload(st.module))
	}
	errs = append(errs, st.loader.ctx.Close())
	if err := errors.Join(errs...); err != nil {
		b.log.Warn("releasing a cuda model", "model", st.name, "error", err)
	}
}

// MemoryBytes is each loaded model's device memory: its weights once per
// GPU plus every instance's activation arena and cuBLAS workspace.
func (b *Backend) MemoryBytes() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int64, len(b.memory))
	for k, v := range b.memory {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}
