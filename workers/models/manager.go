// Package models runs a Triton model repository: it loads, reloads and
// unloads model versions (control modes none, explicit and poll), keeps
// their schedulers and statistics, checks each inference request against the
// model's configuration, and implements infer.Service for the front ends.
package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/helixflow/helixflow/internal/wire"
	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/cache"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/stats"
)

// ControlMode is Triton's --model-control-mode.
type ControlMode string

// Control modes.
const (
	ModeNone     ControlMode = "none"
	ModeExplicit ControlMode = "explicit"
	ModePoll     ControlMode = "poll"
)

// ParseControlMode validates a --model-control-mode value.
func ParseControlMode(s string) (ControlMode, error) {
	switch m := ControlMode(s); m {
	case ModeNone, ModeExplicit, ModePoll:
		return m, nil
	}
	return "", fmt.Errorf("unknown model control mode %q (want none, explicit or poll)", s)
}

// Config configures a Manager.
type Config struct {
	Repository  string
	ControlMode ControlMode
	// StartupModels are the models loaded at start in explicit mode; "*"
	// loads all of them (Triton's --load-model).
	StartupModels []string
	// PollInterval is how often poll mode rescans the repository.
	PollInterval time.Duration
	// Backends by the name config.pbtxt's `backend` field uses.
	Backends map[string]backend.Backend
	// Metrics may be nil.
	Metrics *stats.Metrics
	// StrictReadiness makes the server ready only while every model that
	// should be loaded is ready (Triton's --strict-readiness).
	StrictReadiness bool
	// ResponseCache, when set, caches the answers of the models whose
	// config enables response_cache (--response-cache-bytes); nil: off.
	ResponseCache *cache.Cache
	// DrainTimeout bounds how long an unload waits for in-flight requests.
	DrainTimeout  time.Duration
	ServerName    string
	ServerVersion string
	Logger        *slog.Logger
}

// Manager owns the loaded models. It implements infer.Service.
type Manager struct {
	cfg Config
	log *slog.Logger

	// opMu serializes loads, unloads and polls; mu guards models for the
	// request path, which only ever takes it for reading.
	opMu   sync.Mutex
	mu     sync.RWMutex
	models map[string]*model
	ready  bool
	// loading names the models whose load is under way (under opMu), so
	// that ensembles that include each other fail instead of recursing.
	loading map[string]bool
}

// model is one model name and the versions of it that serve.
type model struct {
	name     string
	versions map[int64]*version
	// reason is why the last load failed ("" after a success); state is
	// what the index reports when no version serves.
	state       infer.ModelState
	reason      string
	fingerprint string
	// wanted: the model should be loaded (for strict readiness).
	wanted bool
}

var _ infer.Service = (*Manager)(nil)

// New checks cfg and returns a Manager that serves nothing until Start.
func New(cfg Config) (*Manager, error) {
	if cfg.Repository == "" {
		return nil, errors.New("no model repository given")
	}
	if _, err := repository.ModelNames(cfg.Repository); err != nil {
		return nil, err
	}
	if _, err := ParseControlMode(string(cfg.ControlMode)); err != nil {
		return nil, err
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 15 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "helix-worker"
	}
	return &Manager{cfg: cfg, log: cfg.Logger, models: make(map[string]*model), loading: make(map[string]bool)}, nil
}

// Start loads the models the control mode asks for and, in poll mode, keeps
// polling the repository until ctx ends. A model that fails to load is
// reported and left UNAVAILABLE; the others serve.
func (m *Manager) Start(ctx context.Context) error {
	names, err := repository.ModelNames(m.cfg.Repository)
	if err != nil {
		return err
	}
	var load []string
	switch {
	case m.cfg.ControlMode != ModeExplicit || slices.Contains(m.cfg.StartupModels, "*"):
		load = names
	default:
		load = m.cfg.StartupModels
	}
	for _, name := range m.loadOrder(load) {
		if err := m.load(ctx, name, infer.LoadOptions{}); err != nil {
			m.log.Error("model failed to load", "model", name, "error", err)
		}
	}
	m.mu.Lock()
	m.ready = true
	m.mu.Unlock()
	if m.cfg.ControlMode == ModePoll {
		go m.poll(ctx)
	}
	return nil
}

