// Package ensemble runs Triton's ensemble models (platform "ensemble"): a
// DAG of steps, each an inference request to another model, wired by the
// ensemble_scheduling input_map and output_map. Tensors pass between steps
// in memory; each step goes through the step model's own scheduler (via
// the worker's infer.Service), so steps batch with the model's other
// traffic. New checks the DAG when the ensemble loads; Runner executes it.
package ensemble

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/tensor"
)

// Latest is a step's model_version meaning the model's highest serving
// version (Triton's -1).
const Latest = -1

// Lookup returns the configuration of a step's model at a version (Latest
// for the highest serving one), or an error saying why it cannot serve.
type Lookup func(model string, version int64) (*pb.ModelConfig, error)

// Plan is an ensemble's checked DAG. It is immutable and shared by the
// runners of the ensemble's versions.
type Plan struct {
	name    string
	batched bool
	// inputs are the ensemble's inputs; outputs its outputs as declared.
	inputs  map[string]bool
	outputs []string
	steps   []step
	// producer is the step that produces each step-made tensor.
	producer map[string]int
}

type step struct {
	index   int
	model   string
	version int64
	// inputs map step model input -> ensemble tensor; outputs step model
	// output -> ensemble tensor. Both sorted by the model's name.
	inputs  []mapping
	outputs []mapping
	// deps are the steps whose outputs this step reads; consumers the
	// steps that read this step's outputs. Each distinct and sorted.
	deps      []int
	consumers []int
}

type mapping struct{ model, tensor string }

func (s *step) String() string { return fmt.Sprintf("step %d ('%s')", s.index, s.model) }

