package graph

import (
	"fmt"
	"math"
	"slices"
)

// Info is a value's element type and concrete shape.
type Info struct {
	DType DType
	Shape []int64
}

// Present reports whether the Info describes a value (optional inputs that
// are left out have none).
func (i Info) Present() bool { return i.DType != Undefined }

func (i Info) String() string { return fmt.Sprintf("%s%v", i.DType, i.Shape) }

// opCtx is what an operator's shape function and host evaluation see.
type opCtx struct {
	n     *Node
	opset int64
	in    []Info
	// host holds the inputs known on the host (constants and values
	// computed from shapes); nil where the input lives on the device.
	host []*Tensor
}

type opDef struct {
	infer func(c *opCtx) ([]Info, error)
	// eval computes the outputs on the host; nil for operators that only
	// run on the device. It is called only when every present input is
	// in host, except for the operators in fromInfo.
	eval func(c *opCtx) ([]*Tensor, error)
	// fromInfo: eval needs only the inputs' Info (Shape).
	fromInfo bool
	// elementwise: one output, the broadcast of the inputs, each element
	// computed from the matching input elements alone.
	elementwise bool
}

// ops is the operator set the cuda backend runs.
var ops map[string]opDef

func init() {
	ops = map[string]opDef{
		"Add": binaryOp(), "Sub": binaryOp(), "Mul": binaryOp(), "Div": binaryOp(), "Pow": binaryOp(),
		"Relu": unaryOp(), "Sigmoid": unaryOp(), "Tanh": unaryOp(), "Erf": unaryOp(), "Gelu": unaryOp(),
		"Sqrt": unaryOp(), "Exp": unaryOp(), "Neg": unaryOp(),
		"Cast":               {infer: inferCast, eval: evalUnary, elementwise: true},
		"Identity":           {infer: inferSame, eval: func(c *opCtx) ([]*Tensor, error) { return []*Tensor{c.host[0]}, nil }},
		"MatMul":             {infer: inferMatMul},
		"Gemm":               {infer: inferGemm},
		"Conv":               {infer: inferConv},
		"MaxPool":            {infer: inferPool},
		"AveragePool":        {infer: inferPool},
		"GlobalAveragePool":  {infer: inferGlobalPool},
		"Softmax":            {infer: inferSoftmax},
		"LayerNormalization": {infer: inferLayerNorm},
		"BatchNormalization": {infer: inferBatchNorm},
		"Reshape":            {infer: inferReshape, eval: evalReshape},
		"Flatten":            {infer: inferFlatten, eval: evalReshape},
		"Squeeze":            {infer: inferSqueeze, eval: evalReshape},
		"Unsqueeze":          {infer: inferUnsqueeze, eval: evalReshape},
		"Transpose":          {infer: inferTranspose, eval: evalTranspose},
		"Concat":             {infer: inferConcat, eval: evalConcat},
		"Gather":             {infer: inferGather, eval: evalGather},
		"Slice":              {infer: inferSlice, eval: evalSlice},
		"Shape":              {infer: inferShape, eval: evalShape, fromInfo: true},
		"Constant":           {infer: inferConstant, eval: evalConstant, fromInfo: true},
	}
}

// IsElementwise reports whether op is computed element by element over the
// broadcast of its inputs (and so can be fused with its neighbours).
func IsElementwise(op string) bool { return ops[op].elementwise }

func binaryOp() opDef { return opDef{infer: inferBinary, eval: evalBinary, elementwise: true} }
func unaryOp() opDef  { return opDef{infer: inferSame, eval: evalUnary, elementwise: true} }

func (c *opCtx) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %s", c.n, fmt.Sprintf(format, args...))
}

func (c *opCtx) unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrUnsupported, c.n, fmt.Sprintf(format, args...))
}

func (c *opCtx) needInputs(min, max int) error {
	n := 0
	for i := range c.in {
		if c.in[i].Present() {
			n = i + 1
		}
	}
	if n < min || (max >= 0 && len(c.n.Inputs) > max) {
		return c.errorf("has %d inputs, want %d to %d", len(c.n.Inputs), min, max)
	}
	for i := range min {
		if !c.in[i].Present() {
			return c.errorf("input %d is required", i)
		}
	}
	return nil
}

// hostInts returns input i's values, which must be known on the host.
func (c *opCtx) hostInts(i int, what string) ([]int64, error) {
	if i >= len(c.host) || c.host[i] == nil {
		return nil, c.unsupported("its %s (input %d) must be a constant or computed from shapes", what, i)
	}
	return c.host[i].Ints(), nil
}

