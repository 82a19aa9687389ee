package lower

import (
	"fmt"
	"slices"

	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/kernels"
)

func (l *lowerer) gemmType(n *graph.Node, d graph.DType) error {
	if !kernels.FloatKernelType(d) {
		return fmt.Errorf("%w: %s on %s (cuBLAS GEMMs take float32, float16 and bfloat16)", ErrUnsupported, n, d)
	}
	return nil
}

func (l *lowerer) tf32() bool { return l.m.Options.Precision == TF32 }

// matmul lowers numpy-style MatMul: one GEMM when B is a matrix (A's batch
// dimensions fold into M), else a strided batched GEMM where each operand
// either has the full batch or a single matrix.
func (l *lowerer) matmul(n *graph.Node) error {
	a, b, out := l.info(n.Inputs[0]), l.info(n.Inputs[1]), l.info(n.Outputs[0])
	if err := l.gemmType(n, out.DType); err != nil {
		return err
	}
	as, bs := a.Shape, b.Shape
	if len(as) == 1 {
		as = []int64{1, as[0]}
	}
	if len(bs) == 1 {
		bs = []int64{bs[0], 1}
	}
	m, k, nn := as[len(as)-2], as[len(as)-1], bs[len(bs)-1]
	ab, bb := as[:len(as)-2], bs[:len(bs)-2]
	batchShape, err := graph.Broadcast(ab, bb)
	if err != nil {
		return fmt.Errorf("%s: %w", n, err)
	}
	batch := graph.Numel(batchShape)
	ra, err := l.ref(n.Inputs[0], n)
	if err != nil {
		return err
	}
	rb, err := l.ref(n.Inputs[1], n)
	if err != nil {
		return err
	}
	rc := l.output(n.Outputs[0])
	if graph.Numel(out.Shape) == 0 {
		return nil
	}
	g := Gemm{N: nn, K: k, A: ra, B: rb, C: rc, LDA: k, LDB: nn, LDC: nn, Alpha: 1, DType: out.DType, TF32: l.tf32(), Batch: 1}
	if graph.Numel(bb) == 1 {
		// B is one matrix: A's rows of every batch form one M.
		g.M = graph.Numel(ab) * m
		l.gemm(n.Name, g)
		return nil
	}
	stride := func(opBatch []int64, size int64) (int64, error) {
		switch {
		case graph.Numel(opBatch) == 1:
			return 0, nil
		case graph.Numel(opBatch) == batch && slices.Equal(trimOnes(opBatch), trimOnes(batchShape)):
			return size, nil
		}
		return 0, fmt.Errorf("%w: %s: batch dimensions %v and %v broadcast partly", ErrUnsupported, n, ab, bb)
	}
	g.M = m
	if g.StrideA, err = stride(ab, m*k); err != nil {
		return err
	}
	if g.StrideB, err = stride(bb, k*nn); err != nil {
		return err
	}
	g.StrideC, g.Batch = m*nn, batch
	l.gemm(n.Name, g)
	return nil
}

func trimOnes(s []int64) []int64 {
	for len(s) > 0 && s[0] == 1 {
		s = s[1:]
	}
	return s
}

// gemmNode lowers Gemm, whose bias folding already moved into an Add.
func (l *lowerer) gemmNode(n *graph.Node) error {
	if n.Input(2) != "" {
		return fmt.Errorf("%w: %s: a bias that is not a constant", ErrUnsupported, n)
	}
	a, b, out := l.info(n.Inputs[0]), l.info(n.Inputs[1]), l.info(n.Outputs[0])
	if err := l.gemmType(n, out.DType); err != nil {
		return err
	}
	ra, err := l.ref(n.Inputs[0], n)
	if err != nil {
		return err
	}
	rb, err := l.ref(n.Inputs[1], n)
	if err != nil {
		return err
	}
	rc := l.output(n.Outputs[0])
	if graph.Numel(out.Shape) == 0 {
		return nil
	}
	m, nn := out.Shape[0], out.Shape[1]
	k := a.Shape[1]
	transA := n.Int("transA", 0) != 0
	if transA {
		k = a.Shape[0]
	}
	l.gemm(n.Name, Gemm{
		M: m, N: nn, K: k, TransA: transA, TransB: n.Int("transB", 0) != 0,
		A: ra, B: rb, C: rc, LDA: a.Shape[1], LDB: b.Shape[1], LDC: nn,
		Batch: 1, Alpha: n.Float("alpha", 1), DType: out.DType, TF32: l.tf32(),
	})
	return nil
}

