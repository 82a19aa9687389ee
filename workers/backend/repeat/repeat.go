// Package repeat is Triton's example decoupled backend "repeat"
// (backend: "repeat", model_transaction_policy { decoupled: true }): for
// one request it sends one response per element of its input IN, each
// after DELAY[i] milliseconds, with OUT = IN[i] and IDX = i; then it waits
// WAIT milliseconds and completes the request. It reads no model file. It
// exists to test and demonstrate decoupled models (Triton's
// simple_grpc_custom_repeat.py client uses the model repeat_int32).
package repeat

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// Name is the backend's name as config.pbtxt spells it.
const Name = "repeat"

// The model's fixed IO (no batch dimension: the model does not batch).
var (
	inputs = []backend.IO{
		{Name: "IN", DataType: tensor.Int32, Shape: []int64{-1}},
		{Name: "DELAY", DataType: tensor.Uint32, Shape: []int64{-1}},
		{Name: "WAIT", DataType: tensor.Uint32, Shape: []int64{1}},
	}
	outputs = []backend.IO{
		{Name: "OUT", DataType: tensor.Int32, Shape: []int64{1}},
		{Name: "IDX", DataType: tensor.Uint32, Shape: []int64{1}},
	}
)

// MaxElements bounds IN's length, so that one request cannot hold an
// instance for an unbounded number of responses.
const MaxElements = 1 << 16

// Backend creates repeat instances.
type Backend struct{}

// New returns the repeat backend.
func New() *Backend { return &Backend{} }

var _ backend.Backend = (*Backend)(nil)

// Name implements backend.Backend.
func (*Backend) Name() string { return Name }

// Inspect implements backend.Backend: the IO is fixed; modelPath is
// ignored (the version folder holds no file).
func (*Backend) Inspect(context.Context, string) (in, out []backend.IO, err error) {
	return cloneIO(inputs), cloneIO(outputs), nil
}

func cloneIO(ios []backend.IO) []backend.IO {
	out := make([]backend.IO, len(ios))
	for i, io := range ios {
		io.Shape = append([]int64(nil), io.Shape...)
		out[i] = io
	}
	return out
}

// NewInstance implements backend.Backend.
func (*Backend) NewInstance(_ context.Context, spec backend.InstanceSpec) (backend.Instance, error) {
	if spec.MaxBatchSize > 0 {
		return nil, fmt.Errorf("%w: the repeat backend does not batch; model '%s' needs max_batch_size 0", backend.ErrUnsupported, spec.ModelName)
	}
	if spec.Device != "" && spec.Device != "cpu" {
		return nil, fmt.Errorf("%w: the repeat backend runs on the CPU only", backend.ErrUnsupported)
	}
	return &Instance{model: spec.ModelName}, nil
}

// Instance is one repeat model instance; it holds no state.
type Instance struct {
	model string
}

var _ backend.DecoupledInstance = (*Instance)(nil)

// Execute implements backend.Instance. A decoupled model answers through
// ExecuteDecoupled only.
func (i *Instance) Execute(context.Context, []tensor.Tensor, []string) ([]tensor.Tensor, error) {
	return nil, infer.Errorf(infer.CodeInvalidArgument, "model '%s' is decoupled (backend repeat); use a streaming API", i.model)
}

// Close implements backend.Instance.
func (*Instance) Close() error { return nil }

// ExecuteDecoupled implements backend.DecoupledInstance.
func (i *Instance) ExecuteDecoupled(ctx context.Context, ins []tensor.Tensor, outs []string, send func([]tensor.Tensor) error) error {
	in, delay, wait, err := i.read(ins)
	if err != nil {
		return err
	}
	for _, name := range outs {
		if name != "OUT" && name != "IDX" {
			return infer.Errorf(infer.CodeInvalidArgument, "model '%s' has no output '%s' (outputs: OUT, IDX)", i.model, name)
		}
	}
	if len(outs) == 0 {
		outs = []string{"OUT", "IDX"}
	}
	for k, v := range in {
		if err := sleep(ctx, delay[k]); err != nil {
			return err
		}
		resp := make([]tensor.Tensor, len(outs))
		for j, name := range outs {
			t := tensor.Tensor{Name: name, Shape: []int64{1}, Data: make([]byte, 4)}
			if name == "OUT" {
				t.DataType = tensor.Int32
				binary.LittleEndian.PutUint32(t.Data, uint32(v))
			} else {
				t.DataType = tensor.Uint32
				binary.LittleEndian.PutUint32(t.Data, uint32(k))
			}
			resp[j] = t
		}
		if err := send(resp); err != nil {
			return err
		}
	}
	return sleep(ctx, wait)
}

// read checks and decodes the inputs: IN INT32 [n], DELAY UINT32 [n]
// (milliseconds before each response), WAIT UINT32 [1] (milliseconds
// after the last one).
func (i *Instance) read(ins []tensor.Tensor) (in []int32, delay []uint32, wait uint32, err error) {
	byName := make(map[string]tensor.Tensor, len(ins))
	for _, t := range ins {
		byName[t.Name] = t
	}
	get := func(name string, dt tensor.DataType) ([]byte, error) {
		t, ok := byName[name]
		if !ok {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "model '%s' needs input '%s'", i.model, name)
		}
		if t.DataType != dt {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "model '%s' input '%s' has datatype %s, expected %s", i.model, name, t.DataType, dt)
		}
		if err := t.Validate(); err != nil {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "model '%s': %w", i.model, err)
		}
		return t.Data, nil
	}
	inData, err := get("IN", tensor.Int32)
	if err != nil {
		return nil, nil, 0, err
	}
	delayData, err := get("DELAY", tensor.Uint32)
	if err != nil {
		return nil, nil, 0, err
	}
	waitData, err := get("WAIT", tensor.Uint32)
	if err != nil {
		return nil, nil, 0, err
	}
	n := len(inData) / 4
	if n > MaxElements {
		return nil, nil, 0, infer.Errorf(infer.CodeInvalidArgument, "model '%s' input 'IN' has %d elements, at most %d are allowed", i.model, n, MaxElements)
	}
	if len(delayData) != len(inData) {
		return nil, nil, 0, infer.Errorf(infer.CodeInvalidArgument,
			"model '%s' expects inputs 'IN' and 'DELAY' to have the same number of elements, got %d and %d", i.model, n, len(delayData)/4)
	}
	if len(waitData) != 4 {
		return nil, nil, 0, infer.Errorf(infer.CodeInvalidArgument, "model '%s' expects input 'WAIT' to have one element, got %d", i.model, len(waitData)/4)
	}
	in = make([]int32, n)
	delay = make([]uint32, n)
	for k := range n {
		in[k] = int32(binary.LittleEndian.Uint32(inData[4*k:]))
		delay[k] = binary.LittleEndian.Uint32(delayData[4*k:])
	}
	return in, delay, binary.LittleEndian.Uint32(waitData), nil
}

// sleep waits ms milliseconds or until ctx ends.
func sleep(ctx context.Context, ms uint32) error {
	if ms == 0 {
		return ctx.Err()
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