// Broadcast is the numpy broadcast of two shapes.
func Broadcast(a, b []int64) ([]int64, error) {
	n := max(len(a), len(b))
	out := make([]int64, n)
	for i := range n {
		da, db := int64(1), int64(1)
		if j := len(a) - n + i; j >= 0 {
			da = a[j]
		}
		if j := len(b) - n + i; j >= 0 {
			db = b[j]
		}
		switch {
		case da == db, db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(axis int64, rank int) (int, error) {
	if axis < 0 {
		axis += int64(rank)
	}
	if axis < 0 || axis >= int64(rank) {
		return 0, fmt.Errorf("axis %d is out of range for rank %d", axis, rank)
	}
	return int(axis), nil
}

func inferBinary(c *opCtx) ([]Info, error) {
	if err := c.needInputs(2, 2); err != nil {
		return nil, err
	}
	a, b := c.in[0], c.in[1]
	if a.DType != b.DType && c.n.Op != "Pow" {
		return nil, c.errorf("input types differ (%s and %s)", a.DType, b.DType)
	}
	shape, err := Broadcast(a.Shape, b.Shape)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return []Info{{DType: a.DType, Shape: shape}}, nil
}

func inferSame(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 1); err != nil {
		return nil, err
	}
	if c.n.Op == "Gelu" {
		if a := c.n.Str("approximate", "none"); a != "none" && a != "tanh" {
			return nil, c.unsupported("approximate=%q", a)
		}
	}
	return []Info{c.in[0]}, nil
}

func inferCast(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 1); err != nil {
		return nil, err
	}
	to := DType(c.n.Int("to", 0))
	if !to.Known() || to.Size() == 0 {
		return nil, c.unsupported("cast to %s", to)
	}
	return []Info{{DType: to, Shape: c.in[0].Shape}}, nil
}

func inferMatMul(c *opCtx) ([]Info, error) {
	if err := c.needInputs(2, 2); err != nil {
		return nil, err
	}
	a, b := c.in[0], c.in[1]
	if a.DType != b.DType {
		return nil, c.errorf("input types differ (%s and %s)", a.DType, b.DType)
	}
	shape, err := MatMulShape(a.Shape, b.Shape)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return []Info{{DType: a.DType, Shape: shape}}, nil
}

// MatMulShape is numpy.matmul's result shape.
func MatMulShape(a, b []int64) ([]int64, error) {
	if len(a) == 0 || len(b) == 0 {
		return nil, fmt.Errorf("matmul of a scalar")
	}
	aa, bb := a, b
	if len(a) == 1 {
		aa = []int64{1, a[0]}
	}
	if len(b) == 1 {
		bb = []int64{b[0], 1}
	}
	m, k := aa[len(aa)-2], aa[len(aa)-1]
	k2, n := bb[len(bb)-2], bb[len(bb)-1]
	if k != k2 {
		return nil, fmt.Errorf("shapes %v and %v: inner dimensions %d and %d differ", a, b, k, k2)
	}
	batch, err := Broadcast(aa[:len(aa)-2], bb[:len(bb)-2])
	if err != nil {
		return nil, err
	}
	out := append(slices.Clone(batch), m, n)
	if len(a) == 1 {
		out = slices.Delete(out, len(out)-2, len(out)-1)
	}
	if len(b) == 1 {
		out = out[:len(out)-1]
	}
	return out, nil
}

func inferGemm(c *opCtx) ([]Info, error) {
	if err := c.needInputs(2, 3); err != nil {
		return nil, err
	}
	a, b := c.in[0], c.in[1]
	if len(a.Shape) != 2 || len(b.Shape) != 2 {
		return nil, c.errorf("A %v and B %v must be matrices", a.Shape, b.Shape)
	}
	if a.DType != b.DType {
		return nil, c.errorf("input types differ (%s and %s)", a.DType, b.DType)
	}
	m, k := a.Shape[0], a.Shape[1]
	if c.n.Int("transA", 0) != 0 {
		m, k = k, m
	}
	k2, n := b.Shape[0], b.Shape[1]
	if c.n.Int("transB", 0) != 0 {
		k2, n = n, k2
	}
	if k != k2 {
		return nil, c.errorf("A %v and B %v: inner dimensions %d and %d differ", a.Shape, b.Shape, k, k2)
	}
	out := []int64{m, n}
	if len(c.in) > 2 && c.in[2].Present() {
		if s, err := Broadcast(c.in[2].Shape, out); err != nil || !slices.Equal(s, out) {
			return nil, c.errorf("C %v does not broadcast to %v", c.in[2].Shape, out)
		}
	}
	return []Info{{DType: a.DType, Shape: out}}, nil
}

// Window is the geometry of a convolution or pooling over the spatial
// dimensions: one entry per spatial dimension.
type Window struct {
	Kernel, Strides, Dilations []int64
	PadsBegin, PadsEnd         []int64
	Out                        []int64
}

// WindowOf reads a Conv or pool node's window attributes for the spatial
// input dims in; kernel is the kernel's spatial shape (for Conv, from W).
func WindowOf(n *Node, in, kernel []int64, ceilMode bool) (Window, error) {
	r := len(in)
	w := Window{Kernel: kernel}
	ints := func(name string, def int64) ([]int64, error) {
		v, ok := n.Ints(name)
		if !ok {
			v = make([]int64, r)
			if name == "pads" {
				v = make([]int64, 2*r)
			}
			for i := range v {
				v[i] = def
			}
		}
		if name == "pads" {
			if len(v) != 2*r {
				return nil, fmt.Errorf("%s: pads %v: want %d values", n, v, 2*r)
			}
			return v, nil
		}
		if len(v) != r {
			return nil, fmt.Errorf("%s: %s %v: want %d values", n, name, v, r)
		}
		return v, nil
	}
	var err error
	if w.Strides, err = ints("strides", 1); err != nil {
		return w, err
	}
	if w.Dilations, err = ints("dilations", 1); err != nil {
		return w, err
	}
	pads, err := ints("pads", 0)
	if err != nil {
		return w, err
	}
	w.PadsBegin, w.PadsEnd = slices.Clone(pads[:r]), slices.Clone(pads[r:])
	w.Out = make([]int64, r)
	autoPad := n.Str("auto_pad", "NOTSET")
	for i := range r {
		s, d, k, x := w.Strides[i], w.Dilations[i], kernel[i], in[i]
		if s < 1 || d < 1 || k < 1 {
			return w, fmt.Errorf("%s: kernel %v, strides %v and dilations %v must be positive", n, kernel, w.Strides, w.Dilations)
		}
		span := d*(k-1) + 1
		switch autoPad {
		case "NOTSET":
			total := x + w.PadsBegin[i] + w.PadsEnd[i] - span
			if total < 0 {
				return w, fmt.Errorf("%s: the window (%d) is larger than the padded input (%d)", n, span, x+w.PadsBegin[i]+w.PadsEnd[i])
			}
			if ceilMode {
				w.Out[i] = (total+s-1)/s + 1
				// A last window that would start in the end padding is dropped.
				if (w.Out[i]-1)*s >= x+w.PadsBegin[i] {
					w.Out[i]--
				}
			} else {
				w.Out[i] = total/s + 1
			}
		case "VALID":
			w.PadsBegin[i], w.PadsEnd[i] = 0, 0
			if x < span {
				return w, fmt.Errorf("%s: the window (%d) is larger than the input (%d)", n, span, x)
			}
			w.Out[i] = (x-span)/s + 1
		case "SAME_UPPER", "SAME_LOWER":
			w.Out[i] = (x + s - 1) / s
			total := max(0, (w.Out[i]-1)*s+span-x)
			if autoPad == "SAME_UPPER" {
				w.PadsBegin[i] = total / 2
			} else {
				w.PadsBegin[i] = total - total/2
			}
			w.PadsEnd[i] = total - w.PadsBegin[i]
		default:
			return w, fmt.Errorf("%s: auto_pad %q", n, autoPad)
		}
	}
	return w, nil
}

func inferConv(c *opCtx) ([]Info, error) {
	if err := c.needInputs(2, 3); err != nil {
		return nil, err
	}
	x, w := c.in[0], c.in[1]
	if len(x.Shape) < 3 || len(w.Shape) != len(x.Shape) {
		return nil, c.errorf("X %v and W %v must have the same rank, at least 3", x.Shape, w.Shape)
	}
	group := c.n.Int("group", 1)
	ch, m := x.Shape[1], w.Shape[0]
	if group < 1 || ch%group != 0 || m%group != 0 || w.Shape[1]*group != ch {
		return nil, c.errorf("X %v, W %v and group %d do not fit", x.Shape, w.Shape, group)
	}
	if ks, ok := c.n.Ints("kernel_shape"); ok && !slices.Equal(ks, w.Shape[2:]) {
		return nil, c.errorf("kernel_shape %v differs from W's %v", ks, w.Shape[2:])
	}
	if len(c.in) > 2 && c.in[2].Present() && !slices.Equal(c.in[2].Shape, []int64{m}) {
		return nil, c.errorf("B %v must be [%d]", c.in[2].Shape, m)
	}
	win, err := WindowOf(c.n, x.Shape[2:], w.Shape[2:], false)
	if err != nil {
		return nil, err
	}
	return []Info{{DType: x.DType, Shape: append([]int64{x.Shape[0], m}, win.Out...)}}, nil
}

func inferPool(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 1); err != nil {
		return nil, err
	}
	x := c.in[0]
	if len(x.Shape) < 3 {
		return nil, c.errorf("X %v must have rank 3 or more", x.Shape)
	}
	ks, ok := c.n.Ints("kernel_shape")
	if !ok || len(ks) != len(x.Shape)-2 {
		return nil, c.errorf("kernel_shape %v: want %d values", ks, len(x.Shape)-2)
	}
	if c.n.Op == "MaxPool" && c.n.Int("storage_order", 0) != 0 {
		return nil, c.unsupported("storage_order=1")
	}
	if c.n.Op == "AveragePool" {
		if _, ok := c.n.Ints("dilations"); ok {
			return nil, c.unsupported("AveragePool dilations")
		}
	}
	win, err := WindowOf(c.n, x.Shape[2:], ks, c.n.Int("ceil_mode", 0) != 0)
	if err != nil {
		return nil, err
	}
	out := Info{DType: x.DType, Shape: append([]int64{x.Shape[0], x.Shape[1]}, win.Out...)}
	if len(c.n.Outputs) > 1 {
		return []Info{out, {DType: Int64, Shape: out.Shape}}, nil
	}
	return []Info{out}, nil
}

