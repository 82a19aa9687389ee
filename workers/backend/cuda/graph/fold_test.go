package graph

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/tensor"
)

// foldOne folds a graph of one node over constant inputs and returns the
// node's output, which must have become a constant.
func foldOne(t *testing.T, op string, attrs map[string]Attr, inputs ...*Tensor) (*Tensor, error) {
	t.Helper()
	g := &Graph{Consts: map[string]*Tensor{}, Opset: 17}
	n := &Node{Name: "n", Op: op, Attrs: attrs, Outputs: []string{"y"}}
	for i, in := range inputs {
		name := fmt.Sprint("x", i)
		g.Consts[name] = in
		n.Inputs = append(n.Inputs, name)
	}
	g.Nodes = []*Node{n}
	if err := g.foldConstants(); err != nil {
		return nil, err
	}
	if len(g.Nodes) != 0 || g.Consts["y"] == nil {
		t.Fatalf("%s was not folded", op)
	}
	return g.Consts["y"], nil
}

func floats(dt DType, shape []int64, v ...float64) *Tensor { return NewFloats(dt, shape, v) }
func ints(dt DType, shape []int64, v ...int64) *Tensor     { return NewInts(dt, shape, v) }

// TestFoldConstants checks the host evaluation of every operator the
// folder runs, against values worked out by hand: a wrong fold silently
// changes what the model computes on the GPU.
func TestFoldConstants(t *testing.T) {
	ai := func(name string, v int64) map[string]Attr { return map[string]Attr{name: {Kind: AttrInt, I: v}} }
	tests := []struct {
		name   string
		op     string
		attrs  map[string]Attr
		in     []*Tensor
		dtype  DType
		shape  []int64
		floats []float64 // want, for float outputs
		ints   []int64   // want, for integer outputs
	}{
		{"Add broadcasts a row", "Add", nil, []*Tensor{floats(Float, []int64{2, 2}, 1, 2, 3, 4), floats(Float, []int64{2}, 10, 20)},
			Float, []int64{2, 2}, []float64{11, 22, 13, 24}, nil},
		{"Sub broadcasts a scalar", "Sub", nil, []*Tensor{floats(Double, []int64{3}, 1, 2, 3), floats(Double, []int64{}, 1)},
			Double, []int64{3}, []float64{0, 1, 2}, nil},
		{"Mul on int64", "Mul", nil, []*Tensor{ints(Int64, []int64{2}, 3, -4), ints(Int64, []int64{2}, 5, 6)},
			Int64, []int64{2}, nil, []int64{15, -24}},
		{"Div on int32 truncates", "Div", nil, []*Tensor{ints(Int32, []int64{2}, 7, -7), ints(Int32, []int64{}, 2)},
			Int32, []int64{2}, nil, []int64{3, -3}},
		{"Div on float", "Div", nil, []*Tensor{floats(Float, []int64{1}, 1), floats(Float, []int64{1}, 4)},
			Float, []int64{1}, []float64{0.25}, nil},
		{"Pow on ints", "Pow", nil, []*Tensor{ints(Int64, []int64{2}, 2, 3), ints(Int64, []int64{}, 3)},
			Int64, []int64{2}, nil, []int64{8, 27}},
		{"Add on int8 wraps", "Add", nil, []*Tensor{ints(Int8, []int64{1}, 127), ints(Int8, []int64{1}, 1)},
			Int8, []int64{1}, nil, []int64{-128}},
		{"Relu on float", "Relu", nil, []*Tensor{floats(Float, []int64{3}, -1, 0, 2)}, Float, []int64{3}, []float64{0, 0, 2}, nil},
		{"Relu on int", "Relu", nil, []*Tensor{ints(Int32, []int64{2}, -5, 5)}, Int32, []int64{2}, nil, []int64{0, 5}},
		{"Neg on int", "Neg", nil, []*Tensor{ints(Int64, []int64{2}, -5, 5)}, Int64, []int64{2}, nil, []int64{5, -5}},
		{"Neg on float16", "Neg", nil, []*Tensor{floats(Float16, []int64{1}, 1.5)}, Float16, []int64{1}, []float64{-1.5}, nil},
		{"Sqrt", "Sqrt", nil, []*Tensor{floats(Double, []int64{2}, 4, 9)}, Double, []int64{2}, []float64{2, 3}, nil},
		{"Exp", "Exp", nil, []*Tensor{floats(Double, []int64{1}, 1)}, Double, []int64{1}, []float64{math.E}, nil},
		{"Sigmoid", "Sigmoid", nil, []*Tensor{floats(Double, []int64{1}, 0)}, Double, []int64{1}, []float64{0.5}, nil},
		{"Tanh", "Tanh", nil, []*Tensor{floats(Double, []int64{1}, 1)}, Double, []int64{1}, []float64{math.Tanh(1)}, nil},
		{"Erf", "Erf", nil, []*Tensor{floats(Double, []int64{1}, 1)}, Double, []int64{1}, []float64{math.Erf(1)}, nil},
		{"Gelu exact", "Gelu", nil, []*Tensor{floats(Double, []int64{2}, 0, 1)}, Double, []int64{2},
			[]float64{0, 0.5 * (1 + math.Erf(1/math.Sqrt2))}, nil},
		{"Gelu tanh", "Gelu", map[string]Attr{"approximate": {Kind: AttrString, S: "tanh"}}, []*Tensor{floats(Double, []int64{1}, 1)},
			Double, []int64{1}, []float64{0.5 * (1 + math.Tanh(math.Sqrt(2/math.Pi)*1.044715))}, nil},
		{"Cast float to int32 truncates", "Cast", ai("to", int64(Int32)), []*Tensor{floats(Float, []int64{2}, 2.7, -2.7)},
			Int32, []int64{2}, nil, []int64{2, -2}},
		{"Cast int to bool", "Cast", ai("to", int64(Bool)), []*Tensor{ints(Int64, []int64{3}, 0, 2, -1)},
			Bool, []int64{3}, nil, []int64{0, 1, 1}},
		{"Cast float to bfloat16", "Cast", ai("to", int64(BFloat16)), []*Tensor{floats(Float, []int64{1}, 1.5)},
			BFloat16, []int64{1}, []float64{1.5}, nil},
		{"Transpose reverses by default", "Transpose", nil, []*Tensor{ints(Int32, []int64{2, 3}, 1, 2, 3, 4, 5, 6)},
			Int32, []int64{3, 2}, nil, []int64{1, 4, 2, 5, 3, 6}},
		{"Transpose with perm", "Transpose", map[string]Attr{"perm": {Kind: AttrInts, Ints: []int64{1, 0, 2}}},
			[]*Tensor{ints(Uint8, []int64{2, 2, 1}, 1, 2, 3, 4)}, Uint8, []int64{2, 2, 1}, nil, []int64{1, 3, 2, 4}},
		{"Constant value_float", "Constant", map[string]Attr{"value_float": {Kind: AttrFloat, F: 2.5}}, nil,
			Float, []int64{}, []float64{2.5}, nil},
		{"Constant value_floats", "Constant", map[string]Attr{"value_floats": {Kind: AttrFloats, Floats: []float32{1, 2}}}, nil,
			Float, []int64{2}, []float64{1, 2}, nil},
		{"Constant value_int", "Constant", ai("value_int", 7), nil, Int64, []int64{}, nil, []int64{7}},
		{"Constant value_ints", "Constant", map[string]Attr{"value_ints": {Kind: AttrInts, Ints: []int64{1, 2, 3}}}, nil,
			Int64, []int64{3}, nil, []int64{1, 2, 3}},
		{"Constant value", "Constant", map[string]Attr{"value": {Kind: AttrTensor, T: ints(Int16, []int64{2}, -1, 1)}}, nil,
			Int16, []int64{2}, nil, []int64{-1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := foldOne(t, tt.op, tt.attrs, tt.in...)
			if err != nil {
				t.Fatal(err)
			}
			if got.DType != tt.dtype || !slices.Equal(got.Shape, tt.shape) {
				t.Fatalf("%s%v, want %s%v", got.DType, got.Shape, tt.dtype, tt.shape)
			}
			if tt.ints != nil {
				if !slices.Equal(got.Ints(), tt.ints) {
					t.Fatalf("values %v, want %v", got.Ints(), tt.ints)
				}
				return
			}
			g := got.Floats()
			for i := range tt.floats {
				if math.Abs(g[i]-tt.floats[i]) > 1e-6*math.Max(1, math.Abs(tt.floats[i])) {
					t.Fatalf("values %v, want %v", g, tt.floats)
				}
			}
		})
	}
}

