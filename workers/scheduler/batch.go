package scheduler

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// batchSize checks r's inputs and returns its batch size: the inputs' shared
// first dimension for a model that batches, 1 for one that does not.
func (s *Scheduler) batchSize(r *Request) (int, error) {
	for i := range r.Inputs {
		in := &r.Inputs[i]
		// Models have few inputs: a scan beats a map.
		if slices.ContainsFunc(r.Inputs[:i], func(t tensor.Tensor) bool { return t.Name == in.Name }) {
			return 0, infer.Errorf(infer.CodeInvalidArgument, "input '%s' is given more than once for '%s'", in.Name, s.cfg.Model)
		}
		// Batched inputs are cut apart by their data size, so a tensor whose
		// data disagrees with its shape would corrupt its neighbours.
		if err := in.Validate(); err != nil {
			return 0, infer.Errorf(infer.CodeInvalidArgument, "model '%s': %w", s.cfg.Model, err)
		}
	}
	if s.cfg.MaxBatchSize == 0 {
		return 1, nil
	}
	if len(r.Inputs) == 0 {
		return 0, infer.Errorf(infer.CodeInvalidArgument, "request has no inputs but model '%s' requires a batch dimension", s.cfg.Model)
	}
	var size int64
	for i, in := range r.Inputs {
		if len(in.Shape) == 0 {
			return 0, infer.Errorf(infer.CodeInvalidArgument, "input '%s' has no shape but model requires batch dimension for '%s'", in.Name, s.cfg.Model)
		}
		if i == 0 {
			size = in.Shape[0]
		} else if in.Shape[0] != size {
			return 0, infer.Errorf(infer.CodeInvalidArgument, "input '%s' batch size %d does not match input '%s' batch size %d for '%s'",
				in.Name, in.Shape[0], r.Inputs[0].Name, size, s.cfg.Model)
		}
	}
	if size < 1 {
		return 0, infer.Errorf(infer.CodeInvalidArgument, "inference request batch-size must be >= 1 for '%s', got %d", s.cfg.Model, size)
	}
	if size > int64(s.cfg.MaxBatchSize) {
		return 0, infer.Errorf(infer.CodeInvalidArgument, "inference request batch-size must be <= %d for '%s', got %d",
			s.cfg.MaxBatchSize, s.cfg.Model, size)
	}
	return int(size), nil
}

// batchKey is equal for two requests exactly when their inputs can be
// concatenated (same names, datatypes and per-item shapes) and they ask for
// the same outputs in the same order.
func batchKey(r *Request) string {
	ins := make([]*tensor.Tensor, len(r.Inputs))
	for i := range r.Inputs {
		ins[i] = &r.Inputs[i]
	}
	slices.SortFunc(ins, func(a, b *tensor.Tensor) int { return cmp.Compare(a.Name, b.Name) })
	var k strings.Builder
	for _, in := range ins {
		k.WriteString(in.Name)
		k.WriteByte(0)
		k.WriteString(string(in.DataType))
		for _, d := range in.Shape[1:] {
			k.WriteByte(',')
			k.WriteString(strconv.FormatInt(d, 10))
		}
		k.WriteByte(0)
	}
	k.WriteByte(1)
	for _, o := range r.Outputs {
		k.WriteString(o)
		k.WriteByte(0)
	}
	return k.String()
}

// joinInputs concatenates the requests' inputs along the batch dimension, in
// the input order of the first request. Requests must share a batchKey.
func joinInputs(reqs []*Request) ([]tensor.Tensor, error) {
	if len(reqs) == 1 {
		return reqs[0].Inputs, nil
	}
	joined := make([]tensor.Tensor, len(reqs[0].Inputs))
	parts := make([]tensor.Tensor, len(reqs))
	for i, in := range reqs[0].Inputs {
		for j, r := range reqs {
			k := slices.IndexFunc(r.Inputs, func(t tensor.Tensor) bool { return t.Name == in.Name })
			if k < 0 {
				return nil, infer.Errorf(infer.CodeInternal, "batched request lacks input '%s'", in.Name)
			}
			parts[j] = r.Inputs[k]
		}
		t, err := tensor.Concat(parts)
		if err != nil {
			return nil, infer.Errorf(infer.CodeInternal, "batching input '%s': %w", in.Name, err)
		}
		joined[i] = t
	}
	return joined, nil
}

// SplitOutputs cuts every output along the batch dimension into one piece
// per request (sizes: each request's rows); pieces[i] holds request i's
// outputs. The sequence batcher uses it too.
func SplitOutputs(outs []tensor.Tensor, sizes []int64) ([][]tensor.Tensor, error) {
	var total int64
	for _, n := range sizes {
		total += n
	}
	pieces := make([][]tensor.Tensor, len(sizes))
	for i := range pieces {
		pieces[i] = make([]tensor.Tensor, len(outs))
	}
	for j, out := range outs {
		if len(out.Shape) == 0 || out.Shape[0] != total {
			return nil, infer.Errorf(infer.CodeInternal, "output '%s' has shape %v, its first dimension must be the batch size %d", out.Name, out.Shape, total)
		}
		split, err := tensor.Split(out, sizes)
		if err != nil {
			return nil, infer.Errorf(infer.CodeInternal, "splitting output '%s': %w", out.Name, err)
		}
		for i, t := range split {
			pieces[i][j] = t
		}
	}
	return pieces, nil
}