func inferGlobalPool(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 1); err != nil {
		return nil, err
	}
	x := c.in[0]
	if len(x.Shape) < 3 {
		return nil, c.errorf("X %v must have rank 3 or more", x.Shape)
	}
	shape := slices.Clone(x.Shape)
	for i := 2; i < len(shape); i++ {
		shape[i] = 1
	}
	return []Info{{DType: x.DType, Shape: shape}}, nil
}

// SoftmaxAxis is where a Softmax node normalizes, and whether it uses the
// pre-13 semantics (normalize over every dimension from axis on).
func SoftmaxAxis(n *Node, opset int64, rank int) (axis int, flatten bool, err error) {
	if opset < 13 {
		axis, err = normAxis(n.Int("axis", 1), rank)
		return axis, true, err
	}
	axis, err = normAxis(n.Int("axis", -1), rank)
	return axis, false, err
}

func inferSoftmax(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 1); err != nil {
		return nil, err
	}
	if !c.in[0].DType.IsFloat() {
		return nil, c.errorf("input type %s is not a float", c.in[0].DType)
	}
	if _, _, err := SoftmaxAxis(c.n, c.opset, len(c.in[0].Shape)); err != nil {
		return nil, c.errorf("%v", err)
	}
	return []Info{c.in[0]}, nil
}

