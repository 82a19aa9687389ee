// Package onnxruntime is the backend that runs ONNX models on the CPU with
// ONNX Runtime, loaded at run time from libonnxruntime.so through
// github.com/yalue/onnxruntime_go.
package onnxruntime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/libsearch"
)

// Name is the backend's name as config.pbtxt's `backend` field spells it.
const Name = "onnxruntime"

// The config.pbtxt parameters that override Options per model, named as in
// Triton's onnxruntime backend.
const (
	ParamIntraOpThreads = "intra_op_thread_count"
	ParamInterOpThreads = "inter_op_thread_count"
)

// Options configures a Backend.
type Options struct {
	// LibraryPath is libonnxruntime.so's path; empty means FindLibrary's.
	LibraryPath string
	// IntraOpThreads and InterOpThreads size each session's thread pools;
	// 0 keeps ONNX Runtime's default.
	IntraOpThreads int
	InterOpThreads int
	// AutoThreads, where IntraOpThreads is 0, gives each instance of a model
	// an equal share of GOMAXPROCS for intra-op threads (at least one):
	// ONNX Runtime's default, one thread per core for every instance,
	// oversubscribes the cores as soon as a model has two instances.
	AutoThreads bool
	// Logger receives the backend's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Backend creates ONNX Runtime sessions. It is safe for concurrent use.
type Backend struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	instances int
	closed    bool
}

var _ backend.Backend = (*Backend)(nil)

// New loads ONNX Runtime (once per process) and returns a Backend. Call
// Close when done.
func New(opts Options) (*Backend, error) {
	if opts.IntraOpThreads < 0 || opts.InterOpThreads < 0 {
		return nil, fmt.Errorf("onnxruntime: thread counts must not be negative (intra-op %d, inter-op %d)",
			opts.IntraOpThreads, opts.InterOpThreads)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	path, err := library.Find(opts.LibraryPath)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	version, err := acquireEnv(path)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	opts.LibraryPath = path
	log := opts.Logger.With("backend", Name)
	log.Info("onnxruntime loaded", "library", path, "version", version)
	return &Backend{opts: opts, log: log}, nil
}

// Close releases the backend's share of the process-wide ONNX Runtime
// environment. Every instance must be closed first.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	if b.instances > 0 {
		return fmt.Errorf("onnxruntime: cannot close the backend while %d instances are open", b.instances)
	}
	b.closed = true
	return releaseEnv()
}

// Name returns "onnxruntime".
func (b *Backend) Name() string { return Name }

// Inspect returns the inputs and outputs the model file declares.
func (b *Backend) Inspect(ctx context.Context, modelPath string) (inputs, outputs []backend.IO, err error) {
	ins, outs, err := b.inspect(ctx, modelPath)
	if err != nil {
		return nil, nil, err
	}
	return ios(ins), ios(outs), nil
}

func ios(ports []port) []backend.IO {
	out := make([]backend.IO, len(ports))
	for i, p := range ports {
		out[i] = p.IO
	}
	return out
}

func (b *Backend) inspect(ctx context.Context, modelPath string) (inputs, outputs []port, err error) {
	if err := b.checkUsable(ctx, modelPath); err != nil {
		return nil, nil, err
	}
	// A one-thread session is enough to read the model's signature.
	so, err := newSessionOptions(1, 1)
	if err != nil {
		return nil, nil, fmt.Errorf("onnxruntime: model %s: %w", modelPath, err)
	}
	defer so.Destroy()
	inInfo, outInfo, err := ort.GetInputOutputInfoWithOptions(modelPath, so)
	if err != nil {
		return nil, nil, fmt.Errorf("onnxruntime: model %s: %w", modelPath, err)
	}
	if inputs, err = portsFromInfo("input", inInfo); err != nil {
		return nil, nil, fmt.Errorf("onnxruntime: model %s: %w", modelPath, err)
	}
	if outputs, err = portsFromInfo("output", outInfo); err != nil {
		return nil, nil, fmt.Errorf("onnxruntime: model %s: %w", modelPath, err)
	}
	return inputs, outputs, nil
}

