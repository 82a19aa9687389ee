package kernels

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
)

// EWOp is one operation of a fused elementwise kernel. Its arguments are
// earlier values: the kernel's inputs are values 0..len(Inputs)-1, and
// each op appends one value.
type EWOp struct {
	// Op is an ONNX elementwise operator (Add, Relu, Cast, ...) or
	// "Literal" for a constant folded into the source.
	Op   string
	Args []int
	// DType is the result's element type.
	DType graph.DType
	// Literal is the value of a "Literal".
	Literal float64
	// Approximate is Gelu's "approximate" attribute.
	Approximate string
}

// Elementwise describes a fused elementwise kernel: it reads its inputs
// (each broadcast to the iteration shape), evaluates Ops and stores the
// last value.
type Elementwise struct {
	Inputs []graph.DType
	Ops    []EWOp
	// Index32 computes indices in 32 bits (every tensor has fewer than
	// 2^31 elements).
	Index32 bool
}

// The elementwise operators the generator writes.
var ewOps = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true,
	"Relu": true, "Sigmoid": true, "Tanh": true, "Erf": true, "Gelu": true,
	"Sqrt": true, "Exp": true, "Neg": true, "Cast": true, "Literal": true,
}

// CanFuse reports whether op can be part of an elementwise kernel over
// type d.
func CanFuse(op string, d graph.DType) bool {
	if !ewOps[op] || !Supported(d) {
		return false
	}
	switch op {
	case "Add", "Sub", "Mul", "Div", "Neg", "Relu", "Cast", "Literal":
		return true
	}
	return isFloatKernelType(d)
}

// Elementwise kernel parameters, in order: out, in0..inN-1, n, rank,
// shape (Dims), modes, then one Dims of strides per input.
//
// Modes packs two bits per input: 0 contiguous with the output, 1 a single
// element, 2 strided by its Dims, 3 repeating every Dims[0] elements.
const (
	ModeContiguous = 0
	ModeScalar     = 1
	ModeStrided    = 2
	ModeTrailing   = 3
)

// indexType is the C type of a kernel's element indices.
func indexType(index32 bool) string {
	if index32 {
		return "unsigned int"
	}
	return "long long"
}

// Kernel writes the fused kernel; the output type is the last op's.
func (e Elementwise) Kernel() (Kernel, error) {
	if len(e.Ops) == 0 {
		return Kernel{}, fmt.Errorf("elementwise kernel without operations")
	}
	if len(e.Inputs) > 32 {
		return Kernel{}, fmt.Errorf("elementwise kernel with %d inputs (at most 32)", len(e.Inputs))
	}
	types := append([]graph.DType{}, e.Inputs...)
	for _, op := range e.Ops {
		types = append(types, op.DType)
	}
	for _, t := range types {
		if !Supported(t) {
			return Kernel{}, fmt.Errorf("%w: elementwise on %s", graph.ErrUnsupported, t)
		}
	}
	out := e.Ops[len(e.Ops)-1].DType
	params := []Param{{Ptr, ct(out).storage + "* __restrict__ out"}}
	for i, t := range e.Inputs {
		params = append(params, Param{Ptr, fmt.Sprintf("const %s* __restrict__ in%d", ct(t).storage, i)})
	}
	params = append(params, Param{I64, "long long n"}, Param{I64, "long long rank"},
		Param{DimsParam, "hx_dims shape"}, Param{I64, "long long modes"})
	for i := range e.Inputs {
		params = append(params, Param{DimsParam, fmt.Sprintf("hx_dims st%d", i)})
	}

	var b strings.Builder
	ix := indexType(e.Index32)
	fmt.Fprintf(&b, "{\n  %s step = (%s)gridDim.x * blockDim.x, count = (%s)n;\n", ix, ix, ix)
	fmt.Fprintf(&b, "  for (%s i = (%s)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += step) {\n", ix, ix)
	for i, t := range e.Inputs {
		c := ct(t)
		fmt.Fprintf(&b, "    %s v%d = %s;\n", c.compute, i,
			fmt.Sprintf(c.load, fmt.Sprintf("in%d[hx_offset<%s>(i, (modes >> %d) & 3, rank, shape, st%d)]", i, ix, 2*i, i)))
	}
	for j, op := range e.Ops {
		v := len(e.Inputs) + j
		expr, err := ewExpr(op, types)
		if err != nil {
			return Kernel{}, err
		}
		c := ct(op.DType)
		if c.round != "" && op.Op != "Literal" {
			expr = fmt.Sprintf(c.round, expr)
		}
		fmt.Fprintf(&b, "    %s v%d = %s;\n", c.compute, v, expr)
	}
	fmt.Fprintf(&b, "    out[i] = %s;\n  }\n}", fmt.Sprintf(ct(out).store, fmt.Sprintf("v%d", len(types)-1)))
	return named("ew", Kernel{Params: params, Body: b.String()}), nil
}