func inferLayerNorm(c *opCtx) ([]Info, error) {
	if err := c.needInputs(2, 3); err != nil {
		return nil, err
	}
	x := c.in[0]
	axis, err := normAxis(c.n.Int("axis", -1), len(x.Shape))
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	norm := x.Shape[axis:]
	for i := 1; i < 3 && i < len(c.in); i++ {
		if c.in[i].Present() && Numel(c.in[i].Shape) != Numel(norm) {
			return nil, c.unsupported("scale and bias must have the normalized shape %v (input %d is %v)", norm, i, c.in[i].Shape)
		}
	}
	stat := slices.Clone(x.Shape)
	for i := axis; i < len(stat); i++ {
		stat[i] = 1
	}
	st := DType(c.n.Int("stash_type", int64(Float)))
	return []Info{x, {DType: st, Shape: stat}, {DType: st, Shape: stat}}[:len(c.n.Outputs)], nil
}

func inferBatchNorm(c *opCtx) ([]Info, error) {
	if err := c.needInputs(5, 5); err != nil {
		return nil, err
	}
	if c.n.Int("training_mode", 0) != 0 {
		return nil, c.unsupported("training_mode=1")
	}
	x := c.in[0]
	if len(x.Shape) < 2 {
		return nil, c.errorf("X %v must have rank 2 or more", x.Shape)
	}
	for i := 1; i < 5; i++ {
		if !slices.Equal(c.in[i].Shape, []int64{x.Shape[1]}) {
			return nil, c.errorf("input %d has shape %v, want [%d]", i, c.in[i].Shape, x.Shape[1])
		}
	}
	out := []Info{x}
	for range c.n.Outputs[1:] {
		out = append(out, Info{DType: x.DType, Shape: []int64{x.Shape[1]}})
	}
	return out, nil
}

// ReshapeTarget resolves Reshape's requested shape against the input's.
func ReshapeTarget(in, req []int64, allowZero bool) ([]int64, error) {
	out := slices.Clone(req)
	infer := -1
	known := int64(1)
	for i, d := range out {
		switch {
		case d == 0 && !allowZero:
			if i >= len(in) {
				return nil, fmt.Errorf("shape %v copies dimension %d of %v, which has none", req, i, in)
			}
			out[i] = in[i]
		case d == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("shape %v has more than one -1", req)
			}
			infer = i
			continue
		case d < 0:
			return nil, fmt.Errorf("shape %v has a negative dimension", req)
		}
		known *= out[i]
	}
	total := Numel(in)
	if infer >= 0 {
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", in, req)
		}
		out[infer] = total / known
	}
	if Numel(out) != total {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", in, total, req)
	}
	return out, nil
}

func inferReshape(c *opCtx) ([]Info, error) {
	if err := c.needInputs(2, 2); err != nil {
		return nil, err
	}
	req, err := c.hostInts(1, "shape")
	if err != nil {
		return nil, err
	}
	out, err := ReshapeTarget(c.in[0].Shape, req, c.n.Int("allowzero", 0) != 0)
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	return []Info{{DType: c.in[0].DType, Shape: out}}, nil
}

