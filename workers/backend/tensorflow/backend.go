// Package tensorflow is the backend that runs TensorFlow SavedModels
// (Triton's tensorflow_savedmodel platform, model.savedmodel folders) on the
// CPU through TensorFlow's C API (TF_LoadSessionFromSavedModel,
// TF_SessionRun). The library, libtensorflow_cc.so.2 of the pinned
// tensorflow-cpu wheel, is opened with dlopen on first use, so the worker
// builds without TensorFlow and runs where it is missing: then this
// backend's models fail to load with the reason (UNAVAILABLE), the others
// serve.
//
// As in Triton, the meta graph tagged "serve" and its signature
// "serving_default" are served; config names are the signature's keys.
// Inspect reads that signature from saved_model.pb (no session needed);
// NewInstance loads the SavedModel and maps the config's names to graph
// tensors through the MetaGraphDef the loader returns.
package tensorflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/helixflow/helixflow/workers/backend"
)

// Name is the backend's name as config.pbtxt's `backend` field spells it.
const Name = "tensorflow"

// SavedModelFile is the SavedModel's protobuf inside its folder.
const SavedModelFile = "saved_model.pb"

// maxSavedModelBytes bounds saved_model.pb (a graph with its constants;
// protobuf's own limit is 2 GiB).
const maxSavedModelBytes = 2 << 30

// The config.pbtxt parameters that override Options per model (the names
// the onnxruntime backend uses).
const (
	ParamIntraOpThreads = "intra_op_thread_count"
	ParamInterOpThreads = "inter_op_thread_count"
)

