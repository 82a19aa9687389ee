package exec

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/helixflow/helixflow/workers/backend/cuda/lower"
)

// Weights are a model's constants uploaded to one device, shared by the
// model's instances there.
type Weights struct {
	dev     Device
	base    Ptr
	offsets []int64
	Bytes   int64
}

// UploadWeights copies every weight of m to the device in one allocation.
func UploadWeights(dev Device, m *lower.Model) (*Weights, error) {
	offsets, total := m.WeightOffsets()
	w := &Weights{dev: dev, offsets: offsets, Bytes: total}
	if total == 0 {
		return w, nil
	}
	base, err := dev.Alloc(total)
	if err != nil {
		return nil, fmt.Errorf("weights (%d bytes): %w", total, err)
	}
	w.base = base
	blob := make([]byte, total)
	for i, t := range m.Weights {
		copy(blob[offsets[i]:], t.Data)
	}
	if err := dev.Upload(base, blob); err != nil {
		_ = dev.Free(base)
		return nil, fmt.Errorf("uploading weights: %w", err)
	}
	return w, nil
}

// Free releases the weights' device memory.
func (w *Weights) Free() error {
	if w.base == 0 {
		return nil
	}
	err := w.dev.Free(w.base)
	w.base = 0
	return err
}

// Options tune a Runner.
type Options struct {
	// GraphBatches are the batch sizes to capture as CUDA graphs at load
	// (where the device can); the others replay their steps one by one.
	GraphBatches []int64
}

// Runner executes one instance of a model: its arena, staging buffers and
// resolved programs. Run is called from one goroutine at a time.
type Runner struct {
	dev     Device
	model   *lower.Model
	module  Module
	weights *Weights
	arena   Ptr
	// ArenaBytes and StagingBytes are this instance's own device and
	// page-locked host memory.
	ArenaBytes   int64
	StagingBytes int64
	staging      []byte
	inAt, outAt  []int64 // staging offset of each input and output
	bound        map[int64]*bound
}

// bound is a program resolved against this instance's memory.
type bound struct {
	prog  *lower.Program
	steps []Prepared
	graph Prepared // the whole step list as one CUDA graph, if captured
	in    []Ptr
	out   []Ptr
}

