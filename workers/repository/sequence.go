package repository

import (
	"fmt"
	"slices"
	"strings"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
)

// InitialStateDir is the folder of a model (beside config.pbtxt) that holds
// the data_file of a state's initial_state, as in Triton.
const InitialStateDir = "initial_state"

// corridTypes are the data types a CORRID control may have.
var corridTypes = []pb.DataType{pb.DataType_TYPE_UINT64, pb.DataType_TYPE_INT64, pb.DataType_TYPE_UINT32, pb.DataType_TYPE_INT32, pb.DataType_TYPE_STRING}

// checkSequenceBatching checks a model's sequence_batching on its own:
// the strategy, the control inputs and the implicit states. Fields the
// sequence batcher does not implement are refused by name.
func checkSequenceBatching(cfg *pb.ModelConfig) error {
	sb := cfg.GetSequenceBatching()
	if sb == nil {
		return nil
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: sequence_batching: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if cfg.GetModelTransactionPolicy().GetDecoupled() {
		return fail("a decoupled model (model_transaction_policy.decoupled) cannot use the sequence batcher")
	}
	if sb.IterativeSequence {
		return fail("iterative_sequence is not supported")
	}
	switch st := sb.StrategyChoice.(type) {
	case *pb.ModelSequenceBatching_Direct:
		if u := st.Direct.GetMinimumSlotUtilization(); u < 0 || u > 1 {
			return fail("direct.minimum_slot_utilization %v must be in [0, 1]", u)
		}
	case *pb.ModelSequenceBatching_Oldest:
		o := st.Oldest
		if o.MaxCandidateSequences < 0 {
			return fail("oldest.max_candidate_sequences %d is negative", o.MaxCandidateSequences)
		}
		for _, p := range o.PreferredBatchSize {
			if p <= 0 || p > max(1, cfg.MaxBatchSize) {
				return fail("oldest.preferred_batch_size %d must be in 1..max_batch_size (%d)", p, cfg.MaxBatchSize)
			}
		}
		if o.PreserveOrdering {
			return fail("oldest.preserve_ordering is not supported (responses of one sequence always come in order)")
		}
	}
	names := map[string]string{} // model input name -> what uses it
	for _, in := range cfg.Input {
		names[in.Name] = "config input"
	}
	claim := func(name, what string) error {
		if name == "" {
			return fail("%s has no name", what)
		}
		if prev, ok := names[name]; ok {
			return fail("%s %q is also a %s; the sequence batcher fills it, so config.input must not list it", what, name, prev)
		}
		names[name] = what
		return nil
	}
	kinds := map[pb.ModelSequenceBatching_Control_Kind]bool{}
	for _, ci := range sb.ControlInput {
		if err := claim(ci.Name, "control_input"); err != nil {
			return err
		}
		if len(ci.Control) != 1 {
			return fail("control_input %q must have exactly one control, has %d", ci.Name, len(ci.Control))
		}
		c := ci.Control[0]
		if _, ok := pb.ModelSequenceBatching_Control_Kind_name[int32(c.Kind)]; !ok {
			return fail("control_input %q has an unknown kind %d", ci.Name, c.Kind)
		}
		if kinds[c.Kind] {
			return fail("more than one control_input has kind %s", c.Kind)
		}
		kinds[c.Kind] = true
		lists := 0
		for _, n := range []int{len(c.Int32FalseTrue), len(c.Fp32FalseTrue), len(c.BoolFalseTrue)} {
			if n > 0 {
				lists++
				if n != 2 {
					return fail("control_input %q: a *_false_true list needs exactly 2 values (false, true), has %d", ci.Name, n)
				}
			}
		}
		if c.Kind == pb.ModelSequenceBatching_Control_CONTROL_SEQUENCE_CORRID {
			if lists > 0 {
				return fail("control_input %q: a CORRID control takes data_type, not *_false_true", ci.Name)
			}
			if !slices.Contains(corridTypes, c.DataType) {
				return fail("control_input %q: CORRID data_type %s is not one of %v", ci.Name, c.DataType, corridTypes)
			}
			continue
		}
		if lists != 1 {
			return fail("control_input %q (%s) needs exactly one of int32_false_true, fp32_false_true and bool_false_true", ci.Name, c.Kind)
		}
		if c.DataType != pb.DataType_TYPE_INVALID {
			return fail("control_input %q (%s) takes its type from its *_false_true list, not data_type", ci.Name, c.Kind)
		}
	}
	outputs := map[string]bool{}
	for _, out := range cfg.Output {
		outputs[out.Name] = true
	}
	for i, st := range sb.State {
		what := fmt.Sprintf("state[%d]", i)
		if err := claim(st.InputName, what+".input_name"); err != nil {
			return err
		}
		if st.OutputName == "" || outputs[st.OutputName] {
			return fail("%s.output_name %q must be set and must not be a config output (state outputs are never returned to clients)", what, st.OutputName)
		}
		outputs[st.OutputName] = true
		if _, err := TensorType(st.DataType); err != nil {
			return fail("%s has data_type %s", what, st.DataType)
		}
		if err := checkDims(st.Dims); err != nil {
			return fail("%s.dims %v: %v", what, st.Dims, err)
		}
		// use_growable_memory and use_same_buffer_for_input_output are
		// Triton's GPU memory hints: states are host memory here, kept per
		// sequence, so they change nothing.
		switch len(st.InitialState) {
		case 0:
			if slices.Contains(st.Dims, -1) {
				return fail("%s has variable dims %v; give an initial_state with fixed dims", what, st.Dims)
			}
		case 1:
			is := st.InitialState[0]
			if is.DataType != st.DataType {
				return fail("%s.initial_state data_type %s differs from the state's %s", what, is.DataType, st.DataType)
			}
			if err := checkDims(is.Dims); err != nil || slices.Contains(is.Dims, -1) {
				return fail("%s.initial_state.dims %v must be positive", what, is.Dims)
			}
			switch d := is.StateData.(type) {
			case *pb.ModelSequenceBatching_InitialState_ZeroData:
				if !d.ZeroData {
					return fail("%s.initial_state: zero_data is false and no data_file is given", what)
				}
			case *pb.ModelSequenceBatching_InitialState_DataFile:
				if d.DataFile == "" || strings.ContainsAny(d.DataFile, `/\`) || d.DataFile == ".." || d.DataFile == "." {
					return fail("%s.initial_state.data_file %q must be a file name in the model's %s folder", what, d.DataFile, InitialStateDir)
				}
			default:
				return fail("%s.initial_state needs zero_data or data_file", what)
			}
		default:
			return fail("%s has %d initial_state entries; at most one is supported", what, len(st.InitialState))
		}
	}
	return nil
}

func checkDims(dims []int64) error {
	for _, d := range dims {
		if d < -1 || d == 0 {
			return fmt.Errorf("each dimension must be positive or -1")
		}
	}
	return nil
}

// sequenceIO names the model inputs and outputs the sequence batcher
// fills or takes (controls and states), which config.input and
// config.output do not list.
func sequenceIO(cfg *pb.ModelConfig) (inputs, outputs map[string]bool) {
	sb := cfg.GetSequenceBatching()
	if sb == nil {
		return nil, nil
	}
	inputs, outputs = map[string]bool{}, map[string]bool{}
	for _, ci := range sb.ControlInput {
		inputs[ci.Name] = true
	}
	for _, st := range sb.State {
		inputs[st.InputName] = true
		outputs[st.OutputName] = true
	}
	return inputs, outputs
}

// ControlDataType is the data type of a control input: that of its
// *_false_true list, or a CORRID's data_type.
func ControlDataType(c *pb.ModelSequenceBatching_Control) pb.DataType {
	switch {
	case len(c.Int32FalseTrue) > 0:
		return pb.DataType_TYPE_INT32
	case len(c.Fp32FalseTrue) > 0:
		return pb.DataType_TYPE_FP32
	case len(c.BoolFalseTrue) > 0:
		return pb.DataType_TYPE_BOOL
	}
	return c.DataType
}

// checkSequenceIO checks the controls and states against the model's IO:
// each must be a model input (state outputs a model output) of the type
// the config gives; controls have one element per row.
func checkSequenceIO(cfg *pb.ModelConfig, inputs, outputs []backend.IO) error {
	sb := cfg.GetSequenceBatching()
	if sb == nil {
		return nil
	}
	batched := cfg.MaxBatchSize > 0
	for _, ci := range sb.ControlInput {
		io, ok := findIO(inputs, ci.Name)
		if !ok {
			return fmt.Errorf("%w: sequence_batching control_input %q is not an input of the model (model inputs: %v)", ErrInvalidConfig, ci.Name, ioNames(inputs))
		}
		if err := matchIO("control input", ci.Name, ControlDataType(ci.Control[0]), []int64{1}, nil, io, batched); err != nil {
			return err
		}
	}
	for _, st := range sb.State {
		io, ok := findIO(inputs, st.InputName)
		if !ok {
			return fmt.Errorf("%w: sequence_batching state input_name %q is not an input of the model (model inputs: %v)", ErrInvalidConfig, st.InputName, ioNames(inputs))
		}
		if err := matchIO("state input", st.InputName, st.DataType, st.Dims, nil, io, batched); err != nil {
			return err
		}
		io, ok = findIO(outputs, st.OutputName)
		if !ok {
			return fmt.Errorf("%w: sequence_batching state output_name %q is not an output of the model (model outputs: %v)", ErrInvalidConfig, st.OutputName, ioNames(outputs))
		}
		if err := matchIO("state output", st.OutputName, st.DataType, st.Dims, nil, io, batched); err != nil {
			return err
		}
	}
	return nil
}