// checkUsable gives clear errors for what ORT would report vaguely or not at
// all: a closed backend, a done context, a missing file.
func (b *Backend) checkUsable(ctx context.Context, modelPath string) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return errors.New("onnxruntime: backend is closed")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("onnxruntime: model %s: %w", modelPath, err)
	}
	if err := libsearch.IsFile(modelPath); err != nil {
		return fmt.Errorf("onnxruntime: model file: %w", err)
	}
	return nil
}

// NewInstance creates one ORT session for the model, on the CPU.
func (b *Backend) NewInstance(ctx context.Context, spec backend.InstanceSpec) (backend.Instance, error) {
	if spec.Device != "" && spec.Device != "cpu" {
		return nil, fmt.Errorf("%w: onnxruntime: model %q: device %q (this backend runs on the cpu only)",
			backend.ErrUnsupported, spec.ModelName, spec.Device)
	}
	intra, err := b.opts.intraOpThreads(spec.Parameters, spec.Instances, runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: model %q: %w", spec.ModelName, err)
	}
	inter, err := threadCount(spec.Parameters, ParamInterOpThreads, b.opts.InterOpThreads)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: model %q: %w", spec.ModelName, err)
	}
	inputs, outputs, err := b.inspect(ctx, spec.ModelPath)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(checkRanks("input", inputs), checkRanks("output", outputs)); err != nil {
		return nil, fmt.Errorf("onnxruntime: model %s: %w", spec.ModelPath, err)
	}
	so, err := newSessionOptions(intra, inter)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: model %s: %w", spec.ModelPath, err)
	}
	defer so.Destroy()
	session, err := ort.NewDynamicAdvancedSession(spec.ModelPath, names(inputs), names(outputs), so)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: model %s: %w", spec.ModelPath, err)
	}
	runOpts, err := ort.NewRunOptions()
	if err != nil {
		session.Destroy()
		return nil, fmt.Errorf("onnxruntime: model %s: creating run options: %w", spec.ModelPath, err)
	}
	b.mu.Lock()
	b.instances++
	b.mu.Unlock()
	b.log.Debug("onnxruntime session created", "model", spec.ModelName, "version", spec.ModelVersion,
		"path", spec.ModelPath, "intra_op_threads", intra, "inter_op_threads", inter)
	return newInstance(b, spec, session, runOpts, inputs, outputs), nil
}

func (b *Backend) instanceClosed() {
	b.mu.Lock()
	b.instances--
	b.mu.Unlock()
}

// checkRanks rejects scalar (rank 0) tensors: onnxruntime_go v1.27.0 can
// neither create nor return them, and a Run it fails to convert leaks the
// outputs after the failing one.
func checkRanks(kind string, ports []port) error {
	for _, p := range ports {
		if len(p.Shape) == 0 {
			return fmt.Errorf("%w: %s %q is a scalar (rank 0) tensor", backend.ErrUnsupported, kind, p.Name)
		}
	}
	return nil
}

func names(ports []port) []string {
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = p.Name
	}
	return out
}

// intraOpThreads picks a session's intra-op thread count: the model's
// parameter, else Options.IntraOpThreads, else with AutoThreads procs shared
// among the model's instances, else 0 (ONNX Runtime's default).
func (o Options) intraOpThreads(params map[string]string, instances, procs int) (int, error) {
	if _, ok := params[ParamIntraOpThreads]; ok || o.IntraOpThreads > 0 || !o.AutoThreads {
		return threadCount(params, ParamIntraOpThreads, o.IntraOpThreads)
	}
	return max(1, procs/max(1, instances)), nil
}

func threadCount(params map[string]string, key string, fallback int) (int, error) {
	s, ok := params[key]
	if !ok {
		return fallback, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("parameter %s: %q is not a thread count (a whole number, 0 for the default)", key, s)
	}
	return n, nil
}

func newSessionOptions(intra, inter int) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	if intra > 0 {
		if err := so.SetIntraOpNumThreads(intra); err != nil {
			so.Destroy()
			return nil, fmt.Errorf("setting %d intra-op threads: %w", intra, err)
		}
	}
	if inter > 0 {
		if err := so.SetInterOpNumThreads(inter); err != nil {
			so.Destroy()
			return nil, fmt.Errorf("setting %d inter-op threads: %w", inter, err)
		}
	}
	return so, nil
}
