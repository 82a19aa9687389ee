package graph

import (
	"fmt"
	"maps"
	"math"
	"slices"
)

// Shapes is what Infer learns for concrete input shapes.
type Shapes struct {
	// Info has every value's type and shape.
	Info map[string]Info
	// Host holds the values known on the host: the graph's constants and
	// the values computed from shapes alone (Shape, and arithmetic on it).
	Host map[string]*Tensor
}

// Infer computes the type and shape of every value for the given input
// shapes (every input named, every dimension concrete), evaluating on the
// host what depends on shapes and constants alone.
func (g *Graph) Infer(inputs map[string][]int64) (*Shapes, error) {
	s := &Shapes{Info: make(map[string]Info, len(g.Nodes)+len(g.Inputs)), Host: maps.Clone(g.Consts)}
	for name, t := range g.Consts {
		s.Info[name] = t.Info()
	}
	for _, in := range g.Inputs {
		shape, ok := inputs[in.Name]
		if !ok {
			return nil, fmt.Errorf("no shape given for input %q", in.Name)
		}
		if len(shape) != len(in.Shape) {
			return nil, fmt.Errorf("input %q: shape %v, the model declares rank %d (%v)", in.Name, shape, len(in.Shape), in.Shape)
		}
		for i, d := range shape {
			if d < 0 || (in.Shape[i] >= 0 && in.Shape[i] != d) {
				return nil, fmt.Errorf("input %q: shape %v does not fit the model's %v", in.Name, shape, in.Shape)
			}
		}
		s.Info[in.Name] = Info{DType: in.DType, Shape: slices.Clone(shape)}
	}
	for _, n := range g.Nodes {
		if err := s.node(n, g.Opset); err != nil {
			return nil, err
		}
	}
	for _, out := range g.Outputs {
		got := s.Info[out.Name]
		if got.DType != out.DType {
			return nil, fmt.Errorf("%w: output %q is %s, the model declares %s", ErrInvalid, out.Name, got.DType, out.DType)
		}
	}
	return s, nil
}

func (s *Shapes) node(n *Node, opset int64) error {
	def := ops[n.Op]
	c := &opCtx{n: n, opset: opset, in: make([]Info, len(n.Inputs)), host: make([]*Tensor, len(n.Inputs))}
	allHost := true
	for i, name := range n.Inputs {
		if name == "" {
			continue
		}
		c.in[i] = s.Info[name]
		c.host[i] = s.Host[name]
		allHost = allHost && c.host[i] != nil
	}
	var infos []Info
	if def.eval != nil && (def.fromInfo || allHost) && s.smallEnough(def, c) {
		ts, err := def.eval(c)
		if err != nil {
			return err
		}
		for i, t := range ts {
			s.Host[n.Outputs[i]] = t
			infos = append(infos, t.Info())
		}
	} else {
		var err error
		if infos, err = def.infer(c); err != nil {
			return err
		}
	}
	for i, out := range n.Outputs {
		if out == "" {
			continue
		}
		if i >= len(infos) {
			return fmt.Errorf("%w: %s: output %d", ErrUnsupported, n, i)
		}
		s.Info[out] = infos[i]
	}
	return nil
}

// smallEnough reports whether a node's outputs are small enough to compute
// on the host (operators that only read shapes always are).
func (s *Shapes) smallEnough(def opDef, c *opCtx) bool {
	if def.fromInfo {
		return true
	}
	infos, err := def.infer(c)
	return err != nil || hostSized(infos) // an error is reported by eval
}

// Fold simplifies the graph at load: Constant nodes and nodes computed
// from constants alone become constants, Identity nodes disappear,
// BatchNormalization after a Conv is folded into the Conv's weights and a
// lone one becomes a Mul and an Add, the biases of Gemm and Conv become
// Adds of their own (to fuse with what follows), and nodes nothing reads
// are dropped.
func (g *Graph) Fold() error {
	if err := g.foldConstants(); err != nil {
		return err
	}
	g.dropIdentities()
	if err := g.foldBatchNorms(); err != nil {
		return err
	}
	g.splitBiases()
	g.dropDead()
	return g.Validate()
}

func (g *Graph) foldConstants() error {
	kept := g.Nodes[:0]
	for _, n := range g.Nodes {
		def := ops[n.Op]
		foldable := def.eval != nil && (n.Op == "Constant" || !def.fromInfo)
		for _, in := range n.Inputs {
			if in != "" && g.Consts[in] == nil {
				foldable = false
			}
		}
		if !foldable {
			kept = append(kept, n)
			continue
		}
		c := &opCtx{n: n, opset: g.Opset, in: make([]Info, len(n.Inputs)), host: make([]*Tensor, len(n.Inputs))}
		for i, in := range n.Inputs {
			if in != "" {
				c.host[i] = g.Consts[in]
				c.in[i] = c.host[i].Info()
			}
		}
		if n.Op != "Constant" {
			if infos, err := def.infer(c); err == nil && !hostSized(infos) {
				kept = append(kept, n) // too large to fold: the device computes it
				continue
			}
		}
		ts, err := def.eval(c)
		if err != nil {
			return err
		}
		for i, t := range ts {
			g.Consts[n.Outputs[i]] = t
		}
	}
	g.Nodes = kept
	return nil
}