func inferFlatten(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 1); err != nil {
		return nil, err
	}
	s := c.in[0].Shape
	axis := c.n.Int("axis", 1)
	if axis < 0 {
		axis += int64(len(s))
	}
	if axis < 0 || axis > int64(len(s)) {
		return nil, c.errorf("axis %d is out of range for rank %d", c.n.Int("axis", 1), len(s))
	}
	return []Info{{DType: c.in[0].DType, Shape: []int64{Numel(s[:axis]), Numel(s[axis:])}}}, nil
}

// axesOf reads Squeeze/Unsqueeze axes: an attribute before opset 13, an
// optional input from then on.
func (c *opCtx) axesOf() ([]int64, bool, error) {
	if c.opset < 13 {
		a, ok := c.n.Ints("axes")
		return a, ok, nil
	}
	if len(c.in) < 2 || !c.in[1].Present() {
		return nil, false, nil
	}
	a, err := c.hostInts(1, "axes")
	return a, true, err
}

func inferSqueeze(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 2); err != nil {
		return nil, err
	}
	s := c.in[0].Shape
	axes, ok, err := c.axesOf()
	if err != nil {
		return nil, err
	}
	drop := make([]bool, len(s))
	if !ok {
		for i, d := range s {
			drop[i] = d == 1
		}
	}
	for _, a := range axes {
		i, err := normAxis(a, len(s))
		if err != nil {
			return nil, c.errorf("%v", err)
		}
		if s[i] != 1 {
			return nil, c.errorf("cannot squeeze dimension %d of %v", i, s)
		}
		drop[i] = true
	}
	var out []int64
	for i, d := range s {
		if !drop[i] {
			out = append(out, d)
		}
	}
	return []Info{{DType: c.in[0].DType, Shape: nonNil(out)}}, nil
}

func inferUnsqueeze(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 2); err != nil {
		return nil, err
	}
	s := c.in[0].Shape
	axes, ok, err := c.axesOf()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, c.errorf("needs axes")
	}
	r := len(s) + len(axes)
	ins := make([]bool, r)
	for _, a := range axes {
		i, err := normAxis(a, r)
		if err != nil {
			return nil, c.errorf("%v", err)
		}
		if ins[i] {
			return nil, c.errorf("axis %d is given twice", a)
		}
		ins[i] = true
	}
	out := make([]int64, 0, r)
	j := 0
	for i := range r {
		if ins[i] {
			out = append(out, 1)
		} else {
			out = append(out, s[j])
			j++
		}
	}
	return []Info{{DType: c.in[0].DType, Shape: out}}, nil
}

// Perm is a Transpose node's permutation for an input of this rank.
func Perm(n *Node, rank int) ([]int, error) {
	p, ok := n.Ints("perm")
	perm := make([]int, rank)
	if !ok {
		for i := range perm {
			perm[i] = rank - 1 - i
		}
		return perm, nil
	}
	if len(p) != rank {
		return nil, fmt.Errorf("%s: perm %v for rank %d", n, p, rank)
	}
	seen := make([]bool, rank)
	for i, v := range p {
		a, err := normAxis(v, rank)
		if err != nil || seen[a] {
			return nil, fmt.Errorf("%s: perm %v is not a permutation", n, p)
		}
		seen[a] = true
		perm[i] = a
	}
	return perm, nil
}

func inferTranspose(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 1); err != nil {
		return nil, err
	}
	perm, err := Perm(c.n, len(c.in[0].Shape))
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(perm))
	for i, p := range perm {
		out[i] = c.in[0].Shape[p]
	}
	return []Info{{DType: c.in[0].DType, Shape: out}}, nil
}

func inferConcat(c *opCtx) ([]Info, error) {
	if len(c.in) == 0 {
		return nil, c.errorf("has no inputs")
	}
	first := c.in[0]
	axis, err := normAxis(c.n.Int("axis", 0), len(first.Shape))
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	out := slices.Clone(first.Shape)
	out[axis] = 0
	for i, in := range c.in {
		if !in.Present() || in.DType != first.DType || len(in.Shape) != len(out) {
			return nil, c.errorf("input %d (%v) does not match input 0 (%v)", i, in, first)
		}
		for d := range out {
			if d != axis && in.Shape[d] != out[d] {
				return nil, c.errorf("input %d has shape %v, input 0 %v", i, in.Shape, first.Shape)
			}
		}
		out[axis] += in.Shape[axis]
	}
	return []Info{{DType: first.DType, Shape: out}}, nil
}

func inferGather(c *opCtx) ([]Info, error) {
	if err := c.needInputs(2, 2); err != nil {
		return nil, err
	}
	data, idx := c.in[0], c.in[1]
	if idx.DType != Int32 && idx.DType != Int64 {
		return nil, c.errorf("indices have type %s, want int32 or int64", idx.DType)
	}
	axis, err := normAxis(c.n.Int("axis", 0), len(data.Shape))
	if err != nil {
		return nil, c.errorf("%v", err)
	}
	out := slices.Concat(data.Shape[:axis], idx.Shape, data.Shape[axis+1:])
	return []Info{{DType: data.DType, Shape: nonNil(out)}}, nil
}