// Close unloads every model, waiting for in-flight requests.
func (m *Manager) Close(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	// Ensembles go first, so that their in-flight requests finish their
	// steps on the models that are still serving.
	var errs []error
	for _, ensembles := range []bool{true, false} {
		m.mu.Lock()
		m.ready = false
		var retired []*version
		for _, mod := range m.models {
			if len(mod.versions) == 0 || isEnsemble(mod) != ensembles {
				continue
			}
			for _, v := range mod.versions {
				retired = append(retired, v)
			}
			mod.versions = nil
		}
		m.mu.Unlock()
		errs = append(errs, m.retire(ctx, retired))
	}
	return errors.Join(errs...)
}

func (m *Manager) poll(ctx context.Context) {
	t := time.NewTicker(m.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.pollOnce(ctx)
		}
	}
}

// pollOnce loads new and changed models and unloads removed ones.
func (m *Manager) pollOnce(ctx context.Context) {
	names, err := repository.ModelNames(m.cfg.Repository)
	if err != nil {
		m.log.Error("poll model repository", "error", err)
		return
	}
	m.mu.RLock()
	known := maps.Clone(m.models)
	m.mu.RUnlock()
	loaded := false
	for _, name := range m.loadOrder(names) {
		fp, err := repository.Fingerprint(filepath.Join(m.cfg.Repository, name))
		if err != nil {
			m.log.Warn("poll model", "model", name, "error", err)
			continue
		}
		// An ensemble that does not serve is retried once other models
		// loaded: its step models may be among them.
		if mod, ok := known[name]; ok && mod.fingerprint == fp && !(loaded && m.idleEnsemble(name)) {
			continue
		}
		m.log.Info("model changed on disk, loading", "model", name)
		if err := m.load(ctx, name, infer.LoadOptions{}); err != nil {
			m.log.Error("model failed to load", "model", name, "error", err)
		} else {
			loaded = true
		}
	}
	for name, mod := range known {
		if !slices.Contains(names, name) && len(mod.versions) > 0 {
			m.log.Info("model removed from disk, unloading", "model", name)
			if err := m.unload(ctx, name); err != nil {
				m.log.Error("unload model", "model", name, "error", err)
			}
		}
	}
}

// LoadModel loads or reloads a model (explicit mode).
func (m *Manager) LoadModel(ctx context.Context, name string, opts infer.LoadOptions) error {
	if m.cfg.ControlMode != ModeExplicit {
		return infer.Errorf(infer.CodeUnavailable, "explicit model load / unload is not allowed if model control mode is %s", m.cfg.ControlMode)
	}
	if len(opts.Files) > 0 {
		return infer.Errorf(infer.CodeUnimplemented, "load of model '%s': file overrides are not supported; put the files in the model repository", name)
	}
	return m.load(ctx, name, opts)
}

