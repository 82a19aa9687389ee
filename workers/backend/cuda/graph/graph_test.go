package graph

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func load(t *testing.T, name string) *Graph {
	t.Helper()
	g, err := Load(filepath.Join("..", "testdata", name+".onnx"))
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	if err := g.Fold(); err != nil {
		t.Fatalf("Fold(%s): %v", name, err)
	}
	return g
}

func opCounts(g *Graph) map[string]int {
	m := map[string]int{}
	for _, n := range g.Nodes {
		m[n.Op]++
	}
	return m
}

// TestLowerableGraphs loads the test networks, folds them and infers their
// shapes at several batch sizes.
func TestLowerableGraphs(t *testing.T) {
	tests := []struct {
		model   string
		inputs  func(b int64) map[string][]int64
		outputs func(b int64) map[string][]int64
		// ops after folding, and ops that must be gone
		ops  map[string]int
		gone []string
	}{
		{
			model:   "mlp_tiny",
			inputs:  func(b int64) map[string][]int64 { return map[string][]int64{"input": {b, 16}} },
			outputs: func(b int64) map[string][]int64 { return map[string][]int64{"probabilities": {b, 8}} },
			// Each Gemm bias becomes an Add of its own (fused later).
			ops: map[string]int{"Gemm": 3, "Add": 3, "Relu": 2, "Softmax": 1},
		},
		{
			model:   "cnn_tiny",
			inputs:  func(b int64) map[string][]int64 { return map[string][]int64{"image": {b, 3, 8, 8}} },
			outputs: func(b int64) map[string][]int64 { return map[string][]int64{"probabilities": {b, 5}} },
			// The three BatchNormalizations fold into their Convs.
			ops:  map[string]int{"Conv": 4, "Relu": 4, "MaxPool": 1, "AveragePool": 1, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1, "Softmax": 1},
			gone: []string{"BatchNormalization"},
		},
		{
			model:  "encoder_tiny",
			inputs: func(b int64) map[string][]int64 { return map[string][]int64{"input_ids": {b, 8}} },
			outputs: func(b int64) map[string][]int64 {
				return map[string][]int64{"embedding": {b, 16}, "logits": {b, 3}}
			},
			// The position table's Slice is folded; the Q/K/V slices stay.
			ops: map[string]int{"Slice": 3, "Softmax": 1, "LayerNormalization": 3, "Erf": 1, "Shape": 1},
		},
		{
			model:  "encoder_tiny_gelu",
			inputs: func(b int64) map[string][]int64 { return map[string][]int64{"input_ids": {b, 8}} },
			outputs: func(b int64) map[string][]int64 {
				return map[string][]int64{"embedding": {b, 16}, "logits": {b, 3}}
			},
			ops:  map[string]int{"Gelu": 2, "Softmax": 2, "LayerNormalization": 5},
			gone: []string{"Erf"},
		},
		{
			model: "simple_int",
			inputs: func(b int64) map[string][]int64 {
				return map[string][]int64{"INPUT0": {b, 16}, "INPUT1": {b, 16}}
			},
			outputs: func(b int64) map[string][]int64 {
				return map[string][]int64{"OUTPUT0": {b, 16}, "OUTPUT1": {b, 16}}
			},
			ops: map[string]int{"Add": 1, "Sub": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			g := load(t, tt.model)
			got := opCounts(g)
			for op, n := range tt.ops {
				if got[op] != n {
					t.Errorf("%d %s nodes after folding, want %d (all: %v)", got[op], op, n, got)
				}
			}
			for _, op := range tt.gone {
				if got[op] != 0 {
					t.Errorf("%d %s nodes left after folding", got[op], op)
				}
			}
			for _, b := range []int64{1, 3, 64} {
				s, err := g.Infer(tt.inputs(b))
				if err != nil {
					t.Fatalf("Infer(batch %d): %v", b, err)
				}
				for name, want := range tt.outputs(b) {
					if info := s.Info[name]; !slices.Equal(info.Shape, want) || info.DType != Float && info.DType != Int32 {
						t.Errorf("batch %d: output %s is %v, want shape %v", b, name, info, want)
					}
				}
				for _, n := range g.Nodes {
					for _, o := range n.Outputs {
						if _, ok := s.Info[o]; !ok && o != "" {
							t.Errorf("batch %d: no shape for %s output %q", b, n, o)
						}
					}
				}
			}
		})
	}
}

