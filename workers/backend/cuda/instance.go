package cuda

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/cuda/exec"
	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/lower"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// Instance runs one model instance on one GPU stream. Execute is called
// from one goroutine at a time, as backend.Instance requires.
type Instance struct {
	b      *Backend
	st     *modelState
	model  string
	dev    *gpuDevice
	run    *exec.Runner
	ws     exec.Ptr
	bytes  int64 // device memory of this instance (arena + workspace)
	lm     *lower.Model
	closed bool
	inputs map[string]int
	output map[string]int
}

var _ backend.Instance = (*Instance)(nil)

func (b *Backend) newInstance(st *modelState, spec backend.InstanceSpec, p params) (_ *Instance, err error) {
	lm := st.lowered
	dev := &gpuDevice{libs: st.loader.libs, ctx: st.loader.ctx, info: st.loader.info}
	inst := &Instance{b: b, st: st, model: spec.ModelName, dev: dev, lm: lm, inputs: map[string]int{}, output: map[string]int{}}
	defer func() {
		if err != nil {
			inst.free()
		}
	}()
	if err := b.checkMemory(dev, spec, lm.ArenaBytes()+b.opts.BLASWorkspaceBytes); err != nil {
		return nil, err
	}
	if dev.stream, err = dev.ctx.NewStream(); err != nil {
		return nil, fmt.Errorf("cuda: model %q: %w", spec.ModelName, err)
	}
	if inst.ws, err = dev.Alloc(b.opts.BLASWorkspaceBytes); err != nil {
		return nil, b.memoryError(spec, err)
	}
	if dev.blas, err = dev.stream.NewBLAS(uint64(inst.ws), b.opts.BLASWorkspaceBytes); err != nil {
		return nil, b.memoryError(spec, err)
	}
	if inst.run, err = exec.NewRunner(dev, lm, st.module, st.weights, exec.Options{GraphBatches: p.graphs}); err != nil {
		return nil, b.memoryError(spec, err)
	}
	inst.bytes = inst.run.ArenaBytes + b.opts.BLASWorkspaceBytes
	prog := lm.Largest()
	for i, in := range prog.Inputs {
		inst.inputs[in.Name] = i
	}
	for i, out := range prog.Outputs {
		inst.output[out.Name] = i
	}
	b.mu.Lock()
	b.memory[spec.ModelName] += inst.bytes
	total := b.memory[spec.ModelName]
	b.mu.Unlock()
	b.log.Info("cuda instance created", "model", spec.ModelName, "version", spec.ModelVersion, "gpu", spec.GPU,
		"arena_bytes", inst.run.ArenaBytes, "pinned_bytes", inst.run.StagingBytes,
		"cuda_graph_batch_sizes", p.graphs, "model_device_bytes", total)
	return inst, nil
}

// Execute runs one batch. inputs must name every model input once, with
// the batch as their first dimension where the model batches.
func (in *Instance) Execute(ctx context.Context, inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error) {
	if in.closed {
		return nil, fmt.Errorf("cuda: model %q: instance is closed", in.model)
	}
	batch, raw, err := in.bind(inputs)
	if err != nil {
		return nil, err
	}
	prog, _ := in.lm.Program(batch)
	want, err := in.wanted(outputs)
	if err != nil {
		return nil, err
	}
	outs, err := in.run.Run(ctx, batch, raw)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cuda: model %q: %w", in.model, ctx.Err())
		}
		return nil, fmt.Errorf("cuda: model %q: %w", in.model, err)
	}
	result := make([]tensor.Tensor, len(want))
	for i, idx := range want {
		o := prog.Outputs[idx]
		result[i] = tensor.Tensor{Name: o.Name, DataType: o.DType.DataType(), Shape: slices.Clone(o.Shape), Data: outs[idx]}
	}
	return result, nil
}

