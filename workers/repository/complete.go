package repository

import (
	"fmt"
	"slices"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
)

// DefaultMaxBatchSize is the max_batch_size given to a model that can batch
// when its config leaves batching and IO unspecified (Triton's default-max-batch-size).
const DefaultMaxBatchSize = 4

// AutoComplete fills what a partial or absent config.pbtxt leaves out from
// the IO the model file declares (batch dim included): max_batch_size (with
// dynamic batching) when nothing about IO or batching was said, missing
// inputs and outputs, and missing data types and dims of listed ones.
func AutoComplete(cfg *pb.ModelConfig, inputs, outputs []backend.IO) {
	if cfg.MaxBatchSize == 0 && len(cfg.Input) == 0 && len(cfg.Output) == 0 && canBatch(inputs, outputs) {
		cfg.MaxBatchSize = DefaultMaxBatchSize
		if cfg.SchedulingChoice == nil {
			cfg.SchedulingChoice = &pb.ModelConfig_DynamicBatching{DynamicBatching: &pb.ModelDynamicBatching{}}
		}
	}
	batched := cfg.MaxBatchSize > 0
	seqIn, seqOut := sequenceIO(cfg)
	for _, io := range inputs {
		if seqIn[io.Name] {
			continue // a control or state: the sequence batcher fills it
		}
		in := FindInput(cfg, io.Name)
		if in == nil {
			in = &pb.ModelInput{Name: io.Name}
			cfg.Input = append(cfg.Input, in)
		}
		if in.DataType == pb.DataType_TYPE_INVALID {
			in.DataType = ConfigType(io.DataType)
		}
		if len(in.Dims) == 0 && in.Reshape == nil {
			in.Dims = itemShape(io.Shape, batched)
		}
	}
	for _, io := range outputs {
		if seqOut[io.Name] {
			continue
		}
		out := FindOutput(cfg, io.Name)
		if out == nil {
			out = &pb.ModelOutput{Name: io.Name}
			cfg.Output = append(cfg.Output, out)
		}
		if out.DataType == pb.DataType_TYPE_INVALID {
			out.DataType = ConfigType(io.DataType)
		}
		if len(out.Dims) == 0 && out.Reshape == nil {
			out.Dims = itemShape(io.Shape, batched)
		}
	}
	// The cuda backend's instances go on GPUs; every other backend's on
	// the CPU.
	kind := pb.ModelInstanceGroup_KIND_CPU
	if cfg.Backend == BackendCUDA {
		kind = pb.ModelInstanceGroup_KIND_GPU
	}
	if len(cfg.InstanceGroup) == 0 {
		cfg.InstanceGroup = []*pb.ModelInstanceGroup{{Count: 1, Kind: kind}}
	}
	for i, g := range cfg.InstanceGroup {
		if g.Name == "" {
			g.Name = fmt.Sprintf("%s_%d", cfg.Name, i)
		}
		if g.Count == 0 {
			g.Count = 1
		}
		if g.Kind == pb.ModelInstanceGroup_KIND_AUTO {
			g.Kind = kind
		}
	}
}

// Validate checks a completed config on its own and against the model's IO.
// Every error names the field and wraps ErrInvalidConfig.
func Validate(cfg *pb.ModelConfig, inputs, outputs []backend.IO) error {
	batched := cfg.MaxBatchSize > 0
	if len(cfg.Input) == 0 {
		return fmt.Errorf("%w: model declares no input", ErrInvalidConfig)
	}
	if len(cfg.Output) == 0 {
		return fmt.Errorf("%w: model declares no output", ErrInvalidConfig)
	}
	seen := map[string]bool{}
	for _, in := range cfg.Input {
		if err := checkTensor("input", in.Name, in.DataType, in.Dims, seen); err != nil {
			return err
		}
		io, ok := findIO(inputs, in.Name)
		if !ok {
			return fmt.Errorf("%w: input %q is not an input of the model (model inputs: %v)", ErrInvalidConfig, in.Name, ioNames(inputs))
		}
		if err := matchIO("input", in.Name, in.DataType, in.Dims, in.Reshape, io, batched); err != nil {
			return err
		}
	}
	seqIn, _ := sequenceIO(cfg)
	for _, io := range inputs {
		if FindInput(cfg, io.Name) == nil && !seqIn[io.Name] {
			return fmt.Errorf("%w: model input %q is missing from the config", ErrInvalidConfig, io.Name)
		}
	}
	seen = map[string]bool{}
	for _, out := range cfg.Output {
		if err := checkTensor("output", out.Name, out.DataType, out.Dims, seen); err != nil {
			return err
		}
		io, ok := findIO(outputs, out.Name)
		if !ok {
			return fmt.Errorf("%w: output %q is not an output of the model (model outputs: %v)", ErrInvalidConfig, out.Name, ioNames(outputs))
		}
		if err := matchIO("output", out.Name, out.DataType, out.Dims, out.Reshape, io, batched); err != nil {
			return err
		}
	}
	if err := checkSequenceIO(cfg, inputs, outputs); err != nil {
		return err
	}
	if db := cfg.GetDynamicBatching(); db != nil {
		if !batched {
			return fmt.Errorf("%w: dynamic_batching needs max_batch_size > 0", ErrInvalidConfig)
		}
		for _, p := range db.PreferredBatchSize {
			if p <= 0 || p > cfg.MaxBatchSize {
				return fmt.Errorf("%w: dynamic_batching.preferred_batch_size %d must be in 1..max_batch_size (%d)", ErrInvalidConfig, p, cfg.MaxBatchSize)
			}
		}
		if db.PriorityLevels > 1 {
			return fmt.Errorf("%w: dynamic_batching.priority_levels is not supported yet", ErrInvalidConfig)
		}
	}
	for i, g := range cfg.InstanceGroup {
		if g.Count < 0 {
			return fmt.Errorf("%w: instance_group[%d].count %d is negative", ErrInvalidConfig, i, g.Count)
		}
		want := pb.ModelInstanceGroup_KIND_CPU
		if cfg.Backend == BackendCUDA {
			want = pb.ModelInstanceGroup_KIND_GPU
		}
		// The pytorch backend runs either: KIND_GPU where libtorch sees CUDA.
		gpuToo := cfg.Backend == BackendTorch && g.Kind == pb.ModelInstanceGroup_KIND_GPU
		if g.Kind != want && !gpuToo {
			return fmt.Errorf("%w: instance_group[%d].kind %s is not supported by the %s backend (use %s)",
				ErrInvalidConfig, i, g.Kind, cfg.Backend, want)
		}
		if len(g.Gpus) > 0 && g.Kind != pb.ModelInstanceGroup_KIND_GPU {
			return fmt.Errorf("%w: instance_group[%d].gpus is set but the kind is %s", ErrInvalidConfig, i, g.Kind)
		}
		for _, id := range g.Gpus {
			if id < 0 {
				return fmt.Errorf("%w: instance_group[%d].gpus %v: GPU ids are not negative", ErrInvalidConfig, i, g.Gpus)
			}
		}
	}
	return nil
}