// spatial2D views the spatial dims of a 1-D or 2-D window as 2-D.
func spatial2D(n *graph.Node, in []int64) (h, w int64, err error) {
	switch len(in) {
	case 1:
		return 1, in[0], nil
	case 2:
		return in[0], in[1], nil
	}
	return 0, 0, fmt.Errorf("%w: %s over %d spatial dimensions (1 or 2 are supported)", ErrUnsupported, n, len(in))
}

func pair(v []int64, def int64) (int64, int64) {
	if len(v) == 1 {
		return def, v[0]
	}
	return v[0], v[1]
}

// conv lowers Conv as im2col and GEMMs: for each chunk of images whose
// columns fit the workspace, one im2col launch and one strided batched
// GEMM per group (Y[img] = W · cols[img]). A 1x1 convolution with unit
// strides and no padding reads its input as the columns directly.
func (l *lowerer) conv(n *graph.Node) error {
	if n.Input(2) != "" {
		return fmt.Errorf("%w: %s: a bias that is not a constant", ErrUnsupported, n)
	}
	x, w, y := l.info(n.Inputs[0]), l.info(n.Inputs[1]), l.info(n.Outputs[0])
	if err := l.gemmType(n, y.DType); err != nil {
		return err
	}
	h, wd, err := spatial2D(n, x.Shape[2:])
	if err != nil {
		return err
	}
	win, err := graph.WindowOf(n, x.Shape[2:], w.Shape[2:], false)
	if err != nil {
		return err
	}
	kh, kw := pair(w.Shape[2:], 1)
	oh, ow := pair(win.Out, 1)
	sh, sw := pair(win.Strides, 1)
	ph, pw := pair(win.PadsBegin, 0)
	dh, dw := pair(win.Dilations, 1)
	images, c, m := x.Shape[0], x.Shape[1], w.Shape[0]
	groups := n.Int("group", 1)
	p := oh * ow
	ckk := c * kh * kw
	esize := int64(y.DType.Size())

	rx, err := l.ref(n.Inputs[0], n)
	if err != nil {
		return err
	}
	rw, err := l.ref(n.Inputs[1], n)
	if err != nil {
		return err
	}
	direct := kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 &&
		slices.Equal(win.PadsEnd, make([]int64, len(win.PadsEnd)))
	chunk := images
	var col Ref
	if !direct {
		per := ckk * p * esize
		chunk = max(1, min(images, l.m.Options.WorkspaceBytes/max(per, 1)))
		col = l.newBuf(chunk * per)
	}
	ry := l.output(n.Outputs[0])
	if graph.Numel(y.Shape) == 0 {
		return nil
	}
	var im2col kernels.Kernel
	if !direct {
		if im2col, err = kernels.Im2Col(y.DType); err != nil {
			return err
		}
	}
	mg, kg := m/groups, ckk/groups
	for n0 := int64(0); n0 < images; n0 += chunk {
		cn := min(chunk, images-n0)
		xAt := rx.Add(n0 * c * h * wd * esize)
		cols := xAt
		if !direct {
			l.use(col)
			l.launch(n.Name+"::im2col", im2col, grid1D(cn*ckk*p), block1D,
				ptr(col), ptr(xAt), i64(cn), i64(c), i64(h), i64(wd), i64(kh), i64(kw), i64(oh), i64(ow),
				i64(sh), i64(sw), i64(ph), i64(pw), i64(dh), i64(dw))
			cols = col
		}
		for g := range groups {
			if !direct {
				l.use(col)
			}
			l.use(rx)
			l.gemm(n.Name, Gemm{
				M: mg, N: p, K: kg,
				A: rw.Add(g * mg * kg * esize), LDA: kg, StrideA: 0,
				B: cols.Add(g * kg * p * esize), LDB: p, StrideB: ckk * p,
				C: ry.Add((n0*m*p + g*mg*p) * esize), LDC: p, StrideC: m * p,
				Batch: cn, Alpha: 1, DType: y.DType, TF32: l.tf32(),
			})
		}
	}
	return nil
}

