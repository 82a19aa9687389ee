package sequence_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/onnxruntime"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/models"
	"github.com/helixflow/helixflow/workers/tensor"
)

// These tests run the sequence batcher behind a real models.Manager on
// ONNX Runtime, with the sample models' semantics (testdata/gen.py).

var ort struct {
	sync.Once
	b   *onnxruntime.Backend
	err error
}

func ortBackend(t *testing.T) *onnxruntime.Backend {
	t.Helper()
	ort.Do(func() {
		ort.b, ort.err = onnxruntime.New(onnxruntime.Options{IntraOpThreads: 1, InterOpThreads: 1})
	})
	if ort.err != nil {
		testdeps.Missing(t, "onnxruntime unavailable (make deps): %v", ort.err)
	}
	return ort.b
}

const io1 = `
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
`

func control(name, kind, spec string) string {
	return fmt.Sprintf(`{ name: "%s" control [ { kind: %s %s } ] }`, name, kind, spec)
}

var (
	start  = control("START", "CONTROL_SEQUENCE_START", "int32_false_true: [ 0, 1 ]")
	end    = control("END", "CONTROL_SEQUENCE_END", "int32_false_true: [ 0, 1 ]")
	ready  = control("READY", "CONTROL_SEQUENCE_READY", "int32_false_true: [ 0, 1 ]")
	corrid = func(dt string) string { return control("CORRID", "CONTROL_SEQUENCE_CORRID", "data_type: "+dt) }
)

// sampleModels are the repository's models: folder -> (onnx file, config).
var sampleModels = map[string][2]string{
	"simple_sequence": {"seq_direct.onnx", "max_batch_size: 8" + io1 + `
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  direct { }
  control_input [ ` + start + `, ` + ready + ` ]
}`},
	"simple_dyna_sequence": {"seq_dyna.onnx", "max_batch_size: 8" + io1 + `
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  oldest { max_candidate_sequences: 8 }
  control_input [ ` + start + `, ` + end + `, ` + ready + `, ` + corrid("TYPE_UINT64") + ` ]
}`},
	"simple_string_dyna_sequence": {"seq_state.onnx", "max_batch_size: 8" + io1 + `
instance_group [ { count: 2 kind: KIND_CPU } ]
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  oldest { max_candidate_sequences: 4 max_queue_delay_microseconds: 100 preferred_batch_size: [ 4 ] }
  control_input [ ` + end + `, ` + ready + `, ` + corrid("TYPE_STRING") + ` ]
  state [ { input_name: "INPUT_STATE" output_name: "OUTPUT_STATE" data_type: TYPE_INT32 dims: [ 1 ]
    initial_state { name: "zero" data_type: TYPE_INT32 dims: [ 1 ] zero_data: true } } ]
}`},
	"state_from_file": {"seq_state.onnx", "max_batch_size: 8" + io1 + `
sequence_batching {
  control_input [ ` + end + `, ` + ready + `, ` + corrid("TYPE_STRING") + ` ]
  state [ { input_name: "INPUT_STATE" output_name: "OUTPUT_STATE" data_type: TYPE_INT32 dims: [ 1 ]
    initial_state { name: "hundred" data_type: TYPE_INT32 dims: [ 1 ] data_file: "hundred.bin" } } ]
}`},
	"nobatch_sequence": {"seq_nobatch.onnx", "max_batch_size: 0" + io1 + `
sequence_batching {
  max_sequence_idle_microseconds: 200000
  control_input [ ` + start + `, ` + end + `, ` + ready + `, ` + corrid("TYPE_UINT64") + ` ]
}`},
}