// Options configures a Backend.
type Options struct {
	// LibraryPath is libtensorflow_cc.so.2's path; empty means FindLibrary's.
	LibraryPath string
	// IntraOpThreads sizes each session's intra-op pool; 0 gives each
	// instance of a model an equal share of GOMAXPROCS (at least one), so
	// that instances do not oversubscribe the cores.
	IntraOpThreads int
	// InterOpThreads sizes each session's inter-op pool; 0 means 1 (the
	// models served are mostly chains of ops).
	InterOpThreads int
	// Logger receives the backend's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Backend creates TensorFlow sessions. It is safe for concurrent use.
type Backend struct {
	opts Options
	log  *slog.Logger
}

var _ backend.Backend = (*Backend)(nil)

// New returns a Backend; the library is opened on first use, so a missing
// library is an error of each model's load, not of the worker's start.
func New(opts Options) (*Backend, error) {
	if opts.IntraOpThreads < 0 || opts.InterOpThreads < 0 {
		return nil, fmt.Errorf("tensorflow: thread counts must not be negative (intra-op %d, inter-op %d)",
			opts.IntraOpThreads, opts.InterOpThreads)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Backend{opts: opts, log: opts.Logger.With("backend", Name)}, nil
}

// Name returns "tensorflow".
func (b *Backend) Name() string { return Name }

// Library opens TensorFlow (once per process) and returns its path and
// version; the error says why it cannot be had.
func (b *Backend) Library() (path, version string, err error) {
	lib.mu.Lock()
	first := lib.path == ""
	lib.mu.Unlock()
	path, version, err = openLibrary(b.opts.LibraryPath)
	if err != nil {
		return "", "", fmt.Errorf("tensorflow: %w", err)
	}
	if first {
		b.log.Info("tensorflow loaded", "library", path, "version", version)
	}
	return path, version, nil
}

// Inspect returns the inputs and outputs of the SavedModel's serving
// signature, read from modelPath/saved_model.pb.
func (b *Backend) Inspect(ctx context.Context, modelPath string) (inputs, outputs []backend.IO, err error) {
	if _, _, err := b.Library(); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("tensorflow: model %s: %w", modelPath, err)
	}
	data, err := readSavedModel(modelPath)
	if err != nil {
		return nil, nil, err
	}
	metaGraph, err := findMetaGraph(data, ServeTag)
	if errors.Is(err, errMalformed) {
		return nil, nil, fmt.Errorf("tensorflow: model %s: %s is not a SavedModel: %w", modelPath, SavedModelFile, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tensorflow: model %s: %w", modelPath, err)
	}
	sig, err := parseSignature(metaGraph, DefaultSignature)
	if err != nil {
		return nil, nil, fmt.Errorf("tensorflow: model %s: %w", modelPath, err)
	}
	return sigIOs(modelPath, sig)
}

func sigIOs(modelPath string, sig signature) (inputs, outputs []backend.IO, err error) {
	if inputs, err = ios("input", sig.Inputs); err != nil {
		return nil, nil, fmt.Errorf("tensorflow: model %s: signature %q: %w", modelPath, DefaultSignature, err)
	}
	if outputs, err = ios("output", sig.Outputs); err != nil {
		return nil, nil, fmt.Errorf("tensorflow: model %s: signature %q: %w", modelPath, DefaultSignature, err)
	}
	return inputs, outputs, nil
}

// readSavedModel reads dir/saved_model.pb with errors that say what is
// wrong with the folder.
func readSavedModel(dir string) ([]byte, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("tensorflow: SavedModel folder: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("tensorflow: %s is a file; a SavedModel is a folder holding %s and variables/", dir, SavedModelFile)
	}
	path := filepath.Join(dir, SavedModelFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tensorflow: SavedModel: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSavedModelBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tensorflow: read %s: %w", path, err)
	}
	if len(data) > maxSavedModelBytes {
		return nil, fmt.Errorf("tensorflow: %s is over %d bytes", path, maxSavedModelBytes)
	}
	return data, nil
}

// NewInstance loads the SavedModel into a new session on the CPU.
func (b *Backend) NewInstance(ctx context.Context, spec backend.InstanceSpec) (backend.Instance, error) {
	if spec.Device != "" && spec.Device != "cpu" {
		return nil, fmt.Errorf("%w: tensorflow: model %q: device %q (this backend runs on the cpu only)",
			backend.ErrUnsupported, spec.ModelName, spec.Device)
	}
	intra, err := threadCount(spec.Parameters, ParamIntraOpThreads, b.opts.IntraOpThreads)
	if err != nil {
		return nil, fmt.Errorf("tensorflow: model %q: %w", spec.ModelName, err)
	}
	if intra == 0 {
		intra = max(1, runtime.GOMAXPROCS(0)/max(1, spec.Instances))
	}
	inter, err := threadCount(spec.Parameters, ParamInterOpThreads, b.opts.InterOpThreads)
	if err != nil {
		return nil, fmt.Errorf("tensorflow: model %q: %w", spec.ModelName, err)
	}
	if inter == 0 {
		inter = 1
	}
	if _, _, err := b.Library(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tensorflow: model %s: %w", spec.ModelPath, err)
	}
	// The loader's own errors for a missing folder are vaguer than these.
	if _, err := readSavedModel(spec.ModelPath); err != nil {
		return nil, err
	}
	sess, metaGraph, err := loadSavedModel(spec.ModelPath, ServeTag, sessionConfig(intra, inter))
	if err != nil {
		return nil, fmt.Errorf("tensorflow: loading SavedModel %s: %w", spec.ModelPath, err)
	}
	inst, err := newInstance(spec, sess, metaGraph)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("tensorflow: model %s: %w", spec.ModelPath, err), sess.close())
	}
	b.log.Debug("tensorflow session created", "model", spec.ModelName, "version", spec.ModelVersion,
		"intra_op_threads", intra, "inter_op_threads", inter)
	return inst, nil
}

func threadCount(params map[string]string, key string, def int) (int, error) {
	s, ok := params[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("parameter %s = %q: want a count of threads (0 or more)", key, s)
	}
	return n, nil
}

// sessionConfig is a serialized ConfigProto (tensorflow/core/protobuf/
// config.proto) with per-session thread pools of the given sizes: without
// use_per_session_threads every session would share the pools the first
// one sized.
func sessionConfig(intra, inter int) []byte {
	const (
		intraOpParallelismThreads = 2
		interOpParallelismThreads = 5
		usePerSessionThreads      = 9
	)
	var b []byte
	b = protowire.AppendTag(b, intraOpParallelismThreads, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(intra))
	b = protowire.AppendTag(b, interOpParallelismThreads, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(inter))
	b = protowire.AppendTag(b, usePerSessionThreads, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	return b
}
