package models

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/sequence"
	"github.com/helixflow/helixflow/workers/stats"
	"github.com/helixflow/helixflow/workers/tensor"
)

// maxInitialStateBytes bounds an initial_state data_file.
const maxInitialStateBytes = 64 << 20

// newSequenceRunner builds the sequence batcher (workers/sequence) of a
// model with sequence_batching; dir is the model's folder, where the
// initial_state data files are.
func newSequenceRunner(cfg *pb.ModelConfig, dir string, n int64, instances []backend.Instance, rec *stats.Recorder, log *slog.Logger) (runner, error) {
	sc, err := sequenceConfig(cfg, dir)
	if err != nil {
		return nil, err
	}
	sc.Version = n
	sc.Instances = instances
	sc.Observer = rec
	sc.Logger = log
	return sequence.New(sc)
}

// sequenceConfig translates a checked sequence_batching (see
// repository.Normalize) into the batcher's Config.
func sequenceConfig(cfg *pb.ModelConfig, dir string) (sequence.Config, error) {
	sb := cfg.GetSequenceBatching()
	sc := sequence.Config{
		Model:        cfg.Name,
		MaxBatchSize: int(cfg.MaxBatchSize),
		IdleTimeout:  time.Duration(sb.MaxSequenceIdleMicroseconds) * time.Microsecond,
	}
	switch st := sb.StrategyChoice.(type) {
	case *pb.ModelSequenceBatching_Oldest:
		sc.Strategy = sequence.Oldest
		sc.MaxCandidates = int(st.Oldest.MaxCandidateSequences)
		sc.MaxQueueDelay = time.Duration(st.Oldest.MaxQueueDelayMicroseconds) * time.Microsecond
		for _, p := range st.Oldest.PreferredBatchSize {
			sc.PreferredBatchSizes = append(sc.PreferredBatchSizes, int(p))
		}
	case *pb.ModelSequenceBatching_Direct:
		sc.MaxQueueDelay = time.Duration(st.Direct.MaxQueueDelayMicroseconds) * time.Microsecond
		sc.MinSlotUtilization = float64(st.Direct.MinimumSlotUtilization)
	}
	for _, ci := range sb.ControlInput {
		c := ci.Control[0]
		dt, err := repository.TensorType(repository.ControlDataType(c))
		if err != nil {
			return sc, fmt.Errorf("control_input %q: %w", ci.Name, err)
		}
		ctl := sequence.Control{Input: ci.Name, DataType: dt}
		switch c.Kind {
		case pb.ModelSequenceBatching_Control_CONTROL_SEQUENCE_START:
			ctl.Kind = sequence.ControlStart
		case pb.ModelSequenceBatching_Control_CONTROL_SEQUENCE_END:
			ctl.Kind = sequence.ControlEnd
		case pb.ModelSequenceBatching_Control_CONTROL_SEQUENCE_READY:
			ctl.Kind = sequence.ControlReady
		case pb.ModelSequenceBatching_Control_CONTROL_SEQUENCE_CORRID:
			ctl.Kind = sequence.ControlCorrID
		}
		switch {
		case len(c.Int32FalseTrue) == 2:
			ctl.False = binary.LittleEndian.AppendUint32(nil, uint32(c.Int32FalseTrue[0]))
			ctl.True = binary.LittleEndian.AppendUint32(nil, uint32(c.Int32FalseTrue[1]))
		case len(c.Fp32FalseTrue) == 2:
			ctl.False = binary.LittleEndian.AppendUint32(nil, math.Float32bits(c.Fp32FalseTrue[0]))
			ctl.True = binary.LittleEndian.AppendUint32(nil, math.Float32bits(c.Fp32FalseTrue[1]))
		case len(c.BoolFalseTrue) == 2:
			ctl.False, ctl.True = []byte{boolByte(c.BoolFalseTrue[0])}, []byte{boolByte(c.BoolFalseTrue[1])}
		}
		sc.Controls = append(sc.Controls, ctl)
	}
	for _, st := range sb.State {
		dt, err := repository.TensorType(st.DataType)
		if err != nil {
			return sc, fmt.Errorf("state %q: %w", st.InputName, err)
		}
		s := sequence.State{Input: st.InputName, Output: st.OutputName, DataType: dt, Shape: slices.Clone(st.Dims)}
		if len(st.InitialState) == 1 {
			is := st.InitialState[0]
			s.Shape = slices.Clone(is.Dims)
			if len(s.Shape) == 0 {
				s.Shape = slices.Clone(st.Dims)
			}
			if file := is.GetDataFile(); file != "" {
				if s.Data, err = readInitialState(dir, file, dt, s.Shape); err != nil {
					return sc, fmt.Errorf("%w: state %q initial_state: %v", repository.ErrInvalidConfig, st.InputName, err)
				}
			}
		}
		sc.States = append(sc.States, s)
	}
	return sc, nil
}

// readInitialState reads <dir>/initial_state/<file>: the state's elements
// in row-major order (BYTES in Triton's length-prefixed serialization).
func readInitialState(dir, file string, dt tensor.DataType, shape []int64) ([]byte, error) {
	path := filepath.Join(dir, repository.InitialStateDir, file)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxInitialStateBytes {
		return nil, fmt.Errorf("%s is %d bytes, over the %d byte limit", path, fi.Size(), maxInitialStateBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t := tensor.Tensor{Name: file, DataType: dt, Shape: shape, Data: data}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%s does not hold %s elements of shape %v: %w", path, dt, shape, err)
	}
	return data, nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
