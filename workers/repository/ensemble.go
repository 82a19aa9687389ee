package repository

import (
	"fmt"

	"github.com/helixflow/helixflow/internal/wire"
	pb "github.com/helixflow/helixflow/proto/inference"
)

// checkEnsembleScheduling checks an ensemble's config on its own: platform
// "ensemble" goes with ensemble_scheduling, the ensemble's inputs and
// outputs are declared in full (no model file completes them), and each
// step names a model and maps its tensors. The DAG itself and the step
// models' IO are checked at load (workers/ensemble).
func checkEnsembleScheduling(cfg *pb.ModelConfig) error {
	es := cfg.GetEnsembleScheduling()
	isEnsemble := cfg.Platform == PlatformEnsemble
	switch {
	case es == nil && !isEnsemble:
		return nil
	case es == nil:
		return fmt.Errorf("%w: platform %q needs ensemble_scheduling with at least one step", ErrInvalidConfig, PlatformEnsemble)
	case !isEnsemble:
		return fmt.Errorf("%w: ensemble_scheduling is set but platform is %q; an ensemble has platform %q", ErrInvalidConfig, cfg.Platform, PlatformEnsemble)
	}
	if len(cfg.InstanceGroup) > 0 {
		return fmt.Errorf("%w: instance_group is not allowed for ensemble '%s'; its step models have their own", ErrInvalidConfig, cfg.Name)
	}
	if cfg.Optimization != nil {
		return fmt.Errorf("%w: optimization is not allowed for ensemble '%s'; set it on the step models", ErrInvalidConfig, cfg.Name)
	}
	if len(cfg.ModelWarmup) > 0 {
		return fmt.Errorf("%w: model_warmup is not allowed for ensemble '%s'", ErrInvalidConfig, cfg.Name)
	}
	if cfg.GetModelTransactionPolicy().GetDecoupled() {
		return fmt.Errorf("%w: ensemble '%s': decoupled ensembles are not supported", ErrInvalidConfig, cfg.Name)
	}
	if len(cfg.Input) == 0 {
		return fmt.Errorf("%w: ensemble '%s' declares no input", ErrInvalidConfig, cfg.Name)
	}
	if len(cfg.Output) == 0 {
		return fmt.Errorf("%w: ensemble '%s' declares no output", ErrInvalidConfig, cfg.Name)
	}
	seen := map[string]bool{}
	for _, in := range cfg.Input {
		if err := checkEnsembleTensor(cfg.Name, "input", in.Name, in.DataType, in.Dims, in.Reshape, seen); err != nil {
			return err
		}
	}
	for _, out := range cfg.Output {
		if seen[out.Name] {
			return fmt.Errorf("%w: ensemble '%s': '%s' is declared twice (an input and an output, or two outputs)", ErrInvalidConfig, cfg.Name, out.Name)
		}
		if err := checkEnsembleTensor(cfg.Name, "output", out.Name, out.DataType, out.Dims, out.Reshape, seen); err != nil {
			return err
		}
	}
	if len(es.Step) == 0 {
		return fmt.Errorf("%w: ensemble '%s': ensemble_scheduling has no step", ErrInvalidConfig, cfg.Name)
	}
	for i, s := range es.Step {
		if s.ModelName == "" {
			return fmt.Errorf("%w: ensemble '%s' step %d: model_name is empty", ErrInvalidConfig, cfg.Name, i)
		}
		if err := wire.CheckModelName(s.ModelName); err != nil {
			return fmt.Errorf("%w: ensemble '%s' step %d: model_name %q: %v", ErrInvalidConfig, cfg.Name, i, s.ModelName, err)
		}
		if s.ModelName == cfg.Name {
			return fmt.Errorf("%w: ensemble '%s' step %d names the ensemble itself", ErrInvalidConfig, cfg.Name, i)
		}
		if s.ModelVersion < -1 {
			return fmt.Errorf("%w: ensemble '%s' step %d ('%s'): model_version %d must be -1 (latest) or a version number",
				ErrInvalidConfig, cfg.Name, i, s.ModelName, s.ModelVersion)
		}
		if s.ModelNamespace != "" {
			return fmt.Errorf("%w: ensemble '%s' step %d ('%s'): model_namespace is not supported", ErrInvalidConfig, cfg.Name, i, s.ModelName)
		}
		if len(s.InputMap) == 0 {
			return fmt.Errorf("%w: ensemble '%s' step %d ('%s'): input_map is empty", ErrInvalidConfig, cfg.Name, i, s.ModelName)
		}
		if len(s.OutputMap) == 0 {
			return fmt.Errorf("%w: ensemble '%s' step %d ('%s'): output_map is empty", ErrInvalidConfig, cfg.Name, i, s.ModelName)
		}
		for _, m := range []map[string]string{s.InputMap, s.OutputMap} {
			for k, v := range m {
				if k == "" || v == "" {
					return fmt.Errorf("%w: ensemble '%s' step %d ('%s'): a map entry %q: %q has an empty name",
						ErrInvalidConfig, cfg.Name, i, s.ModelName, k, v)
				}
			}
		}
	}
	return nil
}

func checkEnsembleTensor(ensemble, kind, name string, dt pb.DataType, dims []int64, reshape *pb.ModelTensorReshape, seen map[string]bool) error {
	if err := checkTensor(kind, name, dt, dims, seen); err != nil {
		return fmt.Errorf("ensemble '%s': %w", ensemble, err)
	}
	if len(dims) == 0 {
		return fmt.Errorf("%w: ensemble '%s': %s %q has no dims; an ensemble declares its IO in full", ErrInvalidConfig, ensemble, kind, name)
	}
	if reshape != nil {
		for _, d := range reshape.Shape {
			if d < -1 || d == 0 {
				return fmt.Errorf("%w: ensemble '%s': %s %q has reshape %v: each dimension must be positive or -1", ErrInvalidConfig, ensemble, kind, name, reshape.Shape)
			}
		}
	}
	return nil
}