func TestFoldConstantsErrors(t *testing.T) {
	tests := []struct {
		name        string
		op          string
		attrs       map[string]Attr
		in          []*Tensor
		want        string
		unsupported bool
	}{
		{"integer division by zero", "Div", nil, []*Tensor{ints(Int32, []int64{2}, 1, 2), ints(Int32, []int64{2}, 1, 0)},
			"integer division by zero", false},
		{"Sqrt of an int", "Sqrt", nil, []*Tensor{ints(Int32, []int64{1}, 4)}, "needs a float input, has int32", false},
		{"Cast to string", "Cast", map[string]Attr{"to": {Kind: AttrInt, I: int64(String)}}, []*Tensor{ints(Int32, []int64{1}, 4)},
			"cast to string", true},
		{"Constant with two values", "Constant", map[string]Attr{"value_int": {Kind: AttrInt, I: 1}, "value_float": {Kind: AttrFloat}}, nil,
			"needs exactly one value attribute", false},
		{"Constant value_string", "Constant", map[string]Attr{"value_string": {Kind: AttrString, S: "x"}}, nil,
			"attribute value_string", true},
		{"Constant value without a tensor", "Constant", map[string]Attr{"value": {Kind: AttrTensor}}, nil,
			"value is not a tensor", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &Graph{Consts: map[string]*Tensor{}, Opset: 17}
			n := &Node{Name: "n", Op: tt.op, Attrs: tt.attrs, Outputs: []string{"y"}}
			for i, in := range tt.in {
				name := fmt.Sprint("x", i)
				g.Consts[name] = in
				n.Inputs = append(n.Inputs, name)
			}
			g.Nodes = []*Node{n}
			err := g.foldConstants()
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, ErrUnsupported) != tt.unsupported {
				t.Fatalf("err = %v, want one containing %q (unsupported: %v)", err, tt.want, tt.unsupported)
			}
		})
	}
}

func TestDTypes(t *testing.T) {
	for d := range dtypeInfo {
		if d.IsFloat() && d.IsInt() {
			t.Errorf("%s is both float and int", d)
		}
		back, ok := FromDataType(d.DataType())
		if !ok || back != d {
			t.Errorf("FromDataType(%s.DataType()) = %s, %v", d, back, ok)
		}
	}
	if _, ok := FromDataType(tensor.DataType("NOPE")); ok {
		t.Error("FromDataType accepted an unknown type")
	}
	if s := DType(99).String(); s != "dtype(99)" {
		t.Errorf("unknown dtype prints %q", s)
	}
	if !Int16.IsInt() || Bool.IsInt() || !BFloat16.IsFloat() {
		t.Error("IsInt / IsFloat wrong for int16, bool or bfloat16")
	}
	for _, op := range SupportedOps() {
		if _, ok := ops[op]; !ok {
			t.Errorf("SupportedOps lists %s, which has no definition", op)
		}
	}
	if !IsElementwise("Add") || IsElementwise("MatMul") {
		t.Error("IsElementwise wrong for Add or MatMul")
	}
}