func newManager(t *testing.T) *models.Manager {
	t.Helper()
	be := ortBackend(t)
	root := t.TempDir()
	for name, m := range sampleModels {
		data, err := os.ReadFile(filepath.Join("testdata", m[0]))
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, "1"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "1", "model.onnx"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.pbtxt"), []byte(m[1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "state_from_file", "initial_state"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "state_from_file", "initial_state", "hundred.bin"), int32Bytes(100), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := models.New(models.Config{Repository: root, ControlMode: models.ModeNone,
		Backends: map[string]backend.Backend{onnxruntime.Name: be}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for name := range sampleModels {
		if ok, _ := m.ModelReady(t.Context(), name, ""); !ok {
			idx, _ := m.RepositoryIndex(t.Context(), false)
			t.Fatalf("model %s is not ready: %+v", name, idx)
		}
	}
	return m
}

func int32Bytes(v ...int32) []byte {
	out := make([]byte, 0, 4*len(v))
	for _, x := range v {
		out = binary.LittleEndian.AppendUint32(out, uint32(x))
	}
	return out
}

// infer1 sends one request of a sequence, as tritonclient does, and
// returns OUTPUT.
func infer1(m *models.Manager, model string, id any, value int32, start, end, batched bool) (int32, error) {
	shape := []int64{1}
	if batched {
		shape = []int64{1, 1}
	}
	params := map[string]any{"sequence_start": start, "sequence_end": end}
	if id != nil {
		params["sequence_id"] = id
	}
	resp, err := m.Infer(context.Background(), &infer.Request{
		Model: model, Parameters: params,
		Inputs:  []tensor.Tensor{{Name: "INPUT", DataType: tensor.Int32, Shape: shape, Data: int32Bytes(value)}},
		Outputs: []infer.RequestedOutput{{Name: "OUTPUT"}},
	})
	if err != nil {
		return 0, err
	}
	if len(resp.Outputs) != 1 || resp.Outputs[0].Name != "OUTPUT" {
		return 0, fmt.Errorf("outputs %+v", resp.Outputs)
	}
	return int32(binary.LittleEndian.Uint32(resp.Outputs[0].Data)), nil
}

func sequence(t *testing.T, m *models.Manager, model string, id any, values []int32, batched bool) []int32 {
	t.Helper()
	var out []int32
	for i, v := range values {
		got, err := infer1(m, model, id, v, i == 0, i == len(values)-1, batched)
		if err != nil {
			t.Fatalf("%s sequence %v step %d: %v", model, id, i, err)
		}
		out = append(out, got)
	}
	return out
}

// TestTritonExampleSequences: what Triton's sequence example clients send
// and expect, with and without -d.
func TestTritonExampleSequences(t *testing.T) {
	m := newManager(t)
	values := []int32{11, 7, 5, 3, 2, 0, 1}
	neg := make([]int32, len(values))
	for i, v := range values {
		neg[i] = -v
	}
	tests := []struct {
		model  string
		id     any
		values []int32
		want   []int32
	}{
		{"simple_sequence", int64(1000), append([]int32{0}, values...), []int32{1, 11, 7, 5, 3, 2, 0, 1}},
		{"simple_sequence", int64(1001), append([]int32{100}, neg...), []int32{101, -11, -7, -5, -3, -2, 0, -1}},
		{"simple_sequence", "4b1f3c1e-0f57-4c4e-8a43-4f6c0d1e2a3b", append([]int32{20}, neg...), []int32{21, -11, -7, -5, -3, -2, 0, -1}},
		{"simple_dyna_sequence", int64(1000), append([]int32{0}, values...), []int32{1, 11, 7, 5, 3, 2, 0, 1 + 1000}},
		{"simple_dyna_sequence", int64(1001), append([]int32{100}, neg...), []int32{101, -11, -7, -5, -3, -2, 0, -1 + 1001}},
		{"simple_string_dyna_sequence", "1002", append([]int32{20}, neg...), []int32{20, 9, 2, -3, -6, -8, -8, -9 + 1002}},
		{"simple_string_dyna_sequence", int64(1003), append([]int32{20}, neg...), []int32{20, 9, 2, -3, -6, -8, -8, -9 + 1003}},
		{"state_from_file", "5", []int32{20, 1}, []int32{120, 121 + 5}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %v", tt.model, tt.id), func(t *testing.T) {
			if got := sequence(t, m, tt.model, tt.id, tt.values, true); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("outputs %v, want %v", got, tt.want)
			}
		})
	}
	// max_batch_size 0: no batch dimension, one request per execution.
	if got := sequence(t, m, "nobatch_sequence", int64(7), []int32{3, 4}, false); !reflect.DeepEqual(got, []int32{4, 4 + 7}) {
		t.Fatalf("nobatch_sequence: %v", got)
	}
	// Controls and states are not inputs or outputs clients see.
	md, err := m.ModelMetadata(t.Context(), "simple_string_dyna_sequence", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Inputs) != 1 || md.Inputs[0].Name != "INPUT" || len(md.Outputs) != 1 || md.Outputs[0].Name != "OUTPUT" {
		t.Fatalf("metadata inputs %+v outputs %+v", md.Inputs, md.Outputs)
	}
	st, err := m.ModelStatistics(t.Context(), "simple_dyna_sequence", "")
	if err != nil {
		t.Fatal(err)
	}
	if n := st[0].InferenceCount; n != 16 {
		t.Fatalf("simple_dyna_sequence inference count %d, want 16", n)
	}
}

