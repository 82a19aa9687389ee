package models

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/ensemble"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/stats"
)

// loadEnsemble builds the versions of a model with platform "ensemble": no
// backend and no model file, numeric version folders as Triton wants them
// (they may be empty), and the IO the config declares. Its step models
// must serve; in explicit mode loading an ensemble loads the step models
// that do not (as Triton does). The caller holds m.opMu.
func (m *Manager) loadEnsemble(ctx context.Context, name, dir string, cfg *pb.ModelConfig) (map[int64]*version, *pb.ModelConfig, error) {
	// Normalize gives every model a default file name; an ensemble has none.
	cfg.DefaultModelFilename = ""
	selected, err := selectVersions(dir, cfg, "no version is available (an ensemble needs a numeric version folder, which may be empty)")
	if err != nil {
		return nil, nil, err
	}
	if m.cfg.ControlMode == ModeExplicit {
		if err := m.loadSteps(ctx, cfg); err != nil {
			return nil, nil, err
		}
	}
	plan, err := ensemble.New(cfg, func(model string, ver int64) (*pb.ModelConfig, error) {
		m.mu.RLock()
		defer m.mu.RUnlock()
		return m.stepConfig(model, ver)
	})
	if err != nil {
		return nil, nil, err
	}
	loaded := make(map[int64]*version, len(selected))
	for _, n := range selected {
		rec := stats.NewRecorder(name, n, m.cfg.Metrics)
		v, err := newVersion(n, cfg, ensemble.NewRunner(plan, m, rec), rec)
		if err == nil {
			v.labels, err = readLabels(dir, cfg)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("version %d: %w", n, err)
		}
		loaded[n] = v
	}
	return loaded, cfg, nil
}

// loadSteps loads the ensemble's step models that do not serve the
// version a step asks for. A failure names the step.
func (m *Manager) loadSteps(ctx context.Context, cfg *pb.ModelConfig) error {
	for i, s := range cfg.GetEnsembleScheduling().GetStep() {
		m.mu.RLock()
		_, err := m.stepConfig(s.ModelName, s.ModelVersion)
		m.mu.RUnlock()
		if err == nil {
			continue
		}
		if m.loading[s.ModelName] {
			return fmt.Errorf("%w: ensemble '%s' step %d ('%s'): model '%s' is being loaded already (ensembles that include each other)",
				repository.ErrInvalidConfig, cfg.Name, i, s.ModelName, s.ModelName)
		}
		if st, err := os.Stat(filepath.Join(m.cfg.Repository, s.ModelName)); err != nil || !st.IsDir() {
			return notFoundError{fmt.Sprintf("ensemble '%s' step %d ('%s'): model '%s' is not in the model repository",
				cfg.Name, i, s.ModelName, s.ModelName)}
		}
		m.log.Info("loading an ensemble's step model", "ensemble", cfg.Name, "step", i, "model", s.ModelName)
		if err := m.loadLocked(ctx, s.ModelName, infer.LoadOptions{}); err != nil {
			return fmt.Errorf("ensemble '%s' step %d ('%s'): %w", cfg.Name, i, s.ModelName, err)
		}
	}
	return nil
}

// stepConfig is the config of the version of a model that an ensemble
// step asks for (ensemble.Latest: the highest serving one). The caller
// holds m.mu.
func (m *Manager) stepConfig(name string, ver int64) (*pb.ModelConfig, error) {
	mod := m.models[name]
	if mod == nil || len(mod.versions) == 0 {
		why := ""
		if mod != nil && mod.reason != "" {
			why = ": " + mod.reason
		}
		return nil, notFoundError{fmt.Sprintf("model '%s' is not loaded%s", name, why)}
	}
	if ver == ensemble.Latest {
		return mod.versions[slices.Max(slices.Collect(maps.Keys(mod.versions)))].config, nil
	}
	v, ok := mod.versions[ver]
	if !ok {
		return nil, notFoundError{fmt.Sprintf("model '%s' version %d is not loaded (loaded: %v)", name, ver, slices.Sorted(maps.Keys(mod.versions)))}
	}
	return v.config, nil
}

// stepModels lists the models the loaded versions of an ensemble run
// (none for other models). The caller holds m.mu.
func (m *Manager) stepModels(name string) []string {
	var out []string
	mod := m.models[name]
	if mod == nil {
		return nil
	}
	for _, v := range mod.versions {
		for _, s := range ensemble.Models(v.config) {
			if !slices.Contains(out, s.Name) {
				out = append(out, s.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// loadOrder puts ensembles after the models they run (none and poll mode
// load every model; an ensemble loads only once its steps serve).
// Ensembles of ensembles come after the ensembles they include.
func (m *Manager) loadOrder(names []string) []string {
	steps := make(map[string][]string) // ensemble -> its step models
	var plain []string
	for _, name := range names {
		cfg, err := repository.ReadConfig(filepath.Join(m.cfg.Repository, name))
		if err != nil || cfg.Platform != repository.PlatformEnsemble {
			plain = append(plain, name)
			continue
		}
		for _, s := range ensemble.Models(cfg) {
			steps[name] = append(steps[name], s.Name)
		}
	}
	out := plain
	placed := make(map[string]bool)
	var place func(name string, depth int)
	place = func(name string, depth int) {
		if placed[name] || depth > len(steps) {
			return // placed, or a cycle: its load reports it
		}
		for _, s := range steps[name] {
			if _, isEnsemble := steps[s]; isEnsemble {
				place(s, depth+1)
			}
		}
		if !placed[name] {
			placed[name] = true
			out = append(out, name)
		}
	}
	for _, name := range names {
		if _, ok := steps[name]; ok {
			place(name, 0)
		}
	}
	return out
}

// ensemblesUsing lists the loaded ensembles that have a step running
// model name.
func (m *Manager) ensemblesUsing(name string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []string
	for other := range m.models {
		if other != name && slices.Contains(m.stepModels(other), name) {
			out = append(out, other)
		}
	}
	slices.Sort(out)
	return out
}

// unloadDependents unloads the step models of an ensemble that was just
// unloaded (Triton's unload_dependents), recursively for nested ensembles;
// a step model that another loaded ensemble still runs stays, as in Triton.
func (m *Manager) unloadDependents(ctx context.Context, steps []string, seen map[string]bool) error {
	for _, s := range steps {
		if seen[s] || len(m.ensemblesUsing(s)) > 0 {
			continue
		}
		seen[s] = true
		m.mu.RLock()
		nested := m.stepModels(s)
		m.mu.RUnlock()
		if err := m.unload(ctx, s); err != nil {
			return err
		}
		if err := m.unloadDependents(ctx, nested, seen); err != nil {
			return err
		}
	}
	return nil
}

// isEnsemble reports whether a model's serving versions are an ensemble's.
// The caller holds m.mu.
func isEnsemble(mod *model) bool {
	for _, v := range mod.versions {
		return v.config.Platform == repository.PlatformEnsemble
	}
	return false
}

// idleEnsemble reports whether model name is an ensemble (by its config on
// disk) with no serving version.
func (m *Manager) idleEnsemble(name string) bool {
	m.mu.RLock()
	mod := m.models[name]
	serving := mod != nil && len(mod.versions) > 0
	m.mu.RUnlock()
	if serving {
		return false
	}
	cfg, err := repository.ReadConfig(filepath.Join(m.cfg.Repository, name))
	return err == nil && cfg.Platform == repository.PlatformEnsemble
}
