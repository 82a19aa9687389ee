// Package lower turns a folded ONNX graph into programs for the GPU: for
// each batch size, a list of steps (kernel launches and cuBLAS GEMMs) over
// buffers placed in one activation arena, and, shared by all batch sizes,
// the weights to upload and the kernels to compile. Programs hold offsets,
// not addresses, and nothing here touches a device.
package lower

import (
	"errors"
	"fmt"
	"slices"

	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/kernels"
	"github.com/helixflow/helixflow/workers/backend/cuda/plan"
)

// Precision is how float32 tensors are computed.
type Precision string

// Precisions: float32 (with exact float32 GEMMs, or TF32 tensor-core
// GEMMs), or every float32 tensor held as float16 or bfloat16 with float32
// accumulation.
const (
	FP32 Precision = "fp32"
	TF32 Precision = "tf32"
	FP16 Precision = "fp16"
	BF16 Precision = "bf16"
)

// ParsePrecision validates a precision name ("" is fp32).
func ParsePrecision(s string) (Precision, error) {
	switch p := Precision(s); p {
	case "":
		return FP32, nil
	case FP32, TF32, FP16, BF16:
		return p, nil
	}
	return "", fmt.Errorf("precision %q: want fp32, tf32, fp16 or bf16", s)
}

// Options tune the lowering.
type Options struct {
	Precision Precision
	// WorkspaceBytes bounds the im2col buffer of one convolution; the
	// batch is unfolded in chunks that fit (0: 128 MiB).
	WorkspaceBytes int64
}

// Space is where a Ref points.
type Space uint8

// Spaces: the activation arena of one instance, or the weights shared by a
// model's instances.
const (
	Arena Space = iota
	Weights
)

// Ref is a place in device memory: a buffer of the arena (by index in
// Program.Buffers) or a weight (by index in Model.Weights), plus a byte
// offset into it.
type Ref struct {
	Space  Space
	ID     int
	Offset int64
}

// Add returns the Ref bytes further on.
func (r Ref) Add(bytes int64) Ref { r.Offset += bytes; return r }

// Arg is one kernel argument.
type Arg struct {
	Kind kernels.ParamKind
	Ref  Ref // Ptr
	I    int64
	F    float32
	Dims [kernels.MaxRank]int64
}

// Launch is one kernel launch.
type Launch struct {
	Kernel string
	Grid   [3]uint32
	Block  [3]uint32
	Args   []Arg
}

// Gemm is a (strided batched) matrix product in row-major terms:
// C[b] = Alpha * op(A[b]) op(B[b]) + Beta * C[b] with op(A) M×K, op(B) K×N
// and C M×N; LD* are the row strides and Stride* the batch strides, in
// elements. A, B and C have element type DType; products accumulate in
// float32 (or TF32 tensor-core math where TF32 is set).
type Gemm struct {
	M, N, K                   int64
	TransA, TransB            bool
	A, B, C                   Ref
	LDA, LDB, LDC             int64
	StrideA, StrideB, StrideC int64
	Batch                     int64
	Alpha, Beta               float32
	DType                     graph.DType
	TF32                      bool
}

// Step is one unit of device work.
type Step struct {
	// Node names what the step computes (for errors and profiles).
	Node   string
	Launch *Launch
	Gemm   *Gemm
}

// Binding is a model input or output: its type and shape as the model
// declares them (host side) and where its bytes live on the device.
type Binding struct {
	Name  string
	DType graph.DType
	Shape []int64
	At    Ref
	Bytes int64
}

// Program computes the model for one batch size.
type Program struct {
	Batch      int64
	Steps      []Step
	Buffers    []plan.Buffer
	Offsets    []int64
	ArenaBytes int64
	Inputs     []Binding
	Outputs    []Binding
}

// Model is a graph lowered for every batch size it serves.
type Model struct {
	Options Options
	// Batched models take the batch as the first dimension of every input
	// and output; Programs then has one program per size 1..MaxBatch.
	Batched  bool
	MaxBatch int64
	// Weights are the constants the device reads, already in the type the
	// device uses; WeightNames names them.
	Weights     []*graph.Tensor
	WeightNames []string
	// Kernels are all the kernels the programs launch, by name.
	Kernels  map[string]kernels.Kernel
	Programs map[int64]*Program

	graph   *graph.Graph
	weights map[string]int
}

// ErrUnsupported is graph.ErrUnsupported: lowering refuses what the
// kernels cannot run with it too.
var ErrUnsupported = graph.ErrUnsupported