// bind checks the inputs against the model and orders them; it returns
// the batch size (0 for a model that does not batch).
func (in *Instance) bind(inputs []tensor.Tensor) (int64, [][]byte, error) {
	any := in.lm.Largest()
	raw := make([][]byte, len(any.Inputs))
	batch := int64(0)
	for _, t := range inputs {
		i, ok := in.inputs[t.Name]
		if !ok {
			return 0, nil, infer.Errorf(infer.CodeInvalidArgument, "model %q has no input %q", in.model, t.Name)
		}
		if raw[i] != nil {
			return 0, nil, infer.Errorf(infer.CodeInvalidArgument, "model %q: input %q is given twice", in.model, t.Name)
		}
		decl := any.Inputs[i]
		if dt, _ := graph.FromDataType(t.DataType); dt != decl.DType {
			return 0, nil, infer.Errorf(infer.CodeInvalidArgument, "model %q: input %q has datatype %s, the model expects %s",
				in.model, t.Name, t.DataType, decl.DType.DataType())
		}
		if len(t.Shape) != len(decl.Shape) {
			return 0, nil, infer.Errorf(infer.CodeInvalidArgument, "model %q: input %q has shape %v, the model expects rank %d", in.model, t.Name, t.Shape, len(decl.Shape))
		}
		first := 0
		if in.lm.Batched {
			first = 1
			if t.Shape[0] < 1 || t.Shape[0] > in.lm.MaxBatch || (batch != 0 && t.Shape[0] != batch) {
				return 0, nil, infer.Errorf(infer.CodeInvalidArgument, "model %q: input %q has batch %d (inputs must agree, 1..%d)",
					in.model, t.Name, t.Shape[0], in.lm.MaxBatch)
			}
			batch = t.Shape[0]
		}
		if !slices.Equal(t.Shape[first:], decl.Shape[first:]) {
			return 0, nil, infer.Errorf(infer.CodeInvalidArgument, "model %q: input %q has shape %v, the model expects %v",
				in.model, t.Name, t.Shape, decl.Shape)
		}
		if err := t.Validate(); err != nil {
			return 0, nil, infer.Errorf(infer.CodeInvalidArgument, "model %q: %v", in.model, err)
		}
		raw[i] = t.Data
		if raw[i] == nil {
			raw[i] = []byte{}
		}
	}
	for i, r := range raw {
		if r == nil {
			return 0, nil, infer.Errorf(infer.CodeInvalidArgument, "model %q: input %q is missing", in.model, any.Inputs[i].Name)
		}
	}
	return batch, raw, nil
}

func (in *Instance) wanted(requested []string) ([]int, error) {
	if len(requested) == 0 {
		idx := make([]int, len(in.output))
		for i := range idx {
			idx[i] = i
		}
		return idx, nil
	}
	idx := make([]int, len(requested))
	for i, name := range requested {
		j, ok := in.output[name]
		if !ok {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "model %q has no output %q", in.model, name)
		}
		idx[i] = j
	}
	return idx, nil
}

// Profile times each step of one batch on the GPU (for benchmarks).
func (in *Instance) Profile(batch int64) ([]exec.StepTime, error) { return in.run.Profile(batch) }

// Close releases the instance's stream, arena and workspace, and its hold
// on the model's weights and kernels.
func (in *Instance) Close() error {
	if in.closed {
		return nil
	}
	in.closed = true
	err := in.free()
	in.b.mu.Lock()
	in.b.memory[in.model] -= in.bytes
	in.b.mu.Unlock()
	in.b.releaseState(in.st)
	if err != nil {
		return fmt.Errorf("cuda: model %q: closing: %w", in.model, err)
	}
	return nil
}

func (in *Instance) free() error {
	var errs []error
	if in.run != nil {
		errs = append(errs, in.run.Close())
		in.run = nil
	}
	if in.dev.blas != nil {
		errs = append(errs, in.dev.blas.Destroy())
		in.dev.blas = nil
	}
	if in.ws != 0 {
		errs = append(errs, in.dev.Free(in.ws))
		in.ws = 0
	}
	if in.dev.stream != nil {
		errs = append(errs, in.dev.stream.Destroy())
		in.dev.stream = nil
	}
	return errors.Join(errs...)
}