func TestBadSequenceRequests(t *testing.T) {
	m := newManager(t)
	if _, err := infer1(m, "simple_dyna_sequence", int64(9), 1, true, true, true); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		model string
		id    any
		start bool
		end   bool
		want  string
	}{
		{"no sequence id", "simple_sequence", nil, false, false,
			"inference request to model 'simple_sequence' must specify a non-zero or non-empty correlation ID"},
		{"unknown id without START", "simple_dyna_sequence", int64(77), false, false,
			"inference request for sequence 77 to model 'simple_dyna_sequence' must specify the START flag on the first request of the sequence; sequence 77 is unknown to this worker"},
		{"END twice", "simple_dyna_sequence", int64(9), false, true,
			"sequence 9 already ended"},
		{"string id into a UINT64 CORRID", "simple_dyna_sequence", "abc", true, false,
			`the model's CORRID control is UINT64, so the sequence id must be an integer, not the string "abc"`},
		{"negative id", "simple_sequence", int64(-3), true, false, "sequence_id -3 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := infer1(m, tt.model, tt.id, 1, tt.start, tt.end, true)
			if infer.CodeOf(err) != infer.CodeInvalidArgument || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (%v), want INVALID_ARGUMENT containing %q", err, infer.CodeOf(err), tt.want)
			}
		})
	}
	// A sequence idle past max_sequence_idle_microseconds (200 ms here) is
	// released; its next request says so.
	if _, err := infer1(m, "nobatch_sequence", int64(5), 1, true, false, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := infer1(m, "nobatch_sequence", int64(5), 1, false, false, false); err == nil ||
		!strings.Contains(err.Error(), "sequence 5 was released after it was idle for more than 200ms") {
		t.Fatalf("after idle timeout: %v", err)
	}
}

// TestManySequencesOnONNXRuntime: concurrent sequences keep their state
// and order on real instances (two instances, four candidates each).
func TestManySequencesOnONNXRuntime(t *testing.T) {
	m := newManager(t)
	const sequences, steps = 24, 8
	var wg sync.WaitGroup
	for s := range sequences {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint(2000 + s)
			sum := int32(0)
			for i := range steps {
				last := i == steps-1
				got, err := infer1(m, "simple_string_dyna_sequence", id, int32(s+i), i == 0, last, true)
				if err != nil {
					t.Errorf("sequence %s step %d: %v", id, i, err)
					return
				}
				sum += int32(s + i)
				want := sum
				if last {
					want += int32(2000 + s)
				}
				if got != want {
					t.Errorf("sequence %s step %d: %d, want %d", id, i, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	st, err := m.ModelStatistics(t.Context(), "simple_string_dyna_sequence", "")
	if err != nil {
		t.Fatal(err)
	}
	if n := st[0].InferenceCount; n != sequences*steps {
		t.Fatalf("inference count %d, want %d", n, sequences*steps)
	}
	t.Logf("%d executions for %d requests", st[0].ExecutionCount, sequences*steps)
}
