package lower

import (
	"fmt"
	"slices"

	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/kernels"
	"github.com/helixflow/helixflow/workers/backend/cuda/plan"
)

// blockSize is the thread count of the one-dimensional kernels.
const blockSize = 256

// maxGrid bounds the blocks of a grid-stride kernel.
const maxGrid = 65535

// lowerer builds one Program.
type lowerer struct {
	m    *Model
	g    *graph.Graph
	s    *graph.Shapes
	prog *Program
	// refs says where each device value lives.
	refs map[string]Ref
	// groups maps a node to its fused elementwise group.
	groups    map[*graph.Node]*group
	consumers map[string][]*graph.Node
}

func (m *Model) lower(batch int64) (*Program, error) {
	g := m.graph
	shapes := make(map[string][]int64, len(g.Inputs))
	for _, in := range g.Inputs {
		s := slices.Clone(in.Shape)
		if m.Batched {
			s[0] = batch
		}
		shapes[in.Name] = s
	}
	s, err := g.Infer(shapes)
	if err != nil {
		return nil, err
	}
	l := &lowerer{m: m, g: g, s: s, prog: &Program{Batch: batch}, refs: map[string]Ref{}, consumers: g.Consumers()}
	if err := l.inputs(); err != nil {
		return nil, err
	}
	l.groups = l.fuse()
	for _, n := range g.Nodes {
		if err := l.node(n); err != nil {
			return nil, err
		}
	}
	if err := l.outputs(); err != nil {
		return nil, err
	}
	p := l.prog
	p.Offsets, p.ArenaBytes, err = plan.Place(p.Buffers)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// stepIndex is the lifetime index of the next step: inputs are written at
// 0, step i runs at i+1, outputs are read after the last step.
func (l *lowerer) stepIndex() int { return len(l.prog.Steps) + 1 }

// newBuf adds an arena buffer written by the next step.
func (l *lowerer) newBuf(bytes int64) Ref {
	at := l.stepIndex()
	l.prog.Buffers = append(l.prog.Buffers, plan.Buffer{Size: bytes, First: at, Last: at})
	return Ref{Space: Arena, ID: len(l.prog.Buffers) - 1}
}

// use keeps an arena buffer alive through the next step.
func (l *lowerer) use(r Ref) {
	if r.Space == Arena {
		b := &l.prog.Buffers[r.ID]
		b.Last = max(b.Last, l.stepIndex())
	}
}

func (l *lowerer) info(name string) graph.Info {
	i := l.s.Info[name]
	i.DType = l.m.DeviceType(i.DType)
	return i
}

func (l *lowerer) bytes(name string) int64 {
	i := l.info(name)
	return graph.Numel(i.Shape) * int64(i.DType.Size())
}

// ref is where a value the next step reads lives: an activation, or a
// constant uploaded with the weights.
func (l *lowerer) ref(name string, reader *graph.Node) (Ref, error) {
	if r, ok := l.refs[name]; ok {
		l.use(r)
		return r, nil
	}
	if t := l.g.Consts[name]; t != nil {
		return l.m.weight(name, t), nil
	}
	if l.s.Host[name] != nil {
		return Ref{}, fmt.Errorf("%w: %s reads %q as data, but it is computed from shapes on the host", ErrUnsupported, reader, name)
	}
	return Ref{}, fmt.Errorf("%s reads %q, which no step computed", reader, name)
}

// output gives a node output a new arena buffer.
func (l *lowerer) output(name string) Ref {
	r := l.newBuf(l.bytes(name))
	l.refs[name] = r
	return r
}

func (l *lowerer) launch(node string, k kernels.Kernel, grid, block [3]uint32, args ...Arg) {
	l.m.Kernels[k.Name] = k
	l.prog.Steps = append(l.prog.Steps, Step{Node: node, Launch: &Launch{Kernel: k.Name, Grid: grid, Block: block, Args: args}})
}

func (l *lowerer) gemm(node string, g Gemm) {
	l.prog.Steps = append(l.prog.Steps, Step{Node: node, Gemm: &g})
}

func grid1D(n int64) [3]uint32 {
	return [3]uint32{uint32(min((n+blockSize-1)/blockSize, maxGrid)), 1, 1}
}

var block1D = [3]uint32{blockSize, 1, 1}

func rowsGrid(rows int64) [3]uint32 {
	return [3]uint32{uint32((rows + kernels.WarpsPerBlock - 1) / kernels.WarpsPerBlock), 1, 1}
}

var rowsBlock = [3]uint32{32 * kernels.WarpsPerBlock, 1, 1}

func ptr(r Ref) Arg     { return Arg{Kind: kernels.Ptr, Ref: r} }
func i64(v int64) Arg   { return Arg{Kind: kernels.I64, I: v} }
func f32(v float32) Arg { return Arg{Kind: kernels.F32, F: v} }
func dims(d []int64) Arg {
	a := Arg{Kind: kernels.DimsParam}
	copy(a.Dims[:], d)
	return a
}

// inputs gives each model input its staging buffer (the type the model
// declares), converted to the device type where the precision differs.
func (l *lowerer) inputs() error {
	for _, in := range l.g.Inputs {
		host := l.s.Info[in.Name]
		staging := l.newBuf(graph.Numel(host.Shape) * int64(host.DType.Size()))
		l.prog.Buffers[staging.ID].First = 0
		l.prog.Inputs = append(l.prog.Inputs, Binding{
			Name: in.Name, DType: host.DType, Shape: host.Shape, At: staging,
			Bytes: graph.Numel(host.Shape) * int64(host.DType.Size()),
		})
		l.refs[in.Name] = staging
		if dev := l.m.DeviceType(host.DType); dev != host.DType {
			out := l.newBuf(l.bytes(in.Name))
			if err := l.cast(in.Name+"::to_device", staging, host.DType, out, dev, graph.Numel(host.Shape)); err != nil {
				return err
			}
			l.refs[in.Name] = out
		}
	}
	return nil
}

// outputs binds each model output, converted back to the type the model
// declares where the precision differs.
func (l *lowerer) outputs() error {
	end := l.stepIndex()
	for _, out := range l.g.Outputs {
		host := l.s.Info[out.Name]
		r, err := l.ref(out.Name, &graph.Node{Op: "output", Outputs: []string{out.Name}})
		if err != nil {
			return err
		}
		if dev := l.m.DeviceType(host.DType); dev != host.DType {
			conv := l.newBuf(graph.Numel(host.Shape) * int64(host.DType.Size()))
			l.use(r)
			if err := l.cast(out.Name+"::to_host", r, dev, conv, host.DType, graph.Numel(host.Shape)); err != nil {
				return err
			}
			r = conv
		}
		l.prog.Outputs = append(l.prog.Outputs, Binding{
			Name: out.Name, DType: host.DType, Shape: host.Shape, At: r,
			Bytes: graph.Numel(host.Shape) * int64(host.DType.Size()),
		})
	}
	end = max(end, l.stepIndex())
	for _, b := range l.prog.Outputs {
		if b.At.Space == Arena {
			l.prog.Buffers[b.At.ID].Last = end
		}
	}
	return nil
}

// cast converts n contiguous elements with an elementwise kernel.
func (l *lowerer) cast(node string, from Ref, fromType graph.DType, to Ref, toType graph.DType, n int64) error {
	k, err := kernels.Elementwise{Inputs: []graph.DType{fromType}, Ops: []kernels.EWOp{{Op: "Cast", Args: []int{0}, DType: toType}}}.Kernel()
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	l.launch(node, k, grid1D(n), block1D, ptr(to), ptr(from), i64(n), i64(1), dims([]int64{n}), i64(0), dims(nil))
	return nil
}

// node lowers one graph node (or, for a fused group, the whole group at
// its last node).
func (l *lowerer) node(n *graph.Node) error {
	if g := l.groups[n]; g != nil {
		if g.root != n {
			return nil
		}
		return l.elementwise(g)
	}
	allHost := true
	for _, o := range n.Outputs {
		if o != "" && l.s.Host[o] == nil {
			allHost = false
		}
	}
	if allHost {
		return nil // computed on the host from shapes; never needed on the device
	}
	switch n.Op {
	case "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity":
		r, err := l.ref(n.Inputs[0], n)
		if err != nil {
			return err
		}
		l.refs[n.Outputs[0]] = r
		return nil
	case "MatMul":
		return l.matmul(n)
	case "Gemm":
		return l.gemmNode(n)
	case "Conv":
		return l.conv(n)
	case "MaxPool", "AveragePool":
		return l.pool(n)
	case "GlobalAveragePool":
		return l.globalPool(n)
	case "Softmax":
		return l.softmax(n)
	case "LayerNormalization":
		return l.layerNorm(n)
	case "Transpose":
		return l.transpose(n)
	case "Slice":
		return l.slice(n)
	case "Concat":
		return l.concat(n)
	case "Gather":
		return l.gather(n)
	}
	if graph.IsElementwise(n.Op) {
		return fmt.Errorf("%w: %s on %s", ErrUnsupported, n, l.info(n.Outputs[0]).DType)
	}
	return fmt.Errorf("%w: %s cannot run on the device here", ErrUnsupported, n)
}

// unusedOutputs refuses optional outputs that something reads.
func (l *lowerer) unusedOutputs(n *graph.Node, from int) error {
	for _, o := range n.Outputs[from:] {
		if o != "" && (len(l.consumers[o]) > 0 || l.g.IsOutput(o)) {
			return fmt.Errorf("%w: %s: output %q is not computed", ErrUnsupported, n, o)
		}
	}
	return nil
}
