package repository

import (
	"errors"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

// seqModelIO is simple_string_dyna_sequence's IO: INPUT, the controls END,
// READY, CORRID and the state INPUT_STATE/OUTPUT_STATE.
var (
	seqInputs = []backend.IO{
		{Name: "INPUT", DataType: tensor.Int32, Shape: []int64{-1, 1}},
		{Name: "INPUT_STATE", DataType: tensor.Int32, Shape: []int64{-1, 1}},
		{Name: "END", DataType: tensor.Int32, Shape: []int64{-1, 1}},
		{Name: "READY", DataType: tensor.Int32, Shape: []int64{-1, 1}},
		{Name: "CORRID", DataType: tensor.Bytes, Shape: []int64{-1, 1}},
	}
	seqOutputs = []backend.IO{
		{Name: "OUTPUT", DataType: tensor.Int32, Shape: []int64{-1, 1}},
		{Name: "OUTPUT_STATE", DataType: tensor.Int32, Shape: []int64{-1, 1}},
	}
)

const seqConfig = `
max_batch_size: 8
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  oldest { max_candidate_sequences: 8 }
  control_input [
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } ] }
  ]
  state [ {
    input_name: "INPUT_STATE" output_name: "OUTPUT_STATE" data_type: TYPE_INT32 dims: [ 1 ]
    initial_state { name: "zero" data_type: TYPE_INT32 dims: [ 1 ] zero_data: true }
  } ]
}
`

// TestSequenceConfig: controls and states are model IO that config.input
// and config.output do not list; auto-completion leaves them out and
// Validate checks them against the model.
func TestSequenceConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(seqConfig))
	if err != nil {
		t.Fatal(err)
	}
	if err := Normalize(cfg, "m"); err != nil {
		t.Fatal(err)
	}
	AutoComplete(cfg, seqInputs, seqOutputs)
	if len(cfg.Input) != 1 || len(cfg.Output) != 1 {
		t.Fatalf("auto-completion added controls or states: inputs %v outputs %v", cfg.Input, cfg.Output)
	}
	if err := Validate(cfg, seqInputs, seqOutputs); err != nil {
		t.Fatal(err)
	}
	// A config that lists no IO gets only the data IO.
	bare, _ := ParseConfig([]byte(seqConfig[strings.Index(seqConfig, "sequence_batching"):]))
	bare.MaxBatchSize = 8
	if err := Normalize(bare, "m"); err != nil {
		t.Fatal(err)
	}
	AutoComplete(bare, seqInputs, seqOutputs)
	if len(bare.Input) != 1 || bare.Input[0].Name != "INPUT" || len(bare.Output) != 1 || bare.Output[0].Name != "OUTPUT" {
		t.Fatalf("auto-completed inputs %v outputs %v", bare.Input, bare.Output)
	}
	if err := Validate(bare, seqInputs, seqOutputs); err != nil {
		t.Fatal(err)
	}
}