// load loads or reloads a model. New versions start serving before the
// versions they replace stop, and those finish their in-flight requests
// first; when a reload fails, the versions already serving keep serving.
func (m *Manager) load(ctx context.Context, name string, opts infer.LoadOptions) error {
	if err := wire.CheckModelName(name); err != nil {
		return infer.Errorf(infer.CodeInvalidArgument, "model %q: %v", name, err)
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	return m.loadLocked(ctx, name, opts)
}

// loadLocked is load for a caller that holds m.opMu (an ensemble loading
// its step models).
func (m *Manager) loadLocked(ctx context.Context, name string, opts infer.LoadOptions) error {
	if err := wire.CheckModelName(name); err != nil {
		return infer.Errorf(infer.CodeInvalidArgument, "model %q: %v", name, err)
	}
	m.loading[name] = true
	defer delete(m.loading, name)
	dir := filepath.Join(m.cfg.Repository, name)
	fp, _ := repository.Fingerprint(dir)
	loaded, cfg, err := m.loadVersions(ctx, name, dir, opts)

	m.mu.Lock()
	mod := m.models[name]
	if mod == nil {
		mod = &model{name: name}
		m.models[name] = mod
	}
	mod.wanted = true
	mod.fingerprint = fp
	if err != nil {
		mod.reason = err.Error()
		if len(mod.versions) == 0 {
			mod.state = infer.StateUnavailable
		}
		m.mu.Unlock()
		return infer.Errorf(codeFor(err), "failed to load '%s': %v", name, err)
	}
	old := mod.versions
	mod.versions = loaded
	mod.state, mod.reason = infer.StateReady, ""
	m.mu.Unlock()

	m.log.Info("model loaded", "model", name, "versions", slices.Sorted(maps.Keys(loaded)),
		"max_batch_size", cfg.MaxBatchSize, "instances", repository.Instances(cfg))
	return m.retire(ctx, slices.Collect(maps.Values(old)))
}

// UnloadModel unloads every version of a model (explicit mode); with
// unloadDependents, an ensemble's step models too (Triton's
// unload_dependents).
func (m *Manager) UnloadModel(ctx context.Context, name string, unloadDependents bool) error {
	if m.cfg.ControlMode != ModeExplicit {
		return infer.Errorf(infer.CodeUnavailable, "explicit model load / unload is not allowed if model control mode is %s", m.cfg.ControlMode)
	}
	m.mu.RLock()
	steps := m.stepModels(name)
	m.mu.RUnlock()
	if err := m.unload(ctx, name); err != nil {
		return err
	}
	if unloadDependents {
		return m.unloadDependents(ctx, steps, map[string]bool{name: true})
	}
	return nil
}

func (m *Manager) unload(ctx context.Context, name string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	return m.unloadLocked(ctx, name, "unloaded")
}

// unloadLocked is unload for a caller that holds m.opMu. The ensembles
// that run the model are unloaded first, as Triton unloads them, so that
// their in-flight requests finish their steps.
func (m *Manager) unloadLocked(ctx context.Context, name, reason string) error {
	var errs []error
	for _, e := range m.ensemblesUsing(name) {
		errs = append(errs, m.unloadLocked(ctx, e, fmt.Sprintf("unloaded: its step model '%s' was unloaded", name)))
	}
	m.mu.Lock()
	mod := m.models[name]
	if mod == nil {
		m.mu.Unlock()
		if err := wire.CheckModelName(name); err != nil {
			return infer.Errorf(infer.CodeInvalidArgument, "model %q: %v", name, err)
		}
		// Unloading a model that is not loaded succeeds, as in Triton.
		return nil
	}
	old := mod.versions
	mod.versions = nil
	mod.state, mod.reason, mod.wanted = infer.StateUnavailable, reason, false
	// A poll that finds the folder again loads it, changed or not.
	mod.fingerprint = ""
	m.mu.Unlock()
	m.log.Info("model unloaded", "model", name, "reason", reason)
	return errors.Join(append(errs, m.retire(ctx, slices.Collect(maps.Values(old))))...)
}

// retire waits for the versions' in-flight requests, then stops them.
func (m *Manager) retire(ctx context.Context, versions []*version) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.DrainTimeout)
	defer cancel()
	var errs []error
	for _, v := range versions {
		if err := v.close(ctx); err != nil {
			errs = append(errs, err)
		}
		v.dropCache()
	}
	return errors.Join(errs...)
}