func (l *lowerer) pool(n *graph.Node) error {
	if err := l.unusedOutputs(n, 1); err != nil {
		return err
	}
	x, y := l.info(n.Inputs[0]), l.info(n.Outputs[0])
	h, wd, err := spatial2D(n, x.Shape[2:])
	if err != nil {
		return err
	}
	ks, _ := n.Ints("kernel_shape")
	win, err := graph.WindowOf(n, x.Shape[2:], ks, n.Int("ceil_mode", 0) != 0)
	if err != nil {
		return err
	}
	k, err := kernels.Pool2D(y.DType, n.Op == "MaxPool")
	if err != nil {
		return err
	}
	kh, kw := pair(ks, 1)
	oh, ow := pair(win.Out, 1)
	sh, sw := pair(win.Strides, 1)
	ph, pw := pair(win.PadsBegin, 0)
	dh, dw := pair(win.Dilations, 1)
	eh, ew := pair(win.PadsEnd, 0)
	rx, err := l.ref(n.Inputs[0], n)
	if err != nil {
		return err
	}
	ry := l.output(n.Outputs[0])
	planes := x.Shape[0] * x.Shape[1]
	if total := planes * oh * ow; total > 0 {
		l.launch(n.Name, k, grid1D(total), block1D, ptr(ry), ptr(rx), i64(planes), i64(h), i64(wd), i64(oh), i64(ow),
			i64(kh), i64(kw), i64(sh), i64(sw), i64(ph), i64(pw), i64(dh), i64(dw), i64(eh), i64(ew), i64(n.Int("count_include_pad", 0)))
	}
	return nil
}

func (l *lowerer) globalPool(n *graph.Node) error {
	x, y := l.info(n.Inputs[0]), l.info(n.Outputs[0])
	k, err := kernels.RowMean(y.DType)
	if err != nil {
		return err
	}
	rx, err := l.ref(n.Inputs[0], n)
	if err != nil {
		return err
	}
	ry := l.output(n.Outputs[0])
	rows := x.Shape[0] * x.Shape[1]
	if rows > 0 {
		l.launch(n.Name, k, rowsGrid(rows), rowsBlock, ptr(ry), ptr(rx), i64(rows), i64(graph.Numel(x.Shape[2:])))
	}
	return nil
}

func (l *lowerer) softmax(n *graph.Node) error {
	x := l.info(n.Inputs[0])
	axis, flatten, err := graph.SoftmaxAxis(n, l.g.Opset, len(x.Shape))
	if err != nil {
		return fmt.Errorf("%s: %w", n, err)
	}
	outer := graph.Numel(x.Shape[:axis])
	dim, inner := x.Shape[axis], graph.Numel(x.Shape[axis+1:])
	if flatten {
		dim, inner = graph.Numel(x.Shape[axis:]), 1
	}
	rx, err := l.ref(n.Inputs[0], n)
	if err != nil {
		return err
	}
	ry := l.output(n.Outputs[0])
	if outer*dim*inner == 0 {
		return nil
	}
	if inner == 1 {
		k, err := kernels.SoftmaxRows(x.DType)
		if err != nil {
			return err
		}
		l.launch(n.Name, k, rowsGrid(outer), rowsBlock, ptr(ry), ptr(rx), i64(outer), i64(dim))
		return nil
	}
	k, err := kernels.SoftmaxStrided(x.DType)
	if err != nil {
		return err
	}
	l.launch(n.Name, k, grid1D(outer*inner), block1D, ptr(ry), ptr(rx), i64(outer), i64(dim), i64(inner))
	return nil
}

func (l *lowerer) layerNorm(n *graph.Node) error {
	if err := l.unusedOutputs(n, 1); err != nil {
		return err
	}
	x := l.info(n.Inputs[0])
	axis := n.Int("axis", -1)
	if axis < 0 {
		axis += int64(len(x.Shape))
	}
	for _, in := range n.Inputs[1:] {
		if in != "" && l.info(in).DType != x.DType {
			return fmt.Errorf("%w: %s: scale and bias of type %s for input of type %s", ErrUnsupported, n, l.info(in).DType, x.DType)
		}
	}
	k, err := kernels.LayerNorm(x.DType)
	if err != nil {
		return err
	}
	rx, err := l.ref(n.Inputs[0], n)
	if err != nil {
		return err
	}
	rs, err := l.ref(n.Inputs[1], n)
	if err != nil {
		return err
	}
	rb, hasBias := rs, int64(0)
	if n.Input(2) != "" {
		if rb, err = l.ref(n.Inputs[2], n); err != nil {
			return err
		}
		hasBias = 1
	}
	ry := l.output(n.Outputs[0])
	rows, dim := graph.Numel(x.Shape[:axis]), graph.Numel(x.Shape[axis:])
	if rows*dim > 0 {
		l.launch(n.Name, k, rowsGrid(rows), rowsBlock, ptr(ry), ptr(rx), ptr(rs), ptr(rb),
			i64(rows), i64(dim), i64(hasBias), f32(n.Float("epsilon", 1e-5)))
	}
	return nil
}