// TestEncoderShapeValues checks what the host computes from shapes: the
// heads shape is [batch, seq, heads, head dim] for each batch size, and the
// Q, K and V slices and transposes have the shapes attention needs.
func TestEncoderShapeValues(t *testing.T) {
	g := load(t, "encoder_tiny")
	for _, b := range []int64{1, 5} {
		s, err := g.Infer(map[string][]int64{"input_ids": {b, 8}})
		if err != nil {
			t.Fatal(err)
		}
		heads := s.Host["heads_shape"]
		if heads == nil || !slices.Equal(heads.Ints(), []int64{b, 8, 2, 8}) {
			t.Errorf("batch %d: heads_shape = %v, want [%d 8 2 8]", b, heads, b)
		}
		want := map[string][]int64{
			"layer0.q":         {b, 8, 16},
			"layer0.q.t":       {b, 2, 8, 8},
			"layer0.k.t":       {b, 2, 8, 8},
			"layer0.scores":    {b, 2, 8, 8},
			"layer0.context.t": {b, 8, 2, 8},
			"cls":              {b, 1, 16},
			"cls.squeeze":      {b, 16},
		}
		for name, shape := range want {
			if got := s.Info[name].Shape; !slices.Equal(got, shape) {
				t.Errorf("batch %d: %s has shape %v, want %v", b, name, got, shape)
			}
		}
		if s.Host["layer0.q"] != nil {
			t.Errorf("an activation was evaluated on the host")
		}
	}
}

