// Package pytorch is the backend that runs TorchScript models (Triton's
// platform pytorch_libtorch, model.pt) with libtorch's C++ API.
//
// libtorch is reached through a small C shim (shim/helix_torch.cc, built by
// `make deps` into .deps/pytorch/libhelix_torch.so against the pinned torch
// wheel) that the worker opens with dlopen the first time a TorchScript
// model loads. The worker therefore builds with plain `go build` and runs
// where libtorch is missing: its TorchScript models are UNAVAILABLE with
// the reason (the shim was not found, or did not load), the others serve.
//
// A TorchScript file does not reliably say its inputs' and outputs' names,
// datatypes or shapes, so, as in Triton, config.pbtxt declares them: the
// backend implements backend.DeclaredIO and checks the declaration against
// forward()'s signature (signature.go has the naming rules).
package pytorch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/libsearch"
)

// Name is the backend's name as config.pbtxt's `backend` field spells it.
const Name = "pytorch"

// ParamIntraOpThreads is the config.pbtxt parameter that sets a model's
// intra-op thread count, named as in Triton's pytorch backend.
const ParamIntraOpThreads = "INTRA_OP_THREAD_COUNT"

// Options configures a Backend.
type Options struct {
	// LibraryPath is the shim's path (libhelix_torch.so); empty means
	// FindLibrary's.
	LibraryPath string
	// IntraOpThreads is each instance's intra-op thread count; 0 with
	// AutoThreads shares GOMAXPROCS among a model's instances (as the
	// onnxruntime backend does), 0 without leaves libtorch's default (one
	// thread per core for every instance).
	IntraOpThreads int
	AutoThreads    bool
	// Logger receives the backend's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Backend loads TorchScript modules. It is safe for concurrent use.
type Backend struct {
	opts Options
	log  *slog.Logger

	once sync.Once
	lib  *lib
	err  error
}

var (
	_ backend.Backend    = (*Backend)(nil)
	_ backend.DeclaredIO = (*Backend)(nil)
	_ backend.GPUCounter = (*Backend)(nil)
)

// New returns a Backend. It does not load libtorch: that happens when the
// first TorchScript model loads, so a worker without TorchScript models
// pays nothing, and one without libtorch still starts.
func New(opts Options) (*Backend, error) {
	if opts.IntraOpThreads < 0 {
		return nil, fmt.Errorf("pytorch: intra-op thread count %d is negative", opts.IntraOpThreads)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Backend{opts: opts, log: opts.Logger.With("backend", Name)}, nil
}

// Name returns "pytorch".
func (b *Backend) Name() string { return Name }

// library loads the shim once; its error is the reason every TorchScript
// model of this worker is UNAVAILABLE.
func (b *Backend) library() (*lib, error) {
	b.once.Do(func() {
		path, err := library.Find(b.opts.LibraryPath)
		if err != nil {
			if b.opts.LibraryPath != "" {
				err = fmt.Errorf("the shim: %w", err) // the stat error names only the path
			}
			b.err = fmt.Errorf("pytorch: libtorch is not available: %w", err)
			return
		}
		if b.lib, b.err = openLibrary(path); b.err != nil {
			b.err = fmt.Errorf("pytorch: libtorch is not available: %w", b.err)
			return
		}
		b.log.Info("libtorch loaded", "shim", path, "version", b.lib.version)
	})
	return b.lib, b.err
}

// Version is the loaded libtorch's version (it loads it).
func (b *Backend) Version() (string, error) {
	l, err := b.library()
	if err != nil {
		return "", err
	}
	return l.version, nil
}

// Inspect fails: a TorchScript file does not declare its IO (see
// CheckDeclared, which the model manager calls instead).
func (b *Backend) Inspect(ctx context.Context, modelPath string) (inputs, outputs []backend.IO, err error) {
	return nil, nil, fmt.Errorf("%w: pytorch: model %s: %s", backend.ErrUnsupported, modelPath, errNoIO)
}

// CheckDeclared loads the model once and checks the config's inputs and
// outputs against forward()'s signature.
func (b *Backend) CheckDeclared(ctx context.Context, modelPath string, inputs, outputs []backend.IO) error {
	if err := b.checkUsable(ctx, modelPath); err != nil {
		return err
	}
	if err := checkDeclaredAny(inputs, outputs); err != nil {
		return fmt.Errorf("pytorch: model %s: %w", modelPath, err)
	}
	l, err := b.library()
	if err != nil {
		return err
	}
	m, err := l.load(modelPath, -1)
	if err != nil {
		return fmt.Errorf("pytorch: model %s: %w", modelPath, err)
	}
	defer m.close()
	if _, err := b.binding(m, inputs, outputs); err != nil {
		return fmt.Errorf("pytorch: model %s: %w", modelPath, err)
	}
	return nil
}

func (b *Backend) binding(m *module, inputs, outputs []backend.IO) (binding, error) {
	for _, io := range append(append([]backend.IO(nil), inputs...), outputs...) {
		// An unknown datatype ("") is left to repository.Validate, which
		// names the config field.
		if _, ok := codes[io.DataType]; !ok && io.DataType != "" {
			return binding{}, fmt.Errorf("%w: %q has datatype %s; libtorch serves %v", backend.ErrUnsupported, io.Name, io.DataType, DataTypes())
		}
	}
	sig, err := m.signature()
	if err != nil {
		return binding{}, err
	}
	return bind(sig, inputs, outputs)
}

func (b *Backend) checkUsable(ctx context.Context, modelPath string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pytorch: model %s: %w", modelPath, err)
	}
	if err := libsearch.IsFile(modelPath); err != nil {
		return fmt.Errorf("pytorch: model file: %w", err)
	}
	return nil
}

// GPUCount is how many CUDA devices libtorch sees: 0 where libtorch_cuda
// or a GPU is missing (the reason is logged).
func (b *Backend) GPUCount(ctx context.Context) (int, error) {
	l, err := b.library()
	if err != nil {
		return 0, err
	}
	n, why := l.cudaDevices()
	if n == 0 {
		b.log.Info("libtorch sees no GPU", "reason", why)
	}
	return n, nil
}

// NewInstance loads one instance of a TorchScript model, on the CPU or on
// GPU spec.GPU.
func (b *Backend) NewInstance(ctx context.Context, spec backend.InstanceSpec) (backend.Instance, error) {
	device := -1
	switch spec.Device {
	case "", "cpu":
	case "gpu":
		device = spec.GPU
	default:
		return nil, fmt.Errorf("%w: pytorch: model %q: device %q", backend.ErrUnsupported, spec.ModelName, spec.Device)
	}
	threads, err := b.opts.intraOpThreads(spec.Parameters, spec.Instances, runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, fmt.Errorf("pytorch: model %q: %w", spec.ModelName, err)
	}
	if err := b.checkUsable(ctx, spec.ModelPath); err != nil {
		return nil, err
	}
	l, err := b.library()
	if err != nil {
		return nil, err
	}
	if device >= 0 {
		if n, why := l.cudaDevices(); device >= n {
			return nil, fmt.Errorf("%w: pytorch: model %q: GPU %d: libtorch sees %d GPU(s): %s", backend.ErrUnsupported, spec.ModelName, device, n, why)
		}
	}
	m, err := l.load(spec.ModelPath, device)
	if err != nil {
		return nil, fmt.Errorf("pytorch: model %s: %w", spec.ModelPath, err)
	}
	bd, err := b.binding(m, spec.Inputs, spec.Outputs)
	if err != nil {
		m.close()
		return nil, fmt.Errorf("pytorch: model %s: %w", spec.ModelPath, err)
	}
	b.log.Debug("torchscript module loaded", "model", spec.ModelName, "version", spec.ModelVersion,
		"path", spec.ModelPath, "device", spec.Device, "intra_op_threads", threads)
	return newInstance(spec, m, bd, threads), nil
}

// intraOpThreads picks an instance's intra-op thread count: the model's
// parameter, else Options.IntraOpThreads, else with AutoThreads procs
// shared among the model's instances, else 0 (libtorch's default).
func (o Options) intraOpThreads(params map[string]string, instances, procs int) (int, error) {
	if s, ok := params[ParamIntraOpThreads]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("parameter %s: %q is not a thread count (a whole number, 0 for the default)", ParamIntraOpThreads, s)
		}
		return n, nil
	}
	if o.IntraOpThreads > 0 || !o.AutoThreads {
		return o.IntraOpThreads, nil
	}
	return max(1, procs/max(1, instances)), nil
}

// errClosed is returned by Execute after Close.
var errClosed = errors.New("instance is closed")