// loadVersions builds every version the policy selects, all or nothing.
func (m *Manager) loadVersions(ctx context.Context, name, dir string, opts infer.LoadOptions) (map[int64]*version, *pb.ModelConfig, error) {
	cfg, err := readConfig(dir, opts)
	if err != nil {
		return nil, nil, err
	}
	if err := repository.Normalize(cfg, name); err != nil {
		return nil, nil, err
	}
	if cfg.Platform == repository.PlatformEnsemble {
		return m.loadEnsemble(ctx, name, dir, cfg)
	}
	be, ok := m.cfg.Backends[cfg.Backend]
	if !ok {
		return nil, nil, fmt.Errorf("%w: backend %q is not available in this worker", repository.ErrInvalidConfig, cfg.Backend)
	}
	selected, err := selectVersions(dir, cfg, "no version is available")
	if err != nil {
		return nil, nil, err
	}
	// The newest version's file completes the config; every version must
	// then agree with it.
	// Each version's file is read once; the newest one completes the
	// config, and every version must then agree with it.
	type modelIO struct{ inputs, outputs []backend.IO }
	ios := make(map[int64]modelIO, len(selected))
	for _, n := range selected {
		if d, ok := be.(backend.DeclaredIO); ok {
			// The file does not say its IO (TorchScript): the config's is
			// the model's, once the backend has checked it against the file.
			inputs, outputs := repository.DeclaredIO(cfg)
			if err := d.CheckDeclared(ctx, modelFile(dir, n, cfg), inputs, outputs); err != nil {
				return nil, nil, fmt.Errorf("version %d: %w", n, err)
			}
			ios[n] = modelIO{inputs, outputs}
			continue
		}
		inputs, outputs, err := be.Inspect(ctx, modelFile(dir, n, cfg))
		if err != nil {
			return nil, nil, fmt.Errorf("version %d: %w", n, err)
		}
		ios[n] = modelIO{inputs, outputs}
	}
	newest := ios[selected[len(selected)-1]]
	repository.AutoComplete(cfg, newest.inputs, newest.outputs)
	for _, n := range selected {
		if err := repository.Validate(cfg, ios[n].inputs, ios[n].outputs); err != nil {
			return nil, nil, fmt.Errorf("version %d: %w", n, err)
		}
	}
	loaded := make(map[int64]*version, len(selected))
	for _, n := range selected {
		v, err := m.newVersion(ctx, be, name, dir, n, cfg, ios[n].inputs, ios[n].outputs)
		if err != nil {
			for _, l := range loaded {
				_ = l.close(ctx)
			}
			return nil, nil, fmt.Errorf("version %d: %w", n, err)
		}
		loaded[n] = v
	}
	return loaded, cfg, nil
}

func (m *Manager) newVersion(ctx context.Context, be backend.Backend, name, dir string, n int64, cfg *pb.ModelConfig, inputs, outputs []backend.IO) (*version, error) {
	path := modelFile(dir, n, cfg)
	spec := backend.InstanceSpec{
		ModelName: name, ModelVersion: n, ModelPath: path,
		Inputs: inputs, Outputs: outputs, Device: "cpu",
		Parameters: parameters(cfg), Instances: repository.Instances(cfg),
		MaxBatchSize: int(cfg.MaxBatchSize),
	}
	places, err := placements(ctx, be, cfg)
	if err != nil {
		return nil, err
	}
	var instances []backend.Instance
	for _, gpu := range places {
		s := spec
		if gpu >= 0 {
			s.Device, s.GPU = "gpu", gpu
		}
		inst, err := be.NewInstance(ctx, s)
		if err != nil {
			for _, i := range instances {
				_ = i.Close()
			}
			return nil, err
		}
		instances = append(instances, inst)
	}
	if err := checkDecoupled(cfg, instances); err != nil {
		for _, i := range instances {
			_ = i.Close()
		}
		return nil, err
	}
	// Warm-up runs before the version is in the model table: the model is
	// not READY until its samples ran (Triton's model_warmup).
	start := time.Now()
	if runs, err := warmUp(ctx, cfg, dir, inputs, instances); err != nil {
		for _, i := range instances {
			_ = i.Close()
		}
		return nil, err
	} else if runs > 0 {
		m.log.Info("model warmed up", "model", name, "version", n, "samples", len(cfg.ModelWarmup), "executions", runs, "took", time.Since(start))
	}
	rec := stats.NewRecorder(name, n, m.cfg.Metrics)
	var sched runner
	if cfg.GetSequenceBatching() != nil {
		sched, err = newSequenceRunner(cfg, dir, n, instances, rec, m.log)
	} else {
		sched, err = scheduler.New(schedulerConfig(cfg, n, instances, rec, m.log))
	}
	if err != nil {
		for _, i := range instances {
			_ = i.Close()
		}
		return nil, err
	}
	v, err := newVersion(n, cfg, sched, rec)
	if err == nil {
		v.labels, err = readLabels(dir, cfg)
	}
	if err != nil {
		_ = sched.Close(ctx)
		return nil, err
	}
	m.useCache(v)
	return v, nil
}