// Instances is the total instance count over the config's instance groups.
func Instances(cfg *pb.ModelConfig) int {
	n := 0
	for _, g := range cfg.InstanceGroup {
		n += int(g.Count)
	}
	return n
}

func checkTensor(kind, name string, dt pb.DataType, dims []int64, seen map[string]bool) error {
	if name == "" {
		return fmt.Errorf("%w: an %s has no name", ErrInvalidConfig, kind)
	}
	if seen[name] {
		return fmt.Errorf("%w: %s %q is declared twice", ErrInvalidConfig, kind, name)
	}
	seen[name] = true
	if _, err := TensorType(dt); err != nil {
		return fmt.Errorf("%w: %s %q has data_type %s", ErrInvalidConfig, kind, name, dt)
	}
	for _, d := range dims {
		if d < -1 || d == 0 {
			return fmt.Errorf("%w: %s %q has dims %v: each must be positive or -1", ErrInvalidConfig, kind, name, dims)
		}
	}
	return nil
}

func matchIO(kind, name string, dt pb.DataType, dims []int64, reshape *pb.ModelTensorReshape, io backend.IO, batched bool) error {
	if want := ConfigType(io.DataType); dt != want {
		return fmt.Errorf("%w: %s %q has data_type %s, the model says %s", ErrInvalidConfig, kind, name, dt, want)
	}
	shape := io.Shape
	if batched {
		if len(shape) == 0 || shape[0] != -1 {
			return fmt.Errorf("%w: max_batch_size > 0 but the model's %s %q has shape %v with no variable batch dimension; set max_batch_size: 0",
				ErrInvalidConfig, kind, name, shape)
		}
		shape = shape[1:]
	}
	if reshape != nil {
		// The model sees the reshaped shape; the protocol sees dims.
		return matchDims(kind, name, reshape.Shape, shape, "reshape")
	}
	return matchDims(kind, name, dims, shape, "dims")
}

func matchDims(kind, name string, cfgDims, modelDims []int64, field string) error {
	if len(cfgDims) != len(modelDims) {
		return fmt.Errorf("%w: %s %q has %s %v, the model's shape is %v (without batch dimension)",
			ErrInvalidConfig, kind, name, field, cfgDims, modelDims)
	}
	for i := range cfgDims {
		if modelDims[i] != -1 && cfgDims[i] != modelDims[i] {
			return fmt.Errorf("%w: %s %q has %s %v, the model's shape is %v (without batch dimension)",
				ErrInvalidConfig, kind, name, field, cfgDims, modelDims)
		}
	}
	return nil
}

func canBatch(inputs, outputs []backend.IO) bool {
	if len(inputs) == 0 {
		return false
	}
	for _, io := range slices.Concat(inputs, outputs) {
		if len(io.Shape) == 0 || io.Shape[0] != -1 {
			return false
		}
	}
	return true
}

func itemShape(shape []int64, batched bool) []int64 {
	if batched && len(shape) > 0 {
		return slices.Clone(shape[1:])
	}
	return slices.Clone(shape)
}

// FindInput is cfg's input named name, or nil.
func FindInput(cfg *pb.ModelConfig, name string) *pb.ModelInput {
	for _, in := range cfg.Input {
		if in.Name == name {
			return in
		}
	}
	return nil
}

// FindOutput is cfg's output named name, or nil.
func FindOutput(cfg *pb.ModelConfig, name string) *pb.ModelOutput {
	for _, out := range cfg.Output {
		if out.Name == name {
			return out
		}
	}
	return nil
}

func findIO(ios []backend.IO, name string) (backend.IO, bool) {
	for _, io := range ios {
		if io.Name == name {
			return io, true
		}
	}
	return backend.IO{}, false
}

func ioNames(ios []backend.IO) []string {
	names := make([]string, len(ios))
	for i, io := range ios {
		names[i] = io.Name
	}
	return names
}
