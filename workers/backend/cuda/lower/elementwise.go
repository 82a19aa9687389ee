package lower

import (
	"fmt"
	"slices"

	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/kernels"
)

// group is a set of elementwise nodes computed by one kernel: a tree whose
// root's output is the only one read outside the group.
type group struct {
	root  *graph.Node
	nodes []*graph.Node // in graph order
}

// fusible reports whether n can be part of an elementwise kernel.
func (l *lowerer) fusible(n *graph.Node) bool {
	if !graph.IsElementwise(n.Op) {
		return false
	}
	out := l.info(n.Outputs[0])
	if l.s.Host[n.Outputs[0]] != nil || !kernels.CanFuse(n.Op, out.DType) {
		return false
	}
	for _, in := range n.Inputs {
		if in != "" && !kernels.Supported(l.info(in).DType) {
			return false
		}
	}
	return true
}

// fuse groups elementwise nodes: a node joins the group of the one node
// that reads its output when that node is elementwise too, the output is
// not a model output, and it has the group's full shape (a broadcast
// intermediate would be recomputed per element of the result).
func (l *lowerer) fuse() map[*graph.Node]*group {
	consumers := l.consumers
	groups := map[*graph.Node]*group{}
	nodes := l.g.Nodes
	// Walk backwards so that each node's consumer is grouped first.
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		if !l.fusible(n) {
			continue
		}
		out := n.Outputs[0]
		cs := consumers[out]
		if len(cs) == 1 && !l.g.IsOutput(out) && groups[cs[0]] != nil &&
			slices.Equal(l.info(out).Shape, l.info(cs[0].Outputs[0]).Shape) {
			g := groups[cs[0]]
			g.nodes = append(g.nodes, n)
			groups[n] = g
			continue
		}
		g := &group{root: n, nodes: []*graph.Node{n}}
		groups[n] = g
	}
	for n, g := range groups {
		if g.root == n {
			slices.Reverse(g.nodes) // back to graph order, once per group
		}
	}
	return groups
}

// elementwise lowers a group to one kernel launch.
func (l *lowerer) elementwise(g *group) error {
	var (
		spec    kernels.Elementwise
		inputs  []string           // external inputs, by kernel input index
		valueOf = map[string]int{} // value name -> kernel value index
		opsFor  []kernels.EWOp
	)
	outName := g.root.Outputs[0]
	outInfo := l.info(outName)
	member := map[string]bool{}
	for _, n := range g.nodes {
		member[n.Outputs[0]] = true
	}
	// External inputs first: they are the kernel's first values.
	var literals []string
	for _, n := range g.nodes {
		for _, in := range n.Inputs {
			if in == "" || member[in] {
				continue
			}
			if _, seen := valueOf[in]; seen || slices.Contains(literals, in) {
				continue
			}
			if t := l.g.Consts[in]; t != nil && t.Len() == 1 && kernels.Supported(l.m.DeviceType(t.DType)) {
				literals = append(literals, in)
				continue
			}
			valueOf[in] = len(inputs)
			inputs = append(inputs, in)
			spec.Inputs = append(spec.Inputs, l.info(in).DType)
		}
	}
	next := len(inputs)
	for _, name := range literals {
		t := l.g.Consts[name]
		opsFor = append(opsFor, kernels.EWOp{Op: "Literal", DType: l.m.DeviceType(t.DType), Literal: t.Floats()[0]})
		valueOf[name] = next
		next++
	}
	for _, n := range g.nodes {
		op := kernels.EWOp{Op: n.Op, DType: l.info(n.Outputs[0]).DType, Approximate: n.Str("approximate", "none")}
		for _, in := range n.Inputs {
			op.Args = append(op.Args, valueOf[in])
		}
		opsFor = append(opsFor, op)
		valueOf[n.Outputs[0]] = next
		next++
	}
	spec.Ops = opsFor
	spec.Index32 = fits32(graph.Numel(outInfo.Shape))
	for _, in := range inputs {
		spec.Index32 = spec.Index32 && fits32(graph.Numel(l.info(in).Shape))
	}
	k, err := spec.Kernel()
	if err != nil {
		return fmt.Errorf("%s: %w", g.root, err)
	}

	// Arguments: the iteration shape and each input's strides in it,
	// with dimensions merged where every operand allows.
	shape := outInfo.Shape
	strides := make([][]int64, len(inputs))
	for i, in := range inputs {
		strides[i] = broadcastStrides(l.info(in).Shape, shape)
	}
	cshape, cstrides := collapse(shape, strides)
	if len(cshape) > kernels.MaxRank {
		return fmt.Errorf("%w: %s: broadcasting over %d dimensions (at most %d)", ErrUnsupported, g.root, len(cshape), kernels.MaxRank)
	}
	n := graph.Numel(shape)
	var refs []Ref
	for _, in := range inputs {
		r, err := l.ref(in, g.root)
		if err != nil {
			return err
		}
		refs = append(refs, r)
	}
	out := l.output(outName)
	if n == 0 {
		return nil
	}
	args := []Arg{ptr(out)}
	for _, r := range refs {
		args = append(args, ptr(r))
	}
	var modes int64
	strideArgs := make([]Arg, len(inputs))
	for i, in := range inputs {
		mode := int64(kernels.ModeStrided)
		strideArgs[i] = dims(cstrides[i])
		switch period, trailing := trailingPeriod(cshape, cstrides[i]); {
		case graph.Numel(l.info(in).Shape) == 1:
			mode = kernels.ModeScalar
		case slices.Equal(cstrides[i], contiguous(cshape)):
			mode = kernels.ModeContiguous
		case trailing:
			mode = kernels.ModeTrailing
			strideArgs[i] = dims([]int64{period})
		}
		modes |= mode << (2 * i)
	}
	args = append(args, i64(n), i64(int64(len(cshape))), dims(cshape), i64(modes))
	args = append(args, strideArgs...)
	l.launch(g.root.Name, k, grid1D(n), block1D, args...)
	return nil
}