func TestSequenceConfigErrors(t *testing.T) {
	tests := []struct {
		name     string
		old, new string // replaced in seqConfig
		want     string
	}{
		{"iterative", "max_sequence_idle_microseconds: 5000000", "iterative_sequence: true", "iterative_sequence is not supported"},
		{"preserve ordering", "max_candidate_sequences: 8", "preserve_ordering: true", "oldest.preserve_ordering is not supported"},
		{"preferred too big", "max_candidate_sequences: 8", "preferred_batch_size: [ 9 ]", "oldest.preferred_batch_size 9 must be in 1..max_batch_size (8)"},
		{"negative candidates", "max_candidate_sequences: 8", "max_candidate_sequences: -1", "max_candidate_sequences -1 is negative"},
		{"slot utilization", "oldest { max_candidate_sequences: 8 }", "direct { minimum_slot_utilization: 2 }", "minimum_slot_utilization 2 must be in [0, 1]"},
		{"control in config input", `{ name: "END" control`, `{ name: "INPUT" control`, `control_input "INPUT" is also a config input`},
		{"two controls", `kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] }`, `kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] }, { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }`, `control_input "END" must have exactly one control, has 2`},
		{"kind twice", `kind: CONTROL_SEQUENCE_READY`, `kind: CONTROL_SEQUENCE_END`, "more than one control_input has kind CONTROL_SEQUENCE_END"},
		{"false_true of one value", `READY int32_false_true: [ 0, 1 ]`, `READY int32_false_true: [ 1 ]`, "needs exactly 2 values (false, true), has 1"},
		{"no false_true", `READY int32_false_true: [ 0, 1 ]`, `READY`, `control_input "READY" (CONTROL_SEQUENCE_READY) needs exactly one of int32_false_true`},
		{"two false_true lists", `READY int32_false_true: [ 0, 1 ]`, `READY int32_false_true: [ 0, 1 ] fp32_false_true: [ 0, 1 ]`, "needs exactly one of"},
		{"boolean with data_type", `READY int32_false_true: [ 0, 1 ]`, `READY int32_false_true: [ 0, 1 ] data_type: TYPE_INT32`, "takes its type from its *_false_true list"},
		{"CORRID type", `data_type: TYPE_STRING }`, `data_type: TYPE_FP32 }`, "CORRID data_type TYPE_FP32 is not one of"},
		{"CORRID false_true", `data_type: TYPE_STRING }`, `data_type: TYPE_UINT64 int32_false_true: [ 0, 1 ] }`, "a CORRID control takes data_type, not *_false_true"},
		{"state output in config", `output_name: "OUTPUT_STATE"`, `output_name: "OUTPUT"`, `state[0].output_name "OUTPUT" must be set and must not be a config output`},
		{"state input clashes", `input_name: "INPUT_STATE"`, `input_name: "READY"`, `state[0].input_name "READY" is also a control_input`},
		{"variable state without initial", `dims: [ 1 ]
    initial_state { name: "zero" data_type: TYPE_INT32 dims: [ 1 ] zero_data: true }`, `dims: [ -1 ]`, "state[0] has variable dims [-1]; give an initial_state with fixed dims"},
		{"initial type", `initial_state { name: "zero" data_type: TYPE_INT32`, `initial_state { name: "zero" data_type: TYPE_FP32`, "initial_state data_type TYPE_FP32 differs from the state's TYPE_INT32"},
		{"initial data file path", `zero_data: true`, `data_file: "../x"`, `data_file "../x" must be a file name in the model's initial_state folder`},
		{"initial without data", `zero_data: true`, `zero_data: false`, "zero_data is false and no data_file is given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(seqConfig, tt.old) {
				t.Fatalf("%q is not in the config", tt.old)
			}
			cfg, err := ParseConfig([]byte(strings.Replace(seqConfig, tt.old, tt.new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			err = Normalize(cfg, "m")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "sequence_batching") {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestSequenceIOErrors: controls and states must match the model's IO.
func TestSequenceIOErrors(t *testing.T) {
	with := func(ios []backend.IO, name string, io backend.IO, drop bool) []backend.IO {
		var out []backend.IO
		for _, x := range ios {
			if x.Name == name {
				if drop {
					continue
				}
				x = io
			}
			out = append(out, x)
		}
		return out
	}
	tests := []struct {
		name    string
		in, out []backend.IO
		want    string
	}{
		{"control missing", with(seqInputs, "READY", backend.IO{}, true), seqOutputs, `control_input "READY" is not an input of the model`},
		{"control type", with(seqInputs, "READY", backend.IO{Name: "READY", DataType: tensor.FP32, Shape: []int64{-1, 1}}, false), seqOutputs,
			`control input "READY" has data_type TYPE_INT32, the model says TYPE_FP32`},
		{"control shape", with(seqInputs, "CORRID", backend.IO{Name: "CORRID", DataType: tensor.Bytes, Shape: []int64{-1, 2}}, false), seqOutputs,
			`control input "CORRID" has dims [1], the model's shape is [2]`},
		{"state input missing", with(seqInputs, "INPUT_STATE", backend.IO{}, true), seqOutputs, `state input_name "INPUT_STATE" is not an input of the model`},
		{"state output missing", seqInputs, with(seqOutputs, "OUTPUT_STATE", backend.IO{}, true), `state output_name "OUTPUT_STATE" is not an output of the model`},
		{"state output type", seqInputs, with(seqOutputs, "OUTPUT_STATE", backend.IO{Name: "OUTPUT_STATE", DataType: tensor.Int64, Shape: []int64{-1, 1}}, false),
			`state output "OUTPUT_STATE" has data_type TYPE_INT32, the model says TYPE_INT64`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(seqConfig))
			if err != nil {
				t.Fatal(err)
			}
			if err := Normalize(cfg, "m"); err != nil {
				t.Fatal(err)
			}
			AutoComplete(cfg, tt.in, tt.out)
			if err := Validate(cfg, tt.in, tt.out); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// FuzzSequenceConfig: any sequence_batching text either fails with
// ErrInvalidConfig or normalizes, completes and validates without panic.
func FuzzSequenceConfig(f *testing.F) {
	f.Add([]byte(seqConfig))
	f.Add([]byte(`max_batch_size: 0 sequence_batching { direct { max_queue_delay_microseconds: 5 minimum_slot_utilization: 0.5 } control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] } ] }`))
	f.Add([]byte(`sequence_batching { state [ { input_name: "A" output_name: "B" data_type: TYPE_STRING dims: [ -1 ] initial_state { data_type: TYPE_STRING dims: [ 2 ] data_file: "x" } } ] }`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		if err := Normalize(cfg, cfg.Name); err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		AutoComplete(cfg, seqInputs, seqOutputs)
		if err := Validate(cfg, seqInputs, seqOutputs); err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
		}
	})
}
