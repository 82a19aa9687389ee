package pytorch

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/workers/backend"
)

// binding ties a config's inputs and outputs to forward()'s arguments and
// results, by the rules of Triton's pytorch backend: inputs are named
// either as forward()'s arguments or <name>__<index> (INPUT__0); outputs
// <name>__<index> (OUTPUT__0) pick a result by index, other names take the
// results in the config's order.
type binding struct {
	// argOf is, per declared input, its position in forward()'s arguments;
	// nArgs is how many arguments each call passes (a prefix: forward() is
	// called positionally).
	argOf []int
	nArgs int
	// resultOf is, per declared output, its index among the results.
	resultOf []int
}

var indexed = regexp.MustCompile(`^.+__([0-9]+)$`)

// indexOf is the <index> of a <name>__<index> name, or -1.
func indexOf(name string) int {
	m := indexed.FindStringSubmatch(name)
	if m == nil {
		return -1
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return -1
	}
	return n
}

// errNoIO explains why a TorchScript model needs its IO declared.
const errNoIO = "a TorchScript model.pt carries no reliable input and output names, datatypes or shapes, " +
	"so config.pbtxt must declare every input and output (as Triton's pytorch backend requires)"

// bind checks the declared IO against forward()'s signature.
func bind(sig signature, inputs, outputs []backend.IO) (binding, error) {
	if err := checkDeclaredAny(inputs, outputs); err != nil {
		return binding{}, err
	}
	argNames := make([]string, len(sig.Args))
	for i, a := range sig.Args {
		argNames[i] = a.Name
	}
	b := binding{argOf: make([]int, len(inputs)), resultOf: make([]int, len(outputs))}
	byName := true
	for _, in := range inputs {
		byName = byName && slices.Contains(argNames, in.Name)
	}
	bound := make(map[int]string, len(inputs))
	for i, in := range inputs {
		pos := slices.Index(argNames, in.Name)
		if !byName {
			pos = indexOf(in.Name)
			if pos < 0 {
				return binding{}, fmt.Errorf("input %q is neither an argument of forward%s nor named <name>__<index> (INPUT__0): "+
					"Triton's pytorch backend binds inputs by one of the two", in.Name, sig.describeArgs())
			}
			if pos >= len(sig.Args) {
				return binding{}, fmt.Errorf("input %q names argument %d but forward%s takes %d", in.Name, pos, sig.describeArgs(), len(sig.Args))
			}
		}
		if other, dup := bound[pos]; dup {
			return binding{}, fmt.Errorf("inputs %q and %q both bind argument %d of forward%s", other, in.Name, pos, sig.describeArgs())
		}
		bound[pos] = in.Name
		if t := sig.Args[pos].Type; t != "Tensor" {
			return binding{}, fmt.Errorf("%w: input %q binds forward()'s argument %q of type %s; only Tensor arguments are supported",
				backend.ErrUnsupported, in.Name, sig.Args[pos].Name, t)
		}
		b.argOf[i] = pos
		b.nArgs = max(b.nArgs, pos+1)
	}
	for pos, a := range sig.Args {
		if _, ok := bound[pos]; ok {
			continue
		}
		if pos < b.nArgs || !a.Default {
			return binding{}, fmt.Errorf("forward%s: argument %q (position %d) is bound by no input of the config", sig.describeArgs(), a.Name, pos)
		}
	}

	results, err := resultCount(sig.Returns)
	if err != nil {
		return binding{}, err
	}
	byIndex := true
	for _, out := range outputs {
		byIndex = byIndex && indexOf(out.Name) >= 0
	}
	for i, out := range outputs {
		idx := i
		if byIndex {
			idx = indexOf(out.Name)
		}
		if results >= 0 && idx >= results {
			return binding{}, fmt.Errorf("output %q is result %d but forward() returns %s (%d tensor(s))", out.Name, idx, sig.Returns, results)
		}
		b.resultOf[i] = idx
	}
	return b, nil
}

// checkDeclaredAny refuses a config that declares no input or no output.
func checkDeclaredAny(inputs, outputs []backend.IO) error {
	kind := ""
	switch {
	case len(inputs) == 0:
		kind = "input"
	case len(outputs) == 0:
		kind = "output"
	default:
		return nil
	}
	return fmt.Errorf("%w: config.pbtxt declares no %s: %s", backend.ErrUnsupported, kind, errNoIO)
}

// resultCount is how many tensors a return type holds, -1 for a list
// (known only when it runs).
func resultCount(returns string) (int, error) {
	switch {
	case returns == "Tensor":
		return 1, nil
	case returns == "List[Tensor]":
		return -1, nil
	case strings.HasPrefix(returns, "Tuple[") && strings.HasSuffix(returns, "]"):
		elems := splitTop(returns[len("Tuple[") : len(returns)-1])
		for _, e := range elems {
			if e != "Tensor" {
				return 0, fmt.Errorf("%w: forward() returns %s; a tuple must hold only tensors", backend.ErrUnsupported, returns)
			}
		}
		return len(elems), nil
	}
	return 0, fmt.Errorf("%w: forward() returns %s; it must return a Tensor, a tuple of tensors or a List[Tensor]", backend.ErrUnsupported, returns)
}

// splitTop splits a type list at the commas outside brackets.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

func (s signature) describeArgs() string {
	parts := make([]string, len(s.Args))
	for i, a := range s.Args {
		parts[i] = a.Name + ": " + a.Type
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