// Compile lowers a folded graph for batch sizes 1..maxBatch (maxBatch > 0:
// the first dimension of every input is the batch), or for the shapes the
// model declares (maxBatch 0). Every other dimension must be fixed.
func Compile(g *graph.Graph, opts Options, maxBatch int64) (*Model, error) {
	if opts.Precision == "" {
		opts.Precision = FP32
	}
	if opts.WorkspaceBytes <= 0 {
		opts.WorkspaceBytes = 128 << 20
	}
	m := &Model{
		Options: opts, Batched: maxBatch > 0, MaxBatch: maxBatch,
		Kernels: map[string]kernels.Kernel{}, Programs: map[int64]*Program{},
		graph: g, weights: map[string]int{},
	}
	for _, io := range slices.Concat(g.Inputs, g.Outputs) {
		if !kernels.Supported(io.DType) {
			return nil, fmt.Errorf("%w: %q has element type %s, which the GPU kernels do not hold", ErrUnsupported, io.Name, io.DType)
		}
	}
	for _, in := range g.Inputs {
		for i, d := range in.Shape {
			if d < 0 && (i > 0 || !m.Batched) {
				return nil, fmt.Errorf("%w: input %q has shape %v: every dimension but the batch must be fixed (the cuda backend plans memory per batch size)",
					ErrUnsupported, in.Name, in.Shape)
			}
		}
		if m.Batched && (len(in.Shape) == 0 || in.Shape[0] >= 0) {
			return nil, fmt.Errorf("%w: input %q has shape %v, with no free batch dimension", ErrUnsupported, in.Name, in.Shape)
		}
	}
	sizes := []int64{0}
	if m.Batched {
		sizes = sizes[:0]
		for b := int64(1); b <= maxBatch; b++ {
			sizes = append(sizes, b)
		}
	}
	for _, b := range sizes {
		p, err := m.lower(b)
		if err != nil {
			if m.Batched {
				return nil, fmt.Errorf("batch size %d: %w", b, err)
			}
			return nil, err
		}
		m.Programs[b] = p
	}
	return m, nil
}

// Program returns the program for a batch size (0 for a model that does
// not batch).
func (m *Model) Program(batch int64) (*Program, error) {
	p, ok := m.Programs[batch]
	if !ok {
		if m.Batched {
			return nil, fmt.Errorf("batch size %d is outside 1..%d", batch, m.MaxBatch)
		}
		return nil, errors.New("the model does not batch")
	}
	return p, nil
}

// Largest is the program of the largest batch (the only one of a model
// that does not batch); every program has the same IO names and order.
func (m *Model) Largest() *Program {
	if !m.Batched {
		return m.Programs[0]
	}
	return m.Programs[m.MaxBatch]
}

// ArenaBytes is the largest arena any program needs.
func (m *Model) ArenaBytes() int64 {
	var n int64
	for _, p := range m.Programs {
		n = max(n, p.ArenaBytes)
	}
	return n
}

// WeightBytes is the size of all weights, each aligned to plan.Align.
func (m *Model) WeightBytes() int64 {
	_, total := m.WeightOffsets()
	return total
}

// WeightOffsets places the weights one after another, aligned.
func (m *Model) WeightOffsets() ([]int64, int64) {
	offs := make([]int64, len(m.Weights))
	var at int64
	for i, w := range m.Weights {
		offs[i] = at
		at += (int64(len(w.Data)) + plan.Align - 1) / plan.Align * plan.Align
	}
	return offs, at
}

// KernelList is the kernels sorted by name.
func (m *Model) KernelList() []kernels.Kernel {
	names := make([]string, 0, len(m.Kernels))
	for n := range m.Kernels {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]kernels.Kernel, len(names))
	for i, n := range names {
		out[i] = m.Kernels[n]
	}
	return out
}

// Source is the CUDA C module holding every kernel.
func (m *Model) Source() string { return kernels.Module(m.KernelList()) }

// DeviceType is the element type the device holds for a value of type d.
func (m *Model) DeviceType(d graph.DType) graph.DType {
	if d == graph.Float {
		switch m.Options.Precision {
		case FP16:
			return graph.Float16
		case BF16:
			return graph.BFloat16
		}
	}
	return d
}

// weight registers a constant (converted to the device type) once per
// model and returns its Ref.
func (m *Model) weight(name string, t *graph.Tensor) Ref {
	if id, ok := m.weights[name]; ok {
		return Ref{Space: Weights, ID: id}
	}
	id := len(m.Weights)
	m.Weights = append(m.Weights, t.Convert(m.DeviceType(t.DType)))
	m.WeightNames = append(m.WeightNames, name)
	m.weights[name] = id
	return Ref{Space: Weights, ID: id}
}