// dropIdentities rewires the readers of an Identity's output to its input,
// unless the output is a graph output.
func (g *Graph) dropIdentities() {
	rename := map[string]string{}
	kept := g.Nodes[:0]
	for _, n := range g.Nodes {
		for i, in := range n.Inputs {
			if r, ok := rename[in]; ok {
				n.Inputs[i] = r
			}
		}
		if n.Op == "Identity" && !g.IsOutput(n.Outputs[0]) {
			rename[n.Outputs[0]] = n.Inputs[0]
			continue
		}
		kept = append(kept, n)
	}
	g.Nodes = kept
}

// foldBatchNorms folds BatchNormalization nodes with constant parameters.
func (g *Graph) foldBatchNorms() error {
	consumers := g.Consumers()
	producer := map[string]*Node{}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			producer[o] = n
		}
	}
	var out []*Node
	for _, n := range g.Nodes {
		if n.Op != "BatchNormalization" {
			out = append(out, n)
			continue
		}
		for _, o := range n.Outputs[1:] {
			if o != "" && (len(consumers[o]) > 0 || g.IsOutput(o)) {
				return fmt.Errorf("%w: %s: only the first output (training statistics are not computed)", ErrUnsupported, n)
			}
		}
		params := make([][]float64, 4)
		for i := range params {
			t := g.Consts[n.Input(i+1)]
			if t == nil {
				return fmt.Errorf("%w: %s: scale, bias, mean and variance must be constants", ErrUnsupported, n)
			}
			params[i] = t.Floats()
		}
		eps := float64(n.Float("epsilon", 1e-5))
		scale := make([]float64, len(params[0]))
		shift := make([]float64, len(params[0]))
		for c := range scale {
			scale[c] = params[0][c] / math.Sqrt(params[3][c]+eps)
			shift[c] = params[1][c] - params[2][c]*scale[c]
		}
		x := n.Inputs[0]
		if conv := producer[x]; conv != nil && conv.Op == "Conv" && len(consumers[x]) == 1 && !g.IsOutput(x) &&
			g.Consts[conv.Input(1)] != nil && (conv.Input(2) == "" || g.Consts[conv.Input(2)] != nil) {
			g.foldIntoConv(conv, n, scale, shift)
			continue
		}
		// y = x*scale + shift, with scale and shift shaped [C, 1, ...] to
		// broadcast over the channel dimension.
		dt := g.Consts[n.Input(1)].DType
		rank := g.rankOf(x)
		if rank < 2 {
			return fmt.Errorf("%w: %s: cannot tell the input's rank", ErrUnsupported, n)
		}
		shape := []int64{int64(len(scale))}
		for range rank - 2 {
			shape = append(shape, 1)
		}
		sName, tName, mid := n.Outputs[0]+"::bn_scale", n.Outputs[0]+"::bn_shift", n.Outputs[0]+"::bn_scaled"
		g.Consts[sName] = NewFloats(dt, shape, scale)
		g.Consts[tName] = NewFloats(dt, shape, shift)
		out = append(out,
			&Node{Name: n.Name + "::mul", Op: "Mul", Inputs: []string{x, sName}, Outputs: []string{mid}, Attrs: map[string]Attr{}},
			&Node{Name: n.Name + "::add", Op: "Add", Inputs: []string{mid, tName}, Outputs: []string{n.Outputs[0]}, Attrs: map[string]Attr{}})
	}
	g.Nodes = out
	return nil
}

// rankOf tells a value's rank from the declared input shapes and the
// producing Conv, which is all a lone BatchNormalization needs; 0 when
// unknown.
func (g *Graph) rankOf(name string) int {
	for _, in := range g.Inputs {
		if in.Name == name {
			return len(in.Shape)
		}
	}
	if t := g.Consts[name]; t != nil {
		return len(t.Shape)
	}
	for _, n := range g.Nodes {
		if slices.Contains(n.Outputs, name) {
			switch n.Op {
			case "Conv", "MaxPool", "AveragePool", "GlobalAveragePool":
				if w := g.Consts[n.Input(1)]; n.Op == "Conv" && w != nil {
					return len(w.Shape)
				}
				if ks, ok := n.Ints("kernel_shape"); ok {
					return len(ks) + 2
				}
			case "Relu", "Add", "Mul", "Sub", "Div", "Sigmoid", "Tanh", "Identity", "Cast":
				return g.rankOf(n.Inputs[0])
			case "Gemm":
				return 2
			}
		}
	}
	return 0
}

