package models

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/sequence"
	"github.com/helixflow/helixflow/workers/tensor"
)

// TestSequenceConfig: sequence_batching becomes the batcher's Config, with
// each control's false/true values encoded as its type.
func TestSequenceConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, repository.InitialStateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, repository.InitialStateDir, "s.bin"), []byte{1, 0, 0, 0, 2, 0, 0, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := repository.ParseConfig([]byte(`
max_batch_size: 4
sequence_batching {
  max_sequence_idle_microseconds: 2500
  oldest { max_candidate_sequences: 3 preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 100 }
  control_input [
    { name: "S" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
    { name: "E" control [ { kind: CONTROL_SEQUENCE_END bool_false_true: [ false, true ] } ] },
    { name: "R" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 5, 7 ] } ] },
    { name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } ] }
  ]
  state [ { input_name: "IS" output_name: "OS" data_type: TYPE_INT32 dims: [ 2 ]
    initial_state { data_type: TYPE_INT32 dims: [ 2 ] data_file: "s.bin" } } ]
}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := repository.Normalize(cfg, "m"); err != nil {
		t.Fatal(err)
	}
	sc, err := sequenceConfig(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	f32 := func(v float32) []byte { return binary.LittleEndian.AppendUint32(nil, math.Float32bits(v)) }
	i32 := func(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }
	want := sequence.Config{
		Model: "m", MaxBatchSize: 4, Strategy: sequence.Oldest, IdleTimeout: 2500 * time.Microsecond,
		MaxCandidates: 3, PreferredBatchSizes: []int{2, 4}, MaxQueueDelay: 100 * time.Microsecond,
		Controls: []sequence.Control{
			{Input: "S", Kind: sequence.ControlStart, DataType: tensor.FP32, False: f32(0), True: f32(1)},
			{Input: "E", Kind: sequence.ControlEnd, DataType: tensor.Bool, False: []byte{0}, True: []byte{1}},
			{Input: "R", Kind: sequence.ControlReady, DataType: tensor.Int32, False: i32(5), True: i32(7)},
			{Input: "C", Kind: sequence.ControlCorrID, DataType: tensor.Bytes},
		},
		States: []sequence.State{{Input: "IS", Output: "OS", DataType: tensor.Int32, Shape: []int64{2}, Data: []byte{1, 0, 0, 0, 2, 0, 0, 0}}},
	}
	if !reflect.DeepEqual(sc, want) {
		t.Fatalf("config\n%+v\nwant\n%+v", sc, want)
	}

	// A data file that does not hold the state's shape is refused.
	cfg.GetSequenceBatching().State[0].InitialState[0].Dims = []int64{3}
	if _, err := sequenceConfig(cfg, dir); err == nil || !strings.Contains(err.Error(), "does not hold INT32 elements of shape [3]") {
		t.Fatalf("short data file: %v", err)
	}
	cfg.GetSequenceBatching().State[0].InitialState[0].StateData = nil
	cfg.GetSequenceBatching().State[0].InitialState[0].Dims = nil
	if sc, err := sequenceConfig(cfg, dir); err != nil || sc.States[0].Data != nil || !reflect.DeepEqual(sc.States[0].Shape, []int64{2}) {
		t.Fatalf("zero state: %+v, %v", sc.States, err)
	}
}