// Models lists the distinct step models of an ensemble config in step
// order, with the version each step asks for (Latest or a number).
func Models(cfg *pb.ModelConfig) []StepModel {
	var out []StepModel
	for _, s := range cfg.GetEnsembleScheduling().GetStep() {
		m := StepModel{Name: s.ModelName, Version: s.ModelVersion}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// StepModel is a model a step runs and the version it asks for.
type StepModel struct {
	Name    string
	Version int64
}

// invalid makes an error about the ensemble's configuration.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", repository.ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// New checks an ensemble's config (already normalized by the repository
// package) against its step models and returns its plan. Errors name the
// step (index and model) and the tensor that is wrong: tensors no step
// produces, tensors produced twice, cycles, unknown step models or step
// model IO, and data type or shape mismatches between a tensor's producer
// and its consumers.
func New(cfg *pb.ModelConfig, lookup Lookup) (*Plan, error) {
	p := &Plan{
		name:     cfg.Name,
		batched:  cfg.MaxBatchSize > 0,
		inputs:   make(map[string]bool, len(cfg.Input)),
		producer: make(map[string]int),
	}
	for _, in := range cfg.Input {
		p.inputs[in.Name] = true
	}
	for _, out := range cfg.Output {
		p.outputs = append(p.outputs, out.Name)
	}
	if err := p.buildGraph(cfg.GetEnsembleScheduling().GetStep()); err != nil {
		return nil, err
	}
	if err := p.checkTypes(cfg, lookup); err != nil {
		return nil, err
	}
	return p, nil
}

// buildGraph wires the steps by tensor name and checks the graph alone.
func (p *Plan) buildGraph(steps []*pb.ModelEnsembling_Step) error {
	for i, s := range steps {
		st := step{index: i, model: s.ModelName, version: s.ModelVersion}
		for _, k := range slices.Sorted(maps.Keys(s.InputMap)) {
			st.inputs = append(st.inputs, mapping{k, s.InputMap[k]})
		}
		for _, k := range slices.Sorted(maps.Keys(s.OutputMap)) {
			st.outputs = append(st.outputs, mapping{k, s.OutputMap[k]})
		}
		p.steps = append(p.steps, st)
	}
	for i := range p.steps {
		s := &p.steps[i]
		for _, o := range s.outputs {
			if p.inputs[o.tensor] {
				return invalid("ensemble '%s' %s: output '%s' is mapped to '%s', which is an input of the ensemble; a tensor is produced once",
					p.name, s, o.model, o.tensor)
			}
			if j, ok := p.producer[o.tensor]; ok {
				if j == i {
					return invalid("ensemble '%s' %s: two outputs are mapped to tensor '%s'", p.name, s, o.tensor)
				}
				return invalid("ensemble '%s' %s: output '%s' is mapped to tensor '%s', which %s already produces; a tensor is produced once",
					p.name, s, o.model, o.tensor, &p.steps[j])
			}
			p.producer[o.tensor] = i
		}
	}
	used := make(map[string]bool)
	for i := range p.steps {
		s := &p.steps[i]
		for _, in := range s.inputs {
			used[in.tensor] = true
			if p.inputs[in.tensor] {
				continue
			}
			j, ok := p.producer[in.tensor]
			if !ok {
				return invalid("ensemble '%s' %s: input '%s' reads tensor '%s', which is neither an ensemble input nor any step's output",
					p.name, s, in.model, in.tensor)
			}
			if j == i {
				return invalid("ensemble '%s' %s: input '%s' reads tensor '%s', which the step itself produces (a cycle)",
					p.name, s, in.model, in.tensor)
			}
			if !slices.Contains(s.deps, j) {
				s.deps = append(s.deps, j)
				p.steps[j].consumers = append(p.steps[j].consumers, i)
			}
		}
		slices.Sort(s.deps)
	}
	for i := range p.steps {
		slices.Sort(p.steps[i].consumers)
	}
	if cycle := p.findCycle(); cycle != nil {
		names := make([]string, len(cycle))
		for k, i := range cycle {
			names[k] = p.steps[i].String()
		}
		return invalid("ensemble '%s': steps form a cycle: %s", p.name, strings.Join(names, " -> "))
	}
	for _, out := range p.outputs {
		if _, ok := p.producer[out]; !ok {
			return invalid("ensemble '%s': output '%s' is not produced by any step (no output_map maps to it)", p.name, out)
		}
	}
	for _, in := range slices.Sorted(maps.Keys(p.inputs)) {
		if !used[in] {
			return invalid("ensemble '%s': input '%s' is not read by any step (no input_map maps from it)", p.name, in)
		}
	}
	for i := range p.steps {
		s := &p.steps[i]
		for _, o := range s.outputs {
			if !used[o.tensor] && !slices.Contains(p.outputs, o.tensor) {
				return invalid("ensemble '%s' %s: output '%s' is mapped to tensor '%s', which no step reads and is not an output of the ensemble",
					p.name, s, o.model, o.tensor)
			}
		}
	}
	return nil
}

// findCycle returns the steps of a cycle (first repeated at the end), or
// nil when the steps form a DAG.
func (p *Plan) findCycle() []int {
	const (
		unseen = iota
		open
		done
	)
	state := make([]int, len(p.steps))
	var path []int
	var visit func(i int) []int
	visit = func(i int) []int {
		state[i] = open
		path = append(path, i)
		for _, c := range p.steps[i].consumers {
			switch state[c] {
			case open:
				start := slices.Index(path, c)
				return append(slices.Clone(path[start:]), c)
			case unseen:
				if cyc := visit(c); cyc != nil {
					return cyc
				}
			}
		}
		path = path[:len(path)-1]
		state[i] = done
		return nil
	}
	for i := range p.steps {
		if state[i] == unseen {
			if cyc := visit(i); cyc != nil {
				return cyc
			}
		}
	}
	return nil
}

// end is one side of an ensemble tensor: its producer or a consumer.
type end struct {
	what     string // e.g. "input 'x' of step 1 ('mlp')"
	dataType pb.DataType
	dims     []int64 // without the batch dimension
	shape    []int64 // full shape, batch dimension (-1) first where batched
}

func newEnd(what string, dt pb.DataType, dims []int64, batched bool) end {
	e := end{what: what, dataType: dt, dims: dims, shape: slices.Clone(dims)}
	if batched {
		e.shape = append([]int64{-1}, dims...)
	}
	return e
}

func (e end) String() string {
	return fmt.Sprintf("%s (%s %v)", e.what, strings.TrimPrefix(e.dataType.String(), "TYPE_"), e.shape)
}

// agrees: the same data type, and the same dims or the same full shape (a
// batching model's [4] is a non-batching model's [-1, 4]; Triton accepts
// either), -1 matching any size.
func (e end) agrees(o end) bool {
	return e.dataType == o.dataType && (shapesAgree(e.dims, o.dims) || shapesAgree(e.shape, o.shape))
}

// ensembleDims are an ensemble input's or output's dims as its steps see
// them: the reshape where one is set (the worker reshapes requests before
// the steps and outputs after them).
func ensembleDims(dims []int64, reshape *pb.ModelTensorReshape) []int64 {
	if reshape != nil {
		return reshape.Shape
	}
	return dims
}

// checkTypes checks each step against its model's config and each tensor's
// producer against its consumers.
func (p *Plan) checkTypes(cfg *pb.ModelConfig, lookup Lookup) error {
	producers := make(map[string]end)
	consumers := make(map[string][]end)
	for _, in := range cfg.Input {
		producers[in.Name] = newEnd(fmt.Sprintf("ensemble input '%s'", in.Name), in.DataType, ensembleDims(in.Dims, in.Reshape), p.batched)
	}
	for _, out := range cfg.Output {
		consumers[out.Name] = append(consumers[out.Name], newEnd(fmt.Sprintf("ensemble output '%s'", out.Name), out.DataType, ensembleDims(out.Dims, out.Reshape), p.batched))
	}
	for i := range p.steps {
		s := &p.steps[i]
		mc, err := lookup(s.model, s.version)
		if err != nil {
			return fmt.Errorf("ensemble '%s' %s: %w", p.name, s, err)
		}
		if p.batched && mc.MaxBatchSize > 0 && mc.MaxBatchSize < cfg.MaxBatchSize {
			return invalid("ensemble '%s' %s: the ensemble's max_batch_size is %d but model '%s' allows at most %d",
				p.name, s, cfg.MaxBatchSize, s.model, mc.MaxBatchSize)
		}
		if mc.GetModelTransactionPolicy().GetDecoupled() {
			return invalid("ensemble '%s' %s: model '%s' is decoupled; ensemble steps must answer each request once",
				p.name, s, s.model)
		}
		stepBatched := mc.MaxBatchSize > 0
		mapped := make(map[string]bool, len(s.inputs))
		for _, in := range s.inputs {
			mi := repository.FindInput(mc, in.model)
			if mi == nil {
				return invalid("ensemble '%s' %s: input_map names '%s', which is not an input of model '%s' (its inputs: %v)",
					p.name, s, in.model, s.model, inputNames(mc))
			}
			mapped[in.model] = true
			consumers[in.tensor] = append(consumers[in.tensor], newEnd(fmt.Sprintf("input '%s' of %s", in.model, s), mi.DataType, mi.Dims, stepBatched))
		}
		for _, mi := range mc.Input {
			if !mapped[mi.Name] && !mi.Optional {
				return invalid("ensemble '%s' %s: input '%s' of model '%s' is not in input_map", p.name, s, mi.Name, s.model)
			}
		}
		for _, out := range s.outputs {
			mo := repository.FindOutput(mc, out.model)
			if mo == nil {
				return invalid("ensemble '%s' %s: output_map names '%s', which is not an output of model '%s' (its outputs: %v)",
					p.name, s, out.model, s.model, outputNames(mc))
			}
			producers[out.tensor] = newEnd(fmt.Sprintf("output '%s' of %s", out.model, s), mo.DataType, mo.Dims, stepBatched)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(consumers)) {
		prod := producers[name]
		for _, c := range consumers[name] {
			if !c.agrees(prod) {
				return invalid("ensemble '%s': tensor '%s' does not match: %s is produced by %s", p.name, name, c, prod)
			}
		}
	}
	return nil
}

// shapesAgree: same rank, and each dimension equal or -1 on either side.
func shapesAgree(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != -1 && b[i] != -1 && a[i] != b[i] {
			return false
		}
	}
	return true
}

func inputNames(cfg *pb.ModelConfig) []string {
	var out []string
	for _, in := range cfg.Input {
		out = append(out, in.Name)
	}
	return out
}

func outputNames(cfg *pb.ModelConfig) []string {
	var out []string
	for _, o := range cfg.Output {
		out = append(out, o.Name)
	}
	return out
}

// needed marks the steps that the outputs named depend on.
func (p *Plan) needed(outputs []string) []bool {
	need := make([]bool, len(p.steps))
	var mark func(i int)
	mark = func(i int) {
		if need[i] {
			return
		}
		need[i] = true
		for _, d := range p.steps[i].deps {
			mark(d)
		}
	}
	for _, o := range outputs {
		if i, ok := p.producer[o]; ok {
			mark(i)
		}
	}
	return need
}

// batchSize is a request's batch size as statistics count it.
func (p *Plan) batchSize(inputs []tensor.Tensor) int {
	if !p.batched {
		return 1
	}
	for _, t := range inputs {
		if len(t.Shape) > 0 {
			return int(t.Shape[0])
		}
	}
	return 1
}
