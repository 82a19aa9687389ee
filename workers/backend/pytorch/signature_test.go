package pytorch

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

func sig(returns string, args ...string) signature {
	var s signature
	for _, a := range args {
		name, typ, _ := strings.Cut(a, ":")
		def := strings.HasSuffix(typ, "=")
		s.Args = append(s.Args, struct {
			Name    string `json:"name"`
			Type    string `json:"type"`
			Default bool   `json:"default"`
		}{name, strings.TrimSuffix(typ, "="), def})
	}
	s.Returns = returns
	return s
}

func ios(names ...string) []backend.IO {
	out := make([]backend.IO, len(names))
	for i, n := range names {
		out[i] = backend.IO{Name: n, DataType: tensor.FP32, Shape: []int64{-1, 4}}
	}
	return out
}

func TestBind(t *testing.T) {
	tests := []struct {
		name      string
		sig       signature
		in, out   []string
		argOf     []int
		nArgs     int
		resultOf  []int
		wantErr   string
		unsupport bool
	}{
		{name: "forward argument names", sig: sig("Tensor", "x:Tensor", "y:Tensor"), in: []string{"y", "x"}, out: []string{"z"},
			argOf: []int{1, 0}, nArgs: 2, resultOf: []int{0}},
		{name: "INPUT__i and OUTPUT__i", sig: sig("Tuple[Tensor, Tensor]", "a:Tensor", "b:Tensor"),
			in: []string{"INPUT__1", "INPUT__0"}, out: []string{"OUTPUT__1", "OUTPUT__0"},
			argOf: []int{1, 0}, nArgs: 2, resultOf: []int{1, 0}},
		{name: "outputs in config order", sig: sig("Tuple[Tensor, Tensor]", "x:Tensor"), in: []string{"x"}, out: []string{"sum", "diff"},
			argOf: []int{0}, nArgs: 1, resultOf: []int{0, 1}},
		{name: "list result: count known when it runs", sig: sig("List[Tensor]", "x:Tensor"), in: []string{"x"}, out: []string{"a", "b", "c"},
			argOf: []int{0}, nArgs: 1, resultOf: []int{0, 1, 2}},
		{name: "trailing default argument left out", sig: sig("Tensor", "x:Tensor", "scale:Tensor="), in: []string{"x"}, out: []string{"y"},
			argOf: []int{0}, nArgs: 1, resultOf: []int{0}},
		{name: "no input declared", sig: sig("Tensor", "x:Tensor"), out: []string{"y"}, wantErr: "declares no input: a TorchScript model.pt carries no reliable", unsupport: true},
		{name: "no output declared", sig: sig("Tensor", "x:Tensor"), in: []string{"x"}, wantErr: "declares no output", unsupport: true},
		{name: "name neither argument nor indexed", sig: sig("Tensor", "x:Tensor"), in: []string{"input"}, out: []string{"y"},
			wantErr: `input "input" is neither an argument of forward(x: Tensor) nor named <name>__<index>`},
		{name: "index past the arguments", sig: sig("Tensor", "x:Tensor"), in: []string{"INPUT__1"}, out: []string{"y"},
			wantErr: `input "INPUT__1" names argument 1 but forward(x: Tensor) takes 1`},
		{name: "argument left unbound", sig: sig("Tensor", "x:Tensor", "y:Tensor"), in: []string{"x"}, out: []string{"z"},
			wantErr: `argument "y" (position 1) is bound by no input`},
		{name: "two inputs bind one argument", sig: sig("Tensor", "x:Tensor", "y:Tensor"), in: []string{"IN__0", "OTHER__0"}, out: []string{"z"},
			wantErr: `inputs "IN__0" and "OTHER__0" both bind argument 0`},
		{name: "non-tensor argument", sig: sig("Tensor", "x:List[Tensor]"), in: []string{"x"}, out: []string{"y"},
			wantErr: "of type List[Tensor]; only Tensor arguments", unsupport: true},
		{name: "more outputs than results", sig: sig("Tensor", "x:Tensor"), in: []string{"x"}, out: []string{"a", "b"},
			wantErr: `output "b" is result 1 but forward() returns Tensor (1 tensor(s))`},
		{name: "dict result", sig: sig("Dict[str, Tensor]", "x:Tensor"), in: []string{"x"}, out: []string{"a"},
			wantErr: "forward() returns Dict[str, Tensor]; it must return", unsupport: true},
		{name: "tuple with a non-tensor", sig: sig("Tuple[Tensor, int]", "x:Tensor"), in: []string{"x"}, out: []string{"a"},
			wantErr: "a tuple must hold only tensors", unsupport: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := bind(tt.sig, ios(tt.in...), ios(tt.out...))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if got := errors.Is(err, backend.ErrUnsupported); got != tt.unsupport {
					t.Errorf("errors.Is(err, ErrUnsupported) = %v, want %v", got, tt.unsupport)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(b.argOf, tt.argOf) || b.nArgs != tt.nArgs || !slices.Equal(b.resultOf, tt.resultOf) {
				t.Errorf("bind = %+v, want argOf %v nArgs %d resultOf %v", b, tt.argOf, tt.nArgs, tt.resultOf)
			}
		})
	}
}

func TestIntraOpThreads(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		params    map[string]string
		instances int
		want      int
		wantErr   bool
	}{
		{"parameter wins", Options{IntraOpThreads: 3, AutoThreads: true}, map[string]string{ParamIntraOpThreads: "5"}, 2, 5, false},
		{"option", Options{IntraOpThreads: 3}, nil, 2, 3, false},
		{"shared among instances", Options{AutoThreads: true}, nil, 4, 4, false},
		{"at least one", Options{AutoThreads: true}, nil, 64, 1, false},
		{"libtorch default", Options{}, nil, 2, 0, false},
		{"bad parameter", Options{}, map[string]string{ParamIntraOpThreads: "many"}, 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.intraOpThreads(tt.params, tt.instances, 16)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("intraOpThreads = %d, %v; want %d (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