// placements lists where each instance goes: -1 for the CPU, else a GPU
// id. A KIND_GPU group puts count instances on each GPU it names, or on
// every GPU the backend sees when it names none (as Triton does).
func placements(ctx context.Context, be backend.Backend, cfg *pb.ModelConfig) ([]int, error) {
	var out []int
	for i, g := range cfg.InstanceGroup {
		if g.Kind != pb.ModelInstanceGroup_KIND_GPU {
			for range g.Count {
				out = append(out, -1)
			}
			continue
		}
		gpus := g.Gpus
		if len(gpus) == 0 {
			counter, ok := be.(backend.GPUCounter)
			if !ok {
				return nil, fmt.Errorf("%w: instance_group[%d] is KIND_GPU but backend %q runs on no GPU", repository.ErrInvalidConfig, i, cfg.Backend)
			}
			n, err := counter.GPUCount(ctx)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				return nil, fmt.Errorf("instance_group[%d] is KIND_GPU but this worker sees no GPU", i)
			}
			for id := range n {
				gpus = append(gpus, int32(id))
			}
		}
		for _, id := range gpus {
			for range g.Count {
				out = append(out, int(id))
			}
		}
	}
	return out, nil
}

// selectVersions lists the version folders of dir that cfg's version
// policy selects; none is a NOT_FOUND load error saying none.
func selectVersions(dir string, cfg *pb.ModelConfig, none string) ([]int64, error) {
	available, err := repository.Versions(dir)
	if err != nil {
		return nil, notFoundError{err.Error()}
	}
	selected, err := repository.SelectVersions(available, cfg.VersionPolicy)
	if err != nil {
		return nil, err
	}
	if len(selected) == 0 {
		return nil, notFoundError{none}
	}
	return selected, nil
}

func modelFile(dir string, v int64, cfg *pb.ModelConfig) string {
	return filepath.Join(dir, strconv.FormatInt(v, 10), cfg.DefaultModelFilename)
}

func parameters(cfg *pb.ModelConfig) map[string]string {
	out := make(map[string]string, len(cfg.Parameters))
	for k, v := range cfg.Parameters {
		out[k] = v.GetStringValue()
	}
	return out
}

func schedulerConfig(cfg *pb.ModelConfig, n int64, instances []backend.Instance, obs scheduler.Observer, log *slog.Logger) scheduler.Config {
	sc := scheduler.Config{
		Model:        cfg.Name,
		Version:      n,
		MaxBatchSize: int(cfg.MaxBatchSize),
		Instances:    instances,
		Observer:     obs,
		Logger:       log,
	}
	db := cfg.GetDynamicBatching()
	if db == nil {
		return sc
	}
	sc.Dynamic = &scheduler.DynamicBatching{
		MaxQueueDelay:    time.Duration(db.MaxQueueDelayMicroseconds) * time.Microsecond,
		PreserveOrdering: db.PreserveOrdering,
	}
	for _, p := range db.PreferredBatchSize {
		sc.Dynamic.PreferredBatchSizes = append(sc.Dynamic.PreferredBatchSizes, int(p))
	}
	if q := db.DefaultQueuePolicy; q != nil {
		sc.MaxQueueSize = int(q.MaxQueueSize)
		sc.DefaultTimeout = time.Duration(q.DefaultTimeoutMicroseconds) * time.Microsecond
		sc.AllowTimeoutOverride = q.AllowTimeoutOverride
		if q.TimeoutAction == pb.ModelQueuePolicy_DELAY {
			sc.TimeoutAction = scheduler.Delay
		}
	}
	return sc
}

// notFoundError is a load error about something missing on disk.
type notFoundError struct{ msg string }

func (e notFoundError) Error() string { return e.msg }

func codeFor(err error) infer.Code {
	// An ensemble's failed step load keeps that load's code.
	var ie *infer.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	switch {
	case errors.As(err, new(notFoundError)):
		return infer.CodeNotFound
	case errors.Is(err, repository.ErrInvalidConfig), errors.Is(err, backend.ErrUnsupported):
		return infer.CodeInvalidArgument
	}
	return infer.CodeInternal
}