// SliceSpec is a Slice resolved for a concrete input: for each input
// dimension the first index and step, and the output shape.
type SliceSpec struct {
	Starts, Steps []int64
	Out           []int64
}

// sliceSpec resolves a Slice node's starts/ends/axes/steps (attributes
// before opset 10, host-known inputs from then on).
func (c *opCtx) sliceSpec() (SliceSpec, error) {
	var starts, ends, axes, steps []int64
	var err error
	if c.opset < 10 {
		starts, _ = c.n.Ints("starts")
		ends, _ = c.n.Ints("ends")
		axes, _ = c.n.Ints("axes")
	} else {
		if starts, err = c.hostInts(1, "starts"); err != nil {
			return SliceSpec{}, err
		}
		if ends, err = c.hostInts(2, "ends"); err != nil {
			return SliceSpec{}, err
		}
		if len(c.in) > 3 && c.in[3].Present() {
			if axes, err = c.hostInts(3, "axes"); err != nil {
				return SliceSpec{}, err
			}
		}
		if len(c.in) > 4 && c.in[4].Present() {
			if steps, err = c.hostInts(4, "steps"); err != nil {
				return SliceSpec{}, err
			}
		}
	}
	spec, err := ResolveSlice(c.in[0].Shape, starts, ends, axes, steps)
	if err != nil {
		return SliceSpec{}, c.errorf("%v", err)
	}
	return spec, nil
}

// ResolveSlice applies ONNX Slice semantics (negative indices, clamping,
// negative steps) to a shape.
func ResolveSlice(shape, starts, ends, axes, steps []int64) (SliceSpec, error) {
	r := len(shape)
	if len(starts) != len(ends) {
		return SliceSpec{}, fmt.Errorf("%d starts and %d ends", len(starts), len(ends))
	}
	if axes == nil {
		axes = make([]int64, len(starts))
		for i := range axes {
			axes[i] = int64(i)
		}
	}
	if steps == nil {
		steps = make([]int64, len(starts))
		for i := range steps {
			steps[i] = 1
		}
	}
	if len(axes) != len(starts) || len(steps) != len(starts) {
		return SliceSpec{}, fmt.Errorf("starts, ends, axes and steps differ in length")
	}
	spec := SliceSpec{Starts: make([]int64, r), Steps: make([]int64, r), Out: slices.Clone(shape)}
	for i := range spec.Steps {
		spec.Steps[i] = 1
	}
	seen := make([]bool, r)
	for i, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return SliceSpec{}, err
		}
		if seen[ax] {
			return SliceSpec{}, fmt.Errorf("axis %d is sliced twice", ax)
		}
		seen[ax] = true
		dim, step := shape[ax], steps[i]
		if step == 0 {
			return SliceSpec{}, fmt.Errorf("step 0")
		}
		start, end := starts[i], ends[i]
		if start < 0 {
			start += dim
		}
		if end < 0 {
			end += dim
		}
		var n int64
		if step > 0 {
			start = min(max(start, 0), dim)
			end = min(max(end, 0), dim)
			if end > start {
				n = (end - start + step - 1) / step
			}
		} else {
			start = min(max(start, -1), dim-1)
			end = min(max(end, -1), dim-1)
			if start > end {
				n = (start - end - step - 1) / -step
			}
		}
		spec.Starts[ax], spec.Steps[ax], spec.Out[ax] = start, step, n
	}
	return spec, nil
}

func inferSlice(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 5); err != nil {
		return nil, err
	}
	spec, err := c.sliceSpec()
	if err != nil {
		return nil, err
	}
	return []Info{{DType: c.in[0].DType, Shape: spec.Out}}, nil
}

func shapeRange(c *opCtx) (int, int) {
	r := int64(len(c.in[0].Shape))
	clamp := func(v int64) int {
		if v < 0 {
			v += r
		}
		return int(min(max(v, 0), r))
	}
	return clamp(c.n.Int("start", 0)), clamp(c.n.Int("end", r))
}

func inferShape(c *opCtx) ([]Info, error) {
	if err := c.needInputs(1, 1); err != nil {
		return nil, err
	}
	s, e := shapeRange(c)
	return []Info{{DType: Int64, Shape: []int64{int64(max(e-s, 0))}}}, nil
}

func inferConstant(c *opCtx) ([]Info, error) {
	ts, err := evalConstant(c)
	if err != nil {
		return nil, err
	}
	return []Info{ts[0].Info()}, nil
}

func nonNil(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

// ---- host evaluation ----

// strides of a row-major shape.
func stridesOf(shape []int64) []int64 {
	st := make([]int64, len(shape))
	acc := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = acc
		acc *= shape[i]
	}
	return st
}