func TestUnsupportedOperatorsNamed(t *testing.T) {
	_, err := Load(filepath.Join("..", "testdata", "unsupported.onnx"))
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Load: %v, want ErrUnsupported", err)
	}
	for _, want := range []string{"Floor", "HardSwish", `"floor"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "Relu") {
		t.Errorf("error %q names a supported operator", err)
	}
}

func TestInferRejectsWrongInputs(t *testing.T) {
	g := load(t, "mlp_tiny")
	tests := []struct {
		name   string
		inputs map[string][]int64
		want   string
	}{
		{"missing", map[string][]int64{}, `no shape given for input "input"`},
		{"rank", map[string][]int64{"input": {2}}, "rank 2"},
		{"fixed dim", map[string][]int64{"input": {2, 17}}, "does not fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g.Infer(tt.inputs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Infer = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestBroadcast(t *testing.T) {
	tests := []struct {
		a, b, want []int64
		ok         bool
	}{
		{[]int64{2, 3}, []int64{3}, []int64{2, 3}, true},
		{[]int64{4, 1, 5}, []int64{3, 1}, []int64{4, 3, 5}, true},
		{[]int64{}, []int64{2}, []int64{2}, true},
		{[]int64{2, 3}, []int64{2}, nil, false},
	}
	for _, tt := range tests {
		got, err := Broadcast(tt.a, tt.b)
		if (err == nil) != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("Broadcast(%v, %v) = %v, %v; want %v (ok %v)", tt.a, tt.b, got, err, tt.want, tt.ok)
		}
	}
}

func TestMatMulShape(t *testing.T) {
	tests := []struct {
		a, b, want []int64
		ok         bool
	}{
		{[]int64{2, 3}, []int64{3, 4}, []int64{2, 4}, true},
		{[]int64{5, 2, 3}, []int64{3, 4}, []int64{5, 2, 4}, true},
		{[]int64{5, 1, 2, 3}, []int64{7, 3, 4}, []int64{5, 7, 2, 4}, true},
		{[]int64{3}, []int64{3, 4}, []int64{4}, true},
		{[]int64{2, 3}, []int64{3}, []int64{2}, true},
		{[]int64{2, 3}, []int64{4, 5}, nil, false},
	}
	for _, tt := range tests {
		got, err := MatMulShape(tt.a, tt.b)
		if (err == nil) != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("MatMulShape(%v, %v) = %v, %v; want %v", tt.a, tt.b, got, err, tt.want)
		}
	}
}

func TestReshapeTarget(t *testing.T) {
	tests := []struct {
		in, req, want []int64
		allowZero     bool
		ok            bool
	}{
		{[]int64{2, 3, 4}, []int64{0, -1}, []int64{2, 12}, false, true},
		{[]int64{2, 3, 4}, []int64{-1, 4}, []int64{6, 4}, false, true},
		{[]int64{2, 3, 4}, []int64{0, 0, 2, 2}, []int64{2, 3, 2, 2}, false, true},
		{[]int64{0, 3}, []int64{0, 3}, []int64{0, 3}, true, true},
		{[]int64{2, 3}, []int64{-1, -1}, nil, false, false},
		{[]int64{2, 3}, []int64{4, 2}, nil, false, false},
	}
	for _, tt := range tests {
		got, err := ReshapeTarget(tt.in, tt.req, tt.allowZero)
		if (err == nil) != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("ReshapeTarget(%v, %v) = %v, %v; want %v", tt.in, tt.req, got, err, tt.want)
		}
	}
}

func TestResolveSlice(t *testing.T) {
	tests := []struct {
		name                       string
		shape                      []int64
		starts, ends, axes, steps  []int64
		wantStarts, wantSteps, out []int64
	}{
		{"plain", []int64{10}, []int64{2}, []int64{5}, nil, nil, []int64{2}, []int64{1}, []int64{3}},
		{"negative", []int64{10}, []int64{-3}, []int64{-1}, nil, nil, []int64{7}, []int64{1}, []int64{2}},
		{"clamped end", []int64{4, 10}, []int64{1}, []int64{1 << 40}, []int64{1}, nil, []int64{0, 1}, []int64{1, 1}, []int64{4, 9}},
		{"step 3", []int64{10}, []int64{1}, []int64{10}, nil, []int64{3}, []int64{1}, []int64{3}, []int64{3}},
		{"reverse", []int64{5}, []int64{-1}, []int64{-1 << 40}, nil, []int64{-1}, []int64{4}, []int64{-1}, []int64{5}},
		{"empty", []int64{5}, []int64{4}, []int64{2}, nil, nil, []int64{4}, []int64{1}, []int64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveSlice(tt.shape, tt.starts, tt.ends, tt.axes, tt.steps)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Starts, tt.wantStarts) || !slices.Equal(got.Steps, tt.wantSteps) || !slices.Equal(got.Out, tt.out) {
				t.Errorf("got starts %v steps %v out %v, want %v %v %v", got.Starts, got.Steps, got.Out, tt.wantStarts, tt.wantSteps, tt.out)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	tests := []struct {
		name    string
		attrs   map[string]Attr
		in, k   []int64
		ceil    bool
		out     []int64
		begin   []int64
		wantErr bool
	}{
		{"3x3 pad 1", map[string]Attr{"pads": {Kind: AttrInts, Ints: []int64{1, 1, 1, 1}}}, []int64{8, 8}, []int64{3, 3}, false, []int64{8, 8}, []int64{1, 1}, false},
		{"stride 2", map[string]Attr{"strides": {Kind: AttrInts, Ints: []int64{2, 2}}, "pads": {Kind: AttrInts, Ints: []int64{1, 1, 1, 1}}}, []int64{7, 8}, []int64{3, 3}, false, []int64{4, 4}, []int64{1, 1}, false},
		{"same upper", map[string]Attr{"auto_pad": {Kind: AttrString, S: "SAME_UPPER"}, "strides": {Kind: AttrInts, Ints: []int64{2}}}, []int64{5}, []int64{2}, false, []int64{3}, []int64{0}, false},
		{"same lower", map[string]Attr{"auto_pad": {Kind: AttrString, S: "SAME_LOWER"}, "strides": {Kind: AttrInts, Ints: []int64{2}}}, []int64{5}, []int64{2}, false, []int64{3}, []int64{1}, false},
		{"valid", map[string]Attr{"auto_pad": {Kind: AttrString, S: "VALID"}}, []int64{5}, []int64{3}, false, []int64{3}, []int64{0}, false},
		{"ceil", map[string]Attr{"strides": {Kind: AttrInts, Ints: []int64{2}}}, []int64{5}, []int64{2}, true, []int64{3}, []int64{0}, false},
		{"ceil pads", map[string]Attr{"strides": {Kind: AttrInts, Ints: []int64{2}}, "pads": {Kind: AttrInts, Ints: []int64{0, 1}}}, []int64{6}, []int64{3}, true, []int64{3}, []int64{0}, false},
		{"dilation", map[string]Attr{"dilations": {Kind: AttrInts, Ints: []int64{2}}}, []int64{7}, []int64{3}, false, []int64{3}, []int64{0}, false},
		{"too big", map[string]Attr{}, []int64{2}, []int64{3}, false, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &Node{Op: "Conv", Name: tt.name, Outputs: []string{"y"}, Attrs: tt.attrs}
			w, err := WindowOf(n, tt.in, tt.k, tt.ceil)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("WindowOf = %+v, want an error", w)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(w.Out, tt.out) || !slices.Equal(w.PadsBegin, tt.begin) {
				t.Errorf("out %v pads begin %v, want %v %v", w.Out, w.PadsBegin, tt.out, tt.begin)
			}
		})
	}
}

func TestTensorRoundTrip(t *testing.T) {
	vals := []float64{0, 1, -2.5, 65504, 1e-3}
	for _, dt := range []DType{Float, Float16, BFloat16, Double} {
		got := NewFloats(dt, []int64{5}, vals).Floats()
		for i, v := range vals {
			tol := 1e-2 * max(1, abs(v))
			if abs(got[i]-v) > tol {
				t.Errorf("%s: %g came back as %g", dt, v, got[i])
			}
		}
	}
	ints := []int64{-3, 0, 7, 1 << 40}
	if got := NewInts(Int64, []int64{4}, ints).Ints(); !slices.Equal(got, ints) {
		t.Errorf("int64 round trip: %v", got)
	}
	if got := NewInts(Int32, []int64{3}, ints[:3]).Convert(Float).Floats(); !slices.Equal(got, []float64{-3, 0, 7}) {
		t.Errorf("int32 -> float: %v", got)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