// contiguous is the row-major strides of shape.
func contiguous(shape []int64) []int64 {
	st := make([]int64, len(shape))
	acc := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = acc
		acc *= shape[i]
	}
	return st
}

// broadcastStrides are in's strides in out's index space (0 where in is
// broadcast).
func broadcastStrides(in, out []int64) []int64 {
	st := contiguous(in)
	res := make([]int64, len(out))
	off := len(out) - len(in)
	for i := range in {
		if in[i] != 1 {
			res[off+i] = st[i]
		}
	}
	return res
}

// collapse drops dimensions of size 1 and merges neighbours that every
// stride set walks as one (stride[d] == stride[d+1] * shape[d+1]).
func collapse(shape []int64, strides [][]int64) ([]int64, [][]int64) {
	var cs []int64
	cst := make([][]int64, len(strides))
	for d, n := range shape {
		if n == 1 {
			continue
		}
		if len(cs) > 0 {
			last := len(cs) - 1
			merge := true
			for k := range strides {
				if cst[k][last] != strides[k][d]*n {
					merge = false
					break
				}
			}
			if merge {
				cs[last] *= n
				for k := range strides {
					cst[k][last] = strides[k][d]
				}
				continue
			}
		}
		cs = append(cs, n)
		for k := range strides {
			cst[k] = append(cst[k], strides[k][d])
		}
	}
	if cs == nil {
		cs = []int64{1}
		for k := range cst {
			cst[k] = []int64{0}
		}
	}
	return cs, cst
}

// fits32 reports whether element indices of a tensor this size fit 32 bits.
func fits32(n int64) bool { return n < 1<<31 }

// trailingPeriod reports whether an input reads the same contiguous block
// for every index of the leading dimensions (a bias over the last
// dimensions): its strides are zero on a prefix and contiguous on the rest.
// The period is the block's length.
func trailingPeriod(shape, st []int64) (int64, bool) {
	k := len(shape)
	for k > 0 && st[k-1] != 0 {
		k--
	}
	if k == 0 || k == len(shape) {
		return 0, false
	}
	for _, v := range st[:k] {
		if v != 0 {
			return 0, false
		}
	}
	if !slices.Equal(st[k:], contiguous(shape[k:])) {
		return 0, false
	}
	return graph.Numel(shape[k:]), true
}
