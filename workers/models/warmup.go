package models

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/tensor"
)

// WarmupDir is the folder of a model (beside config.pbtxt) that holds the
// input_data_file files of its model_warmup samples, as in Triton.
const WarmupDir = "warmup"

// maxWarmupBytes bounds one warm-up input, so that a config typo in dims
// cannot make a load allocate without limit.
const maxWarmupBytes = 1 << 30

// warmupSample is one model_warmup entry, ready to execute.
type warmupSample struct {
	name    string
	inputs  []tensor.Tensor // as the backend sees them: batched and reshaped
	outputs []string
	runs    int
}

// warmUp runs the config's model_warmup samples on every instance before
// the version serves, as Triton does: each sample's batch_size rows go to
// the instance as one execution, repeated count times (once when count is
// 0). A sample that cannot be built or fails makes the load fail, naming
// the sample. It returns the number of executions it ran.
func warmUp(ctx context.Context, cfg *pb.ModelConfig, dir string, modelInputs []backend.IO, instances []backend.Instance) (int, error) {
	if len(cfg.ModelWarmup) == 0 {
		return 0, nil
	}
	samples, err := warmupSamples(cfg, dir, modelInputs)
	if err != nil {
		return 0, err
	}
	runs := 0
	decoupled := repository.IsDecoupled(cfg)
	discard := func([]tensor.Tensor) error { return nil }
	for _, s := range samples {
		for i, inst := range instances {
			for range s.runs {
				var err error
				if di, ok := inst.(backend.DecoupledInstance); ok && decoupled {
					err = di.ExecuteDecoupled(ctx, s.inputs, s.outputs, discard)
				} else {
					_, err = inst.Execute(ctx, s.inputs, s.outputs)
				}
				if err != nil {
					return runs, fmt.Errorf("warm-up sample '%s' failed on instance %d: %w", s.name, i, err)
				}
				runs++
			}
		}
	}
	return runs, nil
}

// warmupSamples builds the config's samples, checking each against the
// model's inputs.
func warmupSamples(cfg *pb.ModelConfig, dir string, modelInputs []backend.IO) ([]warmupSample, error) {
	batched := cfg.MaxBatchSize > 0
	var outputs []string
	for _, o := range cfg.Output {
		outputs = append(outputs, o.Name)
	}
	samples := make([]warmupSample, 0, len(cfg.ModelWarmup))
	for i, w := range cfg.ModelWarmup {
		name := w.Name
		if name == "" {
			name = fmt.Sprintf("model_warmup[%d]", i)
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%w: warm-up sample '%s': %s", repository.ErrInvalidConfig, name, fmt.Sprintf(format, args...))
		}
		switch {
		case w.BatchSize == 0:
			return nil, fail("batch_size must be at least 1")
		case !batched && w.BatchSize != 1:
			return nil, fail("batch_size %d: the model does not batch (max_batch_size 0), so it must be 1", w.BatchSize)
		case batched && int64(w.BatchSize) > int64(cfg.MaxBatchSize):
			return nil, fail("batch_size %d is over max_batch_size %d", w.BatchSize, cfg.MaxBatchSize)
		}
		s := warmupSample{name: name, outputs: outputs, runs: max(1, int(w.Count))}
		for _, inName := range slices.Sorted(func(yield func(string) bool) {
			for k := range w.Inputs {
				if !yield(k) {
					return
				}
			}
		}) {
			t, err := warmupInput(cfg, dir, modelInputs, inName, w.Inputs[inName], int64(w.BatchSize))
			if err != nil {
				return nil, fail("input '%s': %v", inName, err)
			}
			s.inputs = append(s.inputs, t)
		}
		for _, in := range cfg.Input {
			if _, ok := w.Inputs[in.Name]; !ok && !in.Optional {
				return nil, fail("input '%s' of the model has no warm-up data", in.Name)
			}
		}
		samples = append(samples, s)
	}
	return samples, nil
}