// broadcastStrides are in's strides as seen from out's index space (0 on
// broadcast dimensions).
func broadcastStrides(in, out []int64) []int64 {
	st := stridesOf(in)
	res := make([]int64, len(out))
	off := len(out) - len(in)
	for i := range in {
		if in[i] != 1 {
			res[off+i] = st[i]
		}
	}
	return res
}

// forEachIndex calls f with each flat output index and the matching flat
// offset into each input.
func forEachIndex(out []int64, strides [][]int64, f func(o int64, offs []int64)) {
	n := Numel(out)
	idx := make([]int64, len(out))
	offs := make([]int64, len(strides))
	for o := range n {
		f(o, offs)
		for d := len(out) - 1; d >= 0; d-- {
			idx[d]++
			for k := range offs {
				offs[k] += strides[k][d]
			}
			if idx[d] < out[d] {
				break
			}
			for k := range offs {
				offs[k] -= strides[k][d] * out[d]
			}
			idx[d] = 0
		}
	}
}

func evalBinary(c *opCtx) ([]*Tensor, error) {
	infos, err := inferBinary(c)
	if err != nil {
		return nil, err
	}
	out := infos[0]
	a, b := c.host[0], c.host[1]
	st := [][]int64{broadcastStrides(a.Shape, out.Shape), broadcastStrides(b.Shape, out.Shape)}
	n := Numel(out.Shape)
	if out.DType.IsFloat() || c.n.Op == "Pow" {
		av, bv := a.Floats(), b.Floats()
		res := make([]float64, n)
		forEachIndex(out.Shape, st, func(o int64, offs []int64) {
			x, y := av[offs[0]], bv[offs[1]]
			switch c.n.Op {
			case "Add":
				res[o] = x + y
			case "Sub":
				res[o] = x - y
			case "Mul":
				res[o] = x * y
			case "Div":
				res[o] = x / y
			case "Pow":
				res[o] = math.Pow(x, y)
			}
		})
		return []*Tensor{NewFloats(out.DType, out.Shape, res)}, nil
	}
	av, bv := a.Ints(), b.Ints()
	res := make([]int64, n)
	var divZero bool
	forEachIndex(out.Shape, st, func(o int64, offs []int64) {
		x, y := av[offs[0]], bv[offs[1]]
		switch c.n.Op {
		case "Add":
			res[o] = x + y
		case "Sub":
			res[o] = x - y
		case "Mul":
			res[o] = x * y
		case "Div":
			if y == 0 {
				divZero = true
				return
			}
			res[o] = x / y
		}
	})
	if divZero {
		return nil, c.errorf("integer division by zero")
	}
	return []*Tensor{NewInts(out.DType, out.Shape, res)}, nil
}

// UnaryFunc is the float function of a unary elementwise node, as the host
// folds it and tests check the device against.
func UnaryFunc(n *Node) func(float64) float64 {
	switch n.Op {
	case "Relu":
		return func(x float64) float64 { return math.Max(x, 0) }
	case "Sigmoid":
		return func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	case "Tanh":
		return math.Tanh
	case "Erf":
		return math.Erf
	case "Sqrt":
		return math.Sqrt
	case "Exp":
		return math.Exp
	case "Neg":
		return func(x float64) float64 { return -x }
	case "Gelu":
		if n.Str("approximate", "none") == "tanh" {
			return func(x float64) float64 {
				return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
			}
		}
		return func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }
	}
	return func(x float64) float64 { return x }
}

func evalUnary(c *opCtx) ([]*Tensor, error) {
	x := c.host[0]
	if c.n.Op == "Cast" {
		to := DType(c.n.Int("to", 0))
		if !to.Known() || to.Size() == 0 {
			return nil, c.unsupported("cast to %s", to)
		}
		return []*Tensor{x.Convert(to)}, nil
	}
	if !x.DType.IsFloat() {
		v := x.Ints()
		for i := range v {
			switch c.n.Op {
			case "Relu":
				v[i] = max(v[i], 0)
			case "Neg":
				v[i] = -v[i]
			default:
				return nil, c.errorf("needs a float input, has %s", x.DType)
			}
		}
		return []*Tensor{NewInts(x.DType, x.Shape, v)}, nil
	}
	f := UnaryFunc(c.n)
	v := x.Floats()
	for i := range v {
		v[i] = f(v[i])
	}
	return []*Tensor{NewFloats(x.DType, x.Shape, v)}, nil
}

// evalReshape serves every operator that only changes the shape.
func evalReshape(c *opCtx) ([]*Tensor, error) {
	def := ops[c.n.Op]
	infos, err := def.infer(c)
	if err != nil {
		return nil, err
	}
	x := c.host[0]
	return []*Tensor{{DType: x.DType, Shape: infos[0].Shape, Data: x.Data}}, nil
}

