package pytorch

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"unsafe"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// Instance is one loaded TorchScript module. Execute is called from one
// goroutine at a time, as backend.Instance requires.
type Instance struct {
	model   string
	module  *module
	runner  *runner
	bind    binding
	inputs  []backend.IO
	outputs []backend.IO
	threads int
	closed  bool
}

var _ backend.Instance = (*Instance)(nil)

func newInstance(spec backend.InstanceSpec, m *module, b binding, threads int) *Instance {
	model := spec.ModelName
	if model == "" {
		model = spec.ModelPath
	}
	return &Instance{
		model: model, module: m, runner: newRunner(b.nArgs), bind: b,
		inputs: spec.Inputs, outputs: spec.Outputs, threads: threads,
	}
}

// Close frees the module.
func (in *Instance) Close() error {
	if in.closed {
		return nil
	}
	in.closed = true
	in.module.close()
	in.runner.free()
	return nil
}

// Execute runs forward() once. inputs must name every declared input
// exactly once; outputs names the outputs to return, all when empty.
func (in *Instance) Execute(ctx context.Context, inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error) {
	if in.closed {
		return nil, fmt.Errorf("pytorch: model %q: %w", in.model, errClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pytorch: model %q: %w", in.model, err)
	}
	wanted, err := in.wantedOutputs(outputs)
	if err != nil {
		return nil, err
	}
	args := make([]hostTensor, in.bind.nArgs)
	given := make([]bool, len(in.inputs))
	for _, t := range inputs {
		idx := slices.IndexFunc(in.inputs, func(io backend.IO) bool { return io.Name == t.Name })
		if idx < 0 {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "model %q has no input %q (it has %v)", in.model, t.Name, names(in.inputs))
		}
		if given[idx] {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "model %q: input %q is given twice", in.model, t.Name)
		}
		given[idx] = true
		if err := checkTensor("input", t, in.inputs[idx]); err != nil {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "model %q: %w", in.model, err)
		}
		args[in.bind.argOf[idx]] = hostTensor{code: codes[t.DataType], shape: t.Shape, data: aligned(t.Data, t.DataType.ElementSize())}
	}
	for i, ok := range given {
		if !ok {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "model %q: input %q is missing", in.model, in.inputs[i].Name)
		}
	}
	results, err := in.module.forward(in.runner, args, in.threads)
	if err != nil {
		return nil, fmt.Errorf("pytorch: model %q: forward(): %w", in.model, err)
	}
	out := make([]tensor.Tensor, len(wanted))
	for i, idx := range wanted {
		io := in.outputs[idx]
		r := in.bind.resultOf[idx]
		if r >= len(results) {
			return nil, fmt.Errorf("pytorch: model %q: output %q is result %d but forward() returned %d tensor(s)", in.model, io.Name, r, len(results))
		}
		t := tensor.Tensor{Name: io.Name, DataType: dataTypes[results[r].code], Shape: results[r].shape, Data: results[r].data}
		if err := checkTensor("output", t, io); err != nil {
			return nil, fmt.Errorf("pytorch: model %q: forward() does not match the config: %w", in.model, err)
		}
		out[i] = t
	}
	return out, nil
}

func (in *Instance) wantedOutputs(requested []string) ([]int, error) {
	if len(requested) == 0 {
		idx := make([]int, len(in.outputs))
		for i := range idx {
			idx[i] = i
		}
		return idx, nil
	}
	idx := make([]int, len(requested))
	for i, name := range requested {
		j := slices.IndexFunc(in.outputs, func(io backend.IO) bool { return io.Name == name })
		if j < 0 {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "model %q has no output %q (it has %v)", in.model, name, names(in.outputs))
		}
		idx[i] = j
	}
	return idx, nil
}

// checkTensor compares a tensor with its declaration (-1: any size).
func checkTensor(kind string, t tensor.Tensor, io backend.IO) error {
	if t.DataType != io.DataType {
		return fmt.Errorf("%w: %s %q has datatype %s, the config declares %s", tensor.ErrInvalid, kind, t.Name, t.DataType, io.DataType)
	}
	if err := t.Validate(); err != nil {
		return err
	}
	ok := len(t.Shape) == len(io.Shape)
	for i := 0; ok && i < len(io.Shape); i++ {
		ok = io.Shape[i] < 0 || io.Shape[i] == t.Shape[i]
	}
	if !ok {
		return fmt.Errorf("%w: %s %q has shape %v, the config declares %v (-1: any size)", tensor.ErrInvalid, kind, t.Name, t.Shape, io.Shape)
	}
	return nil
}

// aligned returns data, copied when it does not start at a multiple of the
// element size: libtorch's vectorized kernels may assume aligned elements.
func aligned(data []byte, size int) []byte {
	if len(data) == 0 || size <= 1 || uintptr(unsafe.Pointer(&data[0]))%uintptr(size) == 0 {
		return data
	}
	return bytes.Clone(data)
}

func names(ios []backend.IO) []string {
	out := make([]string, len(ios))
	for i, io := range ios {
		out[i] = io.Name
	}
	return out
}