// ewExpr is the C expression of op; types are the values' element types.
func ewExpr(op EWOp, types []graph.DType) (string, error) {
	arg := func(i int) (string, error) {
		if i >= len(op.Args) || op.Args[i] < 0 || op.Args[i] >= len(types) {
			return "", fmt.Errorf("elementwise %s: bad argument %d", op.Op, i)
		}
		return fmt.Sprintf("v%d", op.Args[i]), nil
	}
	argAs := func(i int, compute string) (string, error) {
		s, err := arg(i)
		if err != nil {
			return "", err
		}
		if ct(types[op.Args[i]]).compute != compute {
			return fmt.Sprintf("(%s)%s", compute, s), nil
		}
		return s, nil
	}
	compute := ct(op.DType).compute
	isFloat := compute == "float"
	unary := func(format string) (string, error) {
		a, err := argAs(0, compute)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf(format, a), nil
	}
	switch op.Op {
	case "Literal":
		return literal(op.Literal, op.DType), nil
	case "Add", "Sub", "Mul", "Div":
		a, err := argAs(0, compute)
		if err != nil {
			return "", err
		}
		c, err := argAs(1, compute)
		if err != nil {
			return "", err
		}
		sym := map[string]string{"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}[op.Op]
		return fmt.Sprintf("%s %s %s", a, sym, c), nil
	case "Pow":
		a, err := argAs(0, "float")
		if err != nil {
			return "", err
		}
		c, err := argAs(1, "float")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("powf(%s, %s)", a, c), nil
	case "Neg":
		return unary("-%s")
	case "Relu":
		a, err := argAs(0, compute)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("(%s > (%s)0 ? %s : (%s)0)", a, compute, a, compute), nil
	case "Cast":
		src := ct(types[op.Args[0]])
		a, err := arg(0)
		if err != nil {
			return "", err
		}
		if op.DType == graph.Bool {
			return fmt.Sprintf("(int)(%s != (%s)0)", a, src.compute), nil
		}
		if src.compute == compute {
			return a, nil
		}
		return fmt.Sprintf("(%s)%s", compute, a), nil
	}
	if !isFloat {
		return "", fmt.Errorf("%w: %s on %s", graph.ErrUnsupported, op.Op, op.DType)
	}
	switch op.Op {
	case "Sigmoid":
		return unary("hx_sigmoid(%s)")
	case "Tanh":
		return unary("tanhf(%s)")
	case "Erf":
		return unary("erff(%s)")
	case "Sqrt":
		return unary("sqrtf(%s)")
	case "Exp":
		return unary("expf(%s)")
	case "Gelu":
		if op.Approximate == "tanh" {
			return unary("hx_gelu_tanh(%s)")
		}
		return unary("hx_gelu(%s)")
	}
	return "", fmt.Errorf("%w: elementwise operator %s", graph.ErrUnsupported, op.Op)
}

// literal writes v as a C constant of type d's compute type, rounded to d.
func literal(v float64, d graph.DType) string {
	switch ct(d).compute {
	case "float":
		f := graph.NewFloats(d, []int64{1}, []float64{v}).Floats()[0]
		f32 := float32(f)
		switch {
		case math.IsNaN(f):
			return "__uint_as_float(0x7fc00000u)"
		case math.IsInf(f, 1):
			return "__uint_as_float(0x7f800000u)"
		case math.IsInf(f, -1):
			return "__uint_as_float(0xff800000u)"
		}
		return strconv.FormatFloat(float64(f32), 'e', 9, 32) + "f"
	case "long long":
		return strconv.FormatInt(int64(v), 10) + "LL"
	}
	return strconv.FormatInt(int64(int32(v)), 10)
}