// NewRunner allocates an instance's arena and staging memory and prepares
// the CUDA graphs opts asks for. module holds the model's kernels
// (compiled once per model and device).
func NewRunner(dev Device, m *lower.Model, module Module, w *Weights, opts Options) (_ *Runner, err error) {
	r := &Runner{dev: dev, model: m, module: module, weights: w, bound: map[int64]*bound{}}
	defer func() {
		if err != nil {
			_ = r.Close()
		}
	}()
	r.ArenaBytes = m.ArenaBytes()
	if r.ArenaBytes > 0 {
		if r.arena, err = dev.Alloc(r.ArenaBytes); err != nil {
			return nil, fmt.Errorf("activation arena (%d bytes): %w", r.ArenaBytes, err)
		}
	}
	// Staging: each input and output gets room for the largest batch.
	var at int64
	largest := m.Largest()
	for _, b := range largest.Inputs {
		r.inAt = append(r.inAt, at)
		at += align(b.Bytes)
	}
	for _, b := range largest.Outputs {
		r.outAt = append(r.outAt, at)
		at += align(b.Bytes)
	}
	r.StagingBytes = at
	if at > 0 {
		if r.staging, err = dev.HostAlloc(at); err != nil {
			return nil, fmt.Errorf("page-locked staging memory (%d bytes): %w", at, err)
		}
	}
	for _, b := range opts.GraphBatches {
		if _, ok := m.Programs[b]; !ok {
			continue
		}
		if _, err := r.bind(b, true); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func align(n int64) int64 { return (n + 255) / 256 * 256 }

func (r *Runner) resolve(p *lower.Program) func(lower.Ref) Ptr {
	return func(ref lower.Ref) Ptr {
		if ref.Space == lower.Weights {
			return r.weights.base + Ptr(r.weights.offsets[ref.ID]+ref.Offset)
		}
		return r.arena + Ptr(p.Offsets[ref.ID]+ref.Offset)
	}
}

// bind resolves the program for a batch size once; with capture it also
// records the steps as a CUDA graph where the device can.
func (r *Runner) bind(batch int64, capture bool) (*bound, error) {
	if b, ok := r.bound[batch]; ok {
		return b, nil
	}
	p, err := r.model.Program(batch)
	if err != nil {
		return nil, err
	}
	res := r.resolve(p)
	b := &bound{prog: p}
	release := func() {
		for _, s := range b.steps {
			r.dev.Release(s)
		}
	}
	for _, s := range p.Steps {
		var prep Prepared
		switch {
		case s.Launch != nil:
			prep, err = r.dev.PrepareLaunch(r.module, s.Launch.Kernel, s.Launch.Grid, s.Launch.Block, PackParams(s.Launch.Args, res))
		case s.Gemm != nil:
			var cg CublasGemm
			if cg, err = ToCublas(s.Gemm, res(s.Gemm.A), res(s.Gemm.B), res(s.Gemm.C)); err == nil {
				prep, err = r.dev.PrepareGemm(cg)
			}
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("step %q: %w", s.Node, err)
		}
		b.steps = append(b.steps, prep)
	}
	for _, in := range p.Inputs {
		b.in = append(b.in, res(in.At))
	}
	for _, out := range p.Outputs {
		b.out = append(b.out, res(out.At))
	}
	if gd, ok := r.dev.(GraphDevice); ok && capture && len(b.steps) > 0 {
		g, err := r.capture(gd, b)
		if err != nil && !errors.Is(err, ErrNotSupported) {
			release()
			return nil, fmt.Errorf("capturing batch %d as a CUDA graph: %w", batch, err)
		}
		b.graph = g
	}
	r.bound[batch] = b
	return b, nil
}

func (r *Runner) capture(gd GraphDevice, b *bound) (Prepared, error) {
	if err := gd.BeginCapture(); err != nil {
		return nil, err
	}
	for _, s := range b.steps {
		if err := r.dev.Enqueue(s); err != nil {
			_, _ = gd.EndCapture()
			return nil, err
		}
	}
	return gd.EndCapture()
}

// Run executes the model on one batch: inputs are the model's inputs in
// order (each the bytes of its binding for this batch size); it returns
// the outputs in order, in fresh memory.
func (r *Runner) Run(ctx context.Context, batch int64, inputs [][]byte) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := r.bind(batch, false)
	if err != nil {
		return nil, err
	}
	p := b.prog
	if len(inputs) != len(p.Inputs) {
		return nil, fmt.Errorf("%d inputs, the model has %d", len(inputs), len(p.Inputs))
	}
	for i, in := range p.Inputs {
		if int64(len(inputs[i])) != in.Bytes {
			return nil, fmt.Errorf("input %q: %d bytes, want %d for %v", in.Name, len(inputs[i]), in.Bytes, in.Shape)
		}
		stage := r.staging[r.inAt[i] : r.inAt[i]+in.Bytes]
		copy(stage, inputs[i])
		if in.Bytes > 0 {
			if err := r.dev.CopyToDevice(b.in[i], stage); err != nil {
				return nil, fmt.Errorf("input %q to the device: %w", in.Name, err)
			}
		}
	}
	if b.graph != nil {
		if err := r.dev.Enqueue(b.graph); err != nil {
			return nil, fmt.Errorf("CUDA graph for batch %d: %w", batch, err)
		}
	} else {
		for i, s := range b.steps {
			if err := r.dev.Enqueue(s); err != nil {
				return nil, fmt.Errorf("step %q: %w", p.Steps[i].Node, err)
			}
		}
	}
	for i, out := range p.Outputs {
		if out.Bytes > 0 {
			if err := r.dev.CopyToHost(r.staging[r.outAt[i]:r.outAt[i]+out.Bytes], b.out[i]); err != nil {
				return nil, fmt.Errorf("output %q to the host: %w", out.Name, err)
			}
		}
	}
	if err := r.dev.Sync(); err != nil {
		return nil, err
	}
	outs := make([][]byte, len(p.Outputs))
	for i, out := range p.Outputs {
		outs[i] = slices.Clone(r.staging[r.outAt[i] : r.outAt[i]+out.Bytes])
	}
	return outs, nil
}

// StepTime is one step's device time.
type StepTime struct {
	Node   string
	Kind   string // "gemm" or the kernel's name
	Millis float64
	// GEMM shape, for rates.
	M, N, K, Batch int64
}

// Profile runs the steps of one batch (on whatever the arena holds) with
// an event around each and returns their device times.
func (r *Runner) Profile(batch int64) ([]StepTime, error) {
	td, ok := r.dev.(TimingDevice)
	if !ok {
		return nil, ErrNotSupported
	}
	b, err := r.bind(batch, false)
	if err != nil {
		return nil, err
	}
	events := make([]Event, len(b.steps)+1)
	defer func() {
		for _, e := range events {
			if e != nil {
				td.DestroyEvent(e)
			}
		}
	}()
	for i := range events {
		if events[i], err = td.NewEvent(); err != nil {
			return nil, err
		}
	}
	if err := td.Record(events[0]); err != nil {
		return nil, err
	}
	for i, s := range b.steps {
		if err := r.dev.Enqueue(s); err != nil {
			return nil, err
		}
		if err := td.Record(events[i+1]); err != nil {
			return nil, err
		}
	}
	if err := r.dev.Sync(); err != nil {
		return nil, err
	}
	out := make([]StepTime, len(b.steps))
	for i, s := range b.prog.Steps {
		ms, err := td.Elapsed(events[i], events[i+1])
		if err != nil {
			return nil, err
		}
		st := StepTime{Node: s.Node, Millis: ms}
		if s.Gemm != nil {
			st.Kind = "gemm"
			st.M, st.N, st.K, st.Batch = s.Gemm.M, s.Gemm.N, s.Gemm.K, s.Gemm.Batch
		} else {
			st.Kind = s.Launch.Kernel
		}
		out[i] = st
	}
	return out, nil
}

// Close releases the instance's memory and prepared work (not the
// weights or the module, which the model's instances share).
func (r *Runner) Close() error {
	var errs []error
	for _, b := range r.bound {
		for _, s := range b.steps {
			r.dev.Release(s)
		}
		if b.graph != nil {
			r.dev.Release(b.graph)
		}
	}
	r.bound = nil
	if r.staging != nil {
		errs = append(errs, r.dev.HostFree(r.staging))
		r.staging = nil
	}
	if r.arena != 0 {
		errs = append(errs, r.dev.Free(r.arena))
		r.arena = 0
	}
	return errors.Join(errs...)
}