// copyStrided launches the strided copy kernel over an iteration shape;
// index32 says both tensors have fewer than 2^31 elements.
func (l *lowerer) copyStrided(node string, out, in Ref, esize int, shape, inSt, outSt []int64, inBase, outBase int64, index32 bool) error {
	cs, cst := collapse(shape, [][]int64{inSt, outSt})
	if len(cs) > kernels.MaxRank {
		return fmt.Errorf("%w: %s moves data over %d dimensions (at most %d)", ErrUnsupported, node, len(cs), kernels.MaxRank)
	}
	n := graph.Numel(shape)
	if n == 0 {
		return nil
	}
	l.launch(node, kernels.Copy(esize, index32), grid1D(n), block1D, ptr(out), ptr(in), i64(n), i64(int64(len(cs))),
		dims(cs), dims(cst[0]), dims(cst[1]), i64(inBase), i64(outBase))
	return nil
}

func (l *lowerer) transpose(n *graph.Node) error {
	x, y := l.info(n.Inputs[0]), l.info(n.Outputs[0])
	perm, err := graph.Perm(n, len(x.Shape))
	if err != nil {
		return err
	}
	st := contiguous(x.Shape)
	in := make([]int64, len(perm))
	for i, p := range perm {
		in[i] = st[p]
	}
	rx, err := l.ref(n.Inputs[0], n)
	if err != nil {
		return err
	}
	ry := l.output(n.Outputs[0])
	return l.copyStrided(n.Name, ry, rx, y.DType.Size(), y.Shape, in, contiguous(y.Shape), 0, 0, fits32(graph.Numel(y.Shape)))
}

func (l *lowerer) slice(n *graph.Node) error {
	x, y := l.info(n.Inputs[0]), l.info(n.Outputs[0])
	spec, err := l.s.SliceSpec(n, l.g.Opset)
	if err != nil {
		return err
	}
	st := contiguous(x.Shape)
	in := make([]int64, len(st))
	var base int64
	for d := range st {
		in[d] = st[d] * spec.Steps[d]
		base += spec.Starts[d] * st[d]
	}
	rx, err := l.ref(n.Inputs[0], n)
	if err != nil {
		return err
	}
	ry := l.output(n.Outputs[0])
	return l.copyStrided(n.Name, ry, rx, y.DType.Size(), y.Shape, in, contiguous(y.Shape), base, 0,
		fits32(graph.Numel(x.Shape)) && fits32(graph.Numel(y.Shape)))
}

func (l *lowerer) concat(n *graph.Node) error {
	y := l.info(n.Outputs[0])
	axis := n.Int("axis", 0)
	if axis < 0 {
		axis += int64(len(y.Shape))
	}
	refs := make([]Ref, len(n.Inputs))
	for i, in := range n.Inputs {
		r, err := l.ref(in, n)
		if err != nil {
			return err
		}
		refs[i] = r
	}
	ry := l.output(n.Outputs[0])
	outSt := contiguous(y.Shape)
	var at int64
	for i, in := range n.Inputs {
		x := l.info(in)
		l.use(ry)
		if err := l.copyStrided(n.Name, ry, refs[i], y.DType.Size(), x.Shape, contiguous(x.Shape), outSt, 0, at*outSt[axis], fits32(graph.Numel(y.Shape))); err != nil {
			return err
		}
		at += x.Shape[axis]
	}
	return nil
}

func (l *lowerer) gather(n *graph.Node) error {
	data, idx, y := l.info(n.Inputs[0]), l.info(n.Inputs[1]), l.info(n.Outputs[0])
	axis := n.Int("axis", 0)
	if axis < 0 {
		axis += int64(len(data.Shape))
	}
	k, err := kernels.Gather(y.DType.Size(), idx.DType)
	if err != nil {
		return err
	}
	rd, err := l.ref(n.Inputs[0], n)
	if err != nil {
		return err
	}
	ri, err := l.ref(n.Inputs[1], n)
	if err != nil {
		return err
	}
	ry := l.output(n.Outputs[0])
	outer, dim, inner := graph.Numel(data.Shape[:axis]), data.Shape[axis], graph.Numel(data.Shape[axis+1:])
	count := graph.Numel(idx.Shape)
	if total := outer * count * inner; total > 0 {
		l.launch(n.Name, k, grid1D(total), block1D, ptr(ry), ptr(rd), ptr(ri), i64(outer), i64(dim), i64(inner), i64(count))
	}
	return nil
}
