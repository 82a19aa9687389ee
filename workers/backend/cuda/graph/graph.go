// Package graph reads an ONNX model into the cuda backend's intermediate
// representation: a topologically ordered list of nodes over named values,
// with the model's initializers held as host tensors. It checks the
// operator set at load, folds constants and BatchNormalization, and infers
// the type and shape of every value for a given batch size.
package graph

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrUnsupported is wrapped when a model uses an operator, attribute or
// type the cuda backend does not run.
var ErrUnsupported = errors.New("unsupported by the cuda backend")

// ErrInvalid is wrapped when a model file is malformed.
var ErrInvalid = errors.New("invalid ONNX model")

// Graph is one model's computation.
type Graph struct {
	// Inputs and Outputs are the graph's IO, in the model's order.
	Inputs  []IO
	Outputs []IO
	// Nodes are in an order where every value is produced before its use.
	Nodes []*Node
	// Consts holds every constant value by name: initializers, Constant
	// nodes and folded values.
	Consts map[string]*Tensor
	// Opset is the version of the default ("ai.onnx") operator set.
	Opset int64
}

// IO is a graph input or output as the model declares it. Shape holds -1
// for a dimension the model leaves free (symbolic or unknown).
type IO struct {
	Name  string
	DType DType
	Shape []int64
}

// Node is one operator application.
type Node struct {
	Name string
	Op   string
	// Inputs may hold "" for an optional input left out.
	Inputs  []string
	Outputs []string
	Attrs   map[string]Attr
}

// AttrKind tells which field of an Attr is set.
type AttrKind int

// Attribute kinds, as AttributeProto numbers them.
const (
	AttrFloat   AttrKind = 1
	AttrInt     AttrKind = 2
	AttrString  AttrKind = 3
	AttrTensor  AttrKind = 4
	AttrFloats  AttrKind = 6
	AttrInts    AttrKind = 7
	AttrStrings AttrKind = 8
)

// Attr is a node attribute.
type Attr struct {
	Kind   AttrKind
	F      float32
	I      int64
	S      string
	T      *Tensor
	Floats []float32
	Ints   []int64
}

func (n *Node) String() string {
	if n.Name != "" {
		return fmt.Sprintf("%s node %q", n.Op, n.Name)
	}
	return fmt.Sprintf("%s node (output %q)", n.Op, n.Outputs[0])
}

// Int returns an int attribute, or def when absent.
func (n *Node) Int(name string, def int64) int64 {
	if a, ok := n.Attrs[name]; ok && a.Kind == AttrInt {
		return a.I
	}
	return def
}

// Float returns a float attribute, or def when absent.
func (n *Node) Float(name string, def float32) float32 {
	if a, ok := n.Attrs[name]; ok && a.Kind == AttrFloat {
		return a.F
	}
	return def
}

// String returns a string attribute, or def when absent.
func (n *Node) Str(name, def string) string {
	if a, ok := n.Attrs[name]; ok && a.Kind == AttrString {
		return a.S
	}
	return def
}

// Ints returns an ints attribute, or nil when absent.
func (n *Node) Ints(name string) ([]int64, bool) {
	a, ok := n.Attrs[name]
	if !ok || a.Kind != AttrInts {
		return nil, false
	}
	return a.Ints, true
}

// Input returns input i, or "" when the node has no such input.
func (n *Node) Input(i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}

// Consumers maps each value name to the nodes reading it, in node order.
func (g *Graph) Consumers() map[string][]*Node {
	m := make(map[string][]*Node)
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in != "" && !slices.Contains(m[in], n) {
				m[in] = append(m[in], n)
			}
		}
	}
	return m
}

// IsOutput reports whether name is a graph output.
func (g *Graph) IsOutput(name string) bool {
	for _, o := range g.Outputs {
		if o.Name == name {
			return true
		}
	}
	return false
}

// Validate checks the graph's structure: every value defined once, before
// its use, and every operator in the supported set. Unsupported operators
// are all named in one error.
func (g *Graph) Validate() error {
	defined := make(map[string]bool, len(g.Consts)+len(g.Inputs))
	for name := range g.Consts {
		defined[name] = true
	}
	for _, in := range g.Inputs {
		if defined[in.Name] {
			return fmt.Errorf("%w: input %q is also an initializer", ErrInvalid, in.Name)
		}
		defined[in.Name] = true
	}
	unsupported := map[string][]string{}
	for _, n := range g.Nodes {
		if _, ok := ops[n.Op]; !ok {
			unsupported[n.Op] = append(unsupported[n.Op], n.Name)
		}
		for _, in := range n.Inputs {
			if in != "" && !defined[in] {
				return fmt.Errorf("%w: %s reads %q before anything defines it", ErrInvalid, n, in)
			}
		}
		for _, out := range n.Outputs {
			if out == "" {
				continue
			}
			if defined[out] {
				return fmt.Errorf("%w: value %q is defined twice (again by %s)", ErrInvalid, out, n)
			}
			defined[out] = true
		}
	}
	if len(unsupported) > 0 {
		var parts []string
		for _, op := range slices.Sorted(mapKeys(unsupported)) {
			names := unsupported[op]
			parts = append(parts, fmt.Sprintf("%s (%d node%s, e.g. %q)", op, len(names), plural(len(names)), names[0]))
		}
		return fmt.Errorf("%w: the model uses operators outside the cuda backend's set: %s",
			ErrUnsupported, strings.Join(parts, ", "))
	}
	for _, out := range g.Outputs {
		if !defined[out.Name] {
			return fmt.Errorf("%w: output %q is never computed", ErrInvalid, out.Name)
		}
	}
	return nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// SupportedOps lists the operators the cuda backend runs, sorted.
func SupportedOps() []string {
	return slices.Sorted(mapKeys(ops))
}