// warmupInput builds one input of a sample: batch rows of the sample's data.
func warmupInput(cfg *pb.ModelConfig, dir string, modelInputs []backend.IO, name string, in *pb.ModelWarmup_Input, batch int64) (tensor.Tensor, error) {
	// An input of the config, or one only the model file declares (a
	// sequence's control or state, which warm-up must supply itself).
	var wantType pb.DataType
	var dims, reshape []int64
	if ci := configInput(cfg, name); ci != nil {
		wantType, dims, reshape = ci.DataType, ci.Dims, ci.GetReshape().GetShape()
	} else if i := slices.IndexFunc(modelInputs, func(io backend.IO) bool { return io.Name == name }); i >= 0 {
		wantType = repository.ConfigType(modelInputs[i].DataType)
		dims = modelInputs[i].Shape
		if cfg.MaxBatchSize > 0 && len(dims) > 0 {
			dims = dims[1:]
		}
	} else {
		return tensor.Tensor{}, fmt.Errorf("not an input of the model")
	}
	if in.DataType != wantType {
		return tensor.Tensor{}, fmt.Errorf("data_type %s, the model's input is %s", in.DataType, wantType)
	}
	dt, err := repository.TensorType(in.DataType)
	if err != nil {
		return tensor.Tensor{}, err
	}
	for _, d := range in.Dims {
		if d < 1 {
			return tensor.Tensor{}, fmt.Errorf("dims %v: warm-up data has a fixed shape, every dimension at least 1", in.Dims)
		}
	}
	if !dimsMatch(in.Dims, dims) {
		return tensor.Tensor{}, fmt.Errorf("dims %v do not match the input's dims %v", in.Dims, dims)
	}
	n, err := tensor.ElementCount(in.Dims)
	if err != nil {
		return tensor.Tensor{}, err
	}
	if size, _ := tensor.ByteSize(dt, in.Dims); size*batch > maxWarmupBytes || n*batch > maxWarmupBytes {
		return tensor.Tensor{}, fmt.Errorf("dims %v with batch_size %d are over the %d byte limit of warm-up data", in.Dims, batch, maxWarmupBytes)
	}
	var row []byte
	switch d := in.InputDataType.(type) {
	case *pb.ModelWarmup_Input_ZeroData:
		row = zeroData(dt, n)
	case *pb.ModelWarmup_Input_RandomData:
		row = randomData(dt, n)
	case *pb.ModelWarmup_Input_InputDataFile:
		if row, err = readWarmupFile(dir, d.InputDataFile, dt, in.Dims, n); err != nil {
			return tensor.Tensor{}, err
		}
	default:
		return tensor.Tensor{}, fmt.Errorf("sets none of zero_data, random_data and input_data_file")
	}
	shape := slices.Clone(in.Dims)
	data := row
	if cfg.MaxBatchSize > 0 {
		shape = append([]int64{batch}, shape...)
		data = make([]byte, 0, int64(len(row))*batch)
		for range batch {
			data = append(data, row...)
		}
	}
	if len(reshape) > 0 {
		shape = batchShape(shape, reshape, cfg.MaxBatchSize > 0)
	}
	return tensor.Tensor{Name: name, DataType: dt, Shape: shape, Data: data}, nil
}

func configInput(cfg *pb.ModelConfig, name string) *pb.ModelInput {
	for _, in := range cfg.Input {
		if in.Name == name {
			return in
		}
	}
	return nil
}

// zeroData is n zero elements; for BYTES, n empty strings.
func zeroData(dt tensor.DataType, n int64) []byte {
	if dt == tensor.Bytes {
		return make([]byte, 4*n)
	}
	return make([]byte, n*int64(dt.ElementSize()))
}

// randomData is n random elements: floating point values in [0, 1),
// booleans 0 or 1, any bit pattern for integers. BYTES elements are empty
// strings, as Triton's random_data gives for TYPE_STRING.
func randomData(dt tensor.DataType, n int64) []byte {
	size := int64(dt.ElementSize())
	out := make([]byte, n*size)
	switch dt {
	case tensor.Bytes:
		return zeroData(dt, n)
	case tensor.Bool:
		for i := range out {
			out[i] = byte(rand.IntN(2))
		}
	case tensor.FP32:
		for i := range n {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(rand.Float32()))
		}
	case tensor.FP64:
		for i := range n {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(rand.Float64()))
		}
	case tensor.BF16:
		for i := range n {
			binary.LittleEndian.PutUint16(out[2*i:], uint16(math.Float32bits(rand.Float32())>>16))
		}
	case tensor.FP16:
		for i := range n {
			// Exponent 0..14 with any mantissa: a value in [0, 1).
			binary.LittleEndian.PutUint16(out[2*i:], uint16(rand.IntN(15))<<10|uint16(rand.IntN(1<<10)))
		}
	default:
		for i := range out {
			out[i] = byte(rand.Uint32())
		}
	}
	return out
}

// readWarmupFile reads <model>/warmup/<file>: one row of the input, raw
// little-endian elements, or for BYTES serialized strings (a 4-byte length
// before each), as Triton reads it.
func readWarmupFile(dir, file string, dt tensor.DataType, dims []int64, n int64) ([]byte, error) {
	if file == "" || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
		return nil, fmt.Errorf("input_data_file %q must be the name of a file in the model's %s folder", file, WarmupDir)
	}
	path := filepath.Join(dir, WarmupDir, file)
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("input_data_file: %w", err)
	}
	if st.Size() > maxWarmupBytes {
		return nil, fmt.Errorf("input_data_file %s is %d bytes, over the %d byte limit", path, st.Size(), maxWarmupBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("input_data_file: %w", err)
	}
	if dt == tensor.Bytes {
		if _, err := tensor.DecodeBytes(data, n); err != nil {
			return nil, fmt.Errorf("input_data_file %s: %d serialized strings expected for dims %v: %w", path, n, dims, err)
		}
		return data, nil
	}
	if want, _ := tensor.ByteSize(dt, dims); int64(len(data)) != want {
		return nil, fmt.Errorf("input_data_file %s has %d bytes, dims %v of %s need %d", path, len(data), dims, dt, want)
	}
	return data, nil
}
