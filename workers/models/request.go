package models

import (
	"context"
	"fmt"
	"slices"

	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/tensor"
)

// Infer implements infer.Service: it checks the request against the
// model's configuration, runs it through the model's scheduler and returns
// the outputs asked for.
func (m *Manager) Infer(ctx context.Context, req *infer.Request) (*infer.Response, error) {
	m.mu.RLock()
	v, err := m.lookup(req.Model, req.Version)
	if err != nil {
		m.mu.RUnlock()
		return nil, err
	}
	if repository.IsDecoupled(v.config) {
		m.mu.RUnlock()
		return nil, decoupledUnaryError(req.Model)
	}
	v.inflight.Add(1)
	m.mu.RUnlock()
	defer v.inflight.Done()

	inputs, err := v.checkInputs(req)
	if err != nil {
		return nil, err
	}
	outputs, err := v.checkOutputs(req)
	if err != nil {
		return nil, err
	}
	timeout := req.Timeout
	if timeout < 0 {
		timeout = 0
	}
	// Models without sequence_batching ignore the sequence parameters, as
	// in Triton.
	var seq infer.Sequence
	if v.config.GetSequenceBatching() != nil {
		if seq, err = infer.SequenceOf(req.Parameters); err != nil {
			return nil, err
		}
		if seq.ID.IsZero() {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "inference request to model '%s' must specify a non-zero or non-empty correlation ID", req.Model)
		}
	}
	classes := classCounts(req.Outputs)
	lookup := v.lookupCache(inputs, outputs, classes)
	if resp := lookup.hit(req, inputs); resp != nil {
		return resp, nil
	}
	sreq := &scheduler.Request{Inputs: inputs, Outputs: outputs, Timeout: timeout, Sequence: seq}
	results, err := v.sched.Do(ctx, sreq)
	req.Usage = infer.Usage{Rows: sreq.Usage.Rows, Compute: sreq.Usage.Compute}
	if err != nil {
		return nil, err
	}
	resp, err := v.response(req, outputs, results)
	if err != nil {
		return nil, err
	}
	lookup.store(resp.Outputs)
	return resp, nil
}

// classCounts returns the top-k counts that outputs ask for with Triton's
// "classification" parameter; the front ends have checked its type.
func classCounts(outputs []infer.RequestedOutput) map[string]uint64 {
	var counts map[string]uint64
	for _, o := range outputs {
		k, ok := o.Parameters["classification"].(int64)
		if !ok || k <= 0 {
			continue
		}
		if counts == nil {
			counts = make(map[string]uint64)
		}
		counts[o.Name] = uint64(k)
	}
	return counts
}

// checkInputs validates the request's inputs in Triton's terms and returns
// them in the order the model declares them, reshaped where configured.
func (v *version) checkInputs(req *infer.Request) ([]tensor.Tensor, error) {
	name := v.config.Name
	batched := v.config.MaxBatchSize > 0
	byName := make(map[string]*tensor.Tensor, len(req.Inputs))
	batch := int64(-1)
	for i := range req.Inputs {
		in := &req.Inputs[i]
		spec, ok := v.inputs[in.Name]
		if !ok {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "unexpected inference input '%s' for model '%s'", in.Name, name)
		}
		if byName[in.Name] != nil {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "input '%s' is given more than once", in.Name)
		}
		byName[in.Name] = in
		if in.DataType != spec.dataType {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "inference input '%s' data-type is '%s', but model '%s' expects '%s'",
				in.Name, in.DataType, name, spec.dataType)
		}
		shape := in.Shape
		if batched {
			if len(shape) == 0 {
				return nil, infer.Errorf(infer.CodeInvalidArgument, "input '%s' has no batch dimension; model '%s' batches (max_batch_size %d), expected shape %v",
					in.Name, name, v.config.MaxBatchSize, append([]int64{-1}, spec.dims...))
			}
			b := shape[0]
			if b < 1 || b > int64(v.config.MaxBatchSize) {
				return nil, infer.Errorf(infer.CodeInvalidArgument, "inference request batch-size must be <= %d for '%s' (input '%s' has batch size %d)",
					v.config.MaxBatchSize, name, in.Name, b)
			}
			if batch >= 0 && b != batch {
				return nil, infer.Errorf(infer.CodeInvalidArgument, "input '%s' has batch size %d, other inputs have %d", in.Name, b, batch)
			}
			batch = b
			shape = shape[1:]
		}
		if !dimsMatch(shape, spec.dims) {
			want := spec.dims
			if batched {
				want = append([]int64{-1}, spec.dims...)
			}
			return nil, infer.Errorf(infer.CodeInvalidArgument, "unexpected shape for input '%s' for model '%s'. Expected %s, got %s",
				in.Name, name, formatShape(want), formatShape(in.Shape))
		}
		if err := in.Validate(); err != nil {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "%v", err)
		}
	}
	out := make([]tensor.Tensor, 0, len(v.config.Input))
	for _, in := range v.config.Input {
		t := byName[in.Name]
		if t == nil {
			if in.Optional {
				continue
			}
			return nil, infer.Errorf(infer.CodeInvalidArgument, "expected %d inputs but got %d inputs for model '%s'; missing input '%s'",
				len(v.config.Input), len(req.Inputs), name, in.Name)
		}
		tt := *t
		if spec := v.inputs[in.Name]; len(spec.reshape) > 0 {
			tt.Shape = batchShape(t.Shape, spec.reshape, batched)
		}
		out = append(out, tt)
	}
	return out, nil
}

// checkOutputs returns the names of the outputs to compute.
func (v *version) checkOutputs(req *infer.Request) ([]string, error) {
	if len(req.Outputs) == 0 {
		return slices.Clone(v.outputOrder), nil
	}
	names := make([]string, 0, len(req.Outputs))
	for _, o := range req.Outputs {
		if _, ok := v.outputs[o.Name]; !ok {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "unexpected inference output '%s' for model '%s'", o.Name, v.config.Name)
		}
		if slices.Contains(names, o.Name) {
			return nil, infer.Errorf(infer.CodeInvalidArgument, "output '%s' is requested more than once", o.Name)
		}
		names = append(names, o.Name)
	}
	return names, nil
}

func dimsMatch(got, want []int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if want[i] != -1 && got[i] != want[i] {
			return false
		}
	}
	return true
}

// batchShape replaces the per-item part of shape with dims (a reshape).
// A -1 in dims takes the request's own dimension at that place.
func batchShape(shape, dims []int64, batched bool) []int64 {
	out := make([]int64, 0, len(dims)+1)
	if batched && len(shape) > 0 {
		out = append(out, shape[0])
		shape = shape[1:]
	}
	for i, d := range dims {
		if d == -1 && i < len(shape) {
			d = shape[i]
		}
		out = append(out, d)
	}
	return out
}

func formatShape(s []int64) string {
	b := []byte{'['}
	for i, d := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Append(b, d)
	}
	return string(append(b, ']'))
}