func (g *Graph) foldIntoConv(conv, bn *Node, scale, shift []float64) {
	w := g.Consts[conv.Input(1)]
	wv := w.Floats()
	per := len(wv) / len(scale)
	for m := range scale {
		for i := range per {
			wv[m*per+i] *= scale[m]
		}
	}
	bias := make([]float64, len(scale))
	if b := conv.Input(2); b != "" {
		copy(bias, g.Consts[b].Floats())
	}
	for m := range bias {
		bias[m] = bias[m]*scale[m] + shift[m]
	}
	out := bn.Outputs[0]
	wName, bName := out+"::folded_w", out+"::folded_b"
	g.Consts[wName] = NewFloats(w.DType, w.Shape, wv)
	g.Consts[bName] = NewFloats(w.DType, []int64{int64(len(bias))}, bias)
	conv.Inputs = []string{conv.Inputs[0], wName, bName}
	conv.Outputs = []string{out}
}

// dropDead removes nodes whose outputs nothing reads, and constants no
// node reads.
func (g *Graph) dropDead() {
	used := map[string]bool{}
	for _, o := range g.Outputs {
		used[o.Name] = true
	}
	var kept []*Node
	for i := len(g.Nodes) - 1; i >= 0; i-- {
		n := g.Nodes[i]
		live := false
		for _, o := range n.Outputs {
			live = live || used[o]
		}
		if !live {
			continue
		}
		kept = append(kept, n)
		for _, in := range n.Inputs {
			used[in] = true
		}
	}
	slices.Reverse(kept)
	g.Nodes = kept
	for name := range g.Consts {
		if !used[name] {
			delete(g.Consts, name)
		}
	}
}

// SliceSpec resolves Slice node n for the shapes s was inferred with.
func (s *Shapes) SliceSpec(n *Node, opset int64) (SliceSpec, error) {
	c := &opCtx{n: n, opset: opset, in: make([]Info, len(n.Inputs)), host: make([]*Tensor, len(n.Inputs))}
	for i, name := range n.Inputs {
		if name != "" {
			c.in[i], c.host[i] = s.Info[name], s.Host[name]
		}
	}
	return c.sliceSpec()
}

// splitBiases moves the bias of Gemm (C, times beta) and Conv (B) into an
// Add of its own, which can then be fused with what follows (a Relu, a
// residual Add) into one elementwise kernel.
func (g *Graph) splitBiases() {
	var out []*Node
	for _, n := range g.Nodes {
		bias := n.Input(2)
		if (n.Op != "Gemm" && n.Op != "Conv") || bias == "" {
			out = append(out, n)
			continue
		}
		y := n.Outputs[0]
		core := y + "::nobias"
		switch n.Op {
		case "Gemm":
			beta := float64(n.Float("beta", 1))
			n.Inputs, n.Outputs = n.Inputs[:2], []string{core}
			out = append(out, n)
			switch c := g.Consts[bias]; {
			case beta == 1:
			case c != nil:
				scaled := c.Floats()
				for i := range scaled {
					scaled[i] *= beta
				}
				bias = y + "::beta_c"
				g.Consts[bias] = NewFloats(c.DType, c.Shape, scaled)
			default:
				betaName := y + "::beta"
				g.Consts[betaName] = NewFloats(Float, []int64{}, []float64{beta})
				scaledName := y + "::beta_c"
				out = append(out, &Node{Name: n.Name + "::beta", Op: "Mul", Inputs: []string{bias, betaName}, Outputs: []string{scaledName}, Attrs: map[string]Attr{}})
				bias = scaledName
			}
		case "Conv":
			c := g.Consts[bias]
			w := g.Consts[n.Input(1)]
			if c == nil || w == nil {
				// A bias computed at run time stays with the Conv, which
				// lowering then refuses; constant biases are the norm.
				out = append(out, n)
				continue
			}
			shape := []int64{c.Len()}
			for range len(w.Shape) - 2 {
				shape = append(shape, 1)
			}
			n.Inputs, n.Outputs = n.Inputs[:2], []string{core}
			out = append(out, n)
			reshaped := y + "::bias"
			g.Consts[reshaped] = &Tensor{DType: c.DType, Shape: shape, Data: c.Data}
			bias = reshaped
		}
		out = append(out, &Node{Name: n.Name + "::bias", Op: "Add", Inputs: []string{core, bias}, Outputs: []string{y}, Attrs: map[string]Attr{}})
	}
	g.Nodes = out
}