// gatherBytes builds a tensor of shape out whose element o is the element
// of src at offset(o) (element-size aware).
func gatherBytes(src *Tensor, out []int64, offsets func(yield func(o, off int64))) *Tensor {
	size := int64(src.DType.Size())
	data := make([]byte, Numel(out)*size)
	offsets(func(o, off int64) {
		copy(data[o*size:(o+1)*size], src.Data[off*size:(off+1)*size])
	})
	return &Tensor{DType: src.DType, Shape: out, Data: data}
}

func evalTranspose(c *opCtx) ([]*Tensor, error) {
	infos, err := inferTranspose(c)
	if err != nil {
		return nil, err
	}
	x := c.host[0]
	perm, _ := Perm(c.n, len(x.Shape))
	in := stridesOf(x.Shape)
	st := make([]int64, len(perm))
	for i, p := range perm {
		st[i] = in[p]
	}
	return []*Tensor{gatherBytes(x, infos[0].Shape, func(yield func(o, off int64)) {
		forEachIndex(infos[0].Shape, [][]int64{st}, func(o int64, offs []int64) { yield(o, offs[0]) })
	})}, nil
}

func evalSlice(c *opCtx) ([]*Tensor, error) {
	spec, err := c.sliceSpec()
	if err != nil {
		return nil, err
	}
	x := c.host[0]
	in := stridesOf(x.Shape)
	base := int64(0)
	st := make([]int64, len(in))
	for i := range in {
		base += spec.Starts[i] * in[i]
		st[i] = spec.Steps[i] * in[i]
	}
	return []*Tensor{gatherBytes(x, spec.Out, func(yield func(o, off int64)) {
		forEachIndex(spec.Out, [][]int64{st}, func(o int64, offs []int64) { yield(o, base+offs[0]) })
	})}, nil
}

func evalConcat(c *opCtx) ([]*Tensor, error) {
	infos, err := inferConcat(c)
	if err != nil {
		return nil, err
	}
	out := infos[0]
	axis, _ := normAxis(c.n.Int("axis", 0), len(out.Shape))
	size := int64(out.DType.Size())
	outer := Numel(out.Shape[:axis])
	data := make([]byte, 0, Numel(out.Shape)*size)
	for o := range outer {
		for _, t := range c.host {
			chunk := Numel(t.Shape[axis:]) * size
			data = append(data, t.Data[o*chunk:(o+1)*chunk]...)
		}
	}
	return []*Tensor{{DType: out.DType, Shape: out.Shape, Data: data}}, nil
}

func evalGather(c *opCtx) ([]*Tensor, error) {
	infos, err := inferGather(c)
	if err != nil {
		return nil, err
	}
	x, idx := c.host[0], c.host[1].Ints()
	axis, _ := normAxis(c.n.Int("axis", 0), len(x.Shape))
	dim := x.Shape[axis]
	inner := Numel(x.Shape[axis+1:])
	outer := Numel(x.Shape[:axis])
	for i, v := range idx {
		if v < -dim || v >= dim {
			return nil, c.errorf("index %d (%d) is out of range for dimension %d", i, v, dim)
		}
		if v < 0 {
			idx[i] = v + dim
		}
	}
	n := int64(len(idx))
	return []*Tensor{gatherBytes(x, infos[0].Shape, func(yield func(o, off int64)) {
		for a := range outer {
			for j := range n {
				for b := range inner {
					yield((a*n+j)*inner+b, (a*dim+idx[j])*inner+b)
				}
			}
		}
	})}, nil
}

func evalShape(c *opCtx) ([]*Tensor, error) {
	s, e := shapeRange(c)
	vals := []int64{}
	if e > s {
		vals = slices.Clone(c.in[0].Shape[s:e])
	}
	return []*Tensor{NewInts(Int64, []int64{int64(len(vals))}, vals)}, nil
}

func evalConstant(c *opCtx) ([]*Tensor, error) {
	n := c.n
	if len(n.Attrs) != 1 {
		return nil, c.errorf("needs exactly one value attribute")
	}
	for name, a := range n.Attrs {
		switch name {
		case "value":
			if a.T == nil {
				return nil, c.errorf("value is not a tensor")
			}
			return []*Tensor{a.T}, nil
		case "value_float":
			return []*Tensor{NewFloats(Float, []int64{}, []float64{float64(a.F)})}, nil
		case "value_floats":
			v := make([]float64, len(a.Floats))
			for i, f := range a.Floats {
				v[i] = float64(f)
			}
			return []*Tensor{NewFloats(Float, []int64{int64(len(v))}, v)}, nil
		case "value_int":
			return []*Tensor{NewInts(Int64, []int64{}, []int64{a.I})}, nil
		case "value_ints":
			return []*Tensor{NewInts(Int64, []int64{int64(len(a.Ints))}, a.Ints)}, nil
		}
		return nil, c.unsupported("attribute %s", name)
	}
	return nil, nil
}
