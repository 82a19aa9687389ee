package repository

import (
	"slices"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
)

// DeclaredIO is the IO config.pbtxt declares, as a backend.DeclaredIO
// backend checks it and as Validate then compares it: the model's shape is
// the reshape where one is set, with a -1 batch dimension first when the
// model batches. A datatype the config leaves out or misspells becomes ""
// (Validate names the field).
func DeclaredIO(cfg *pb.ModelConfig) (inputs, outputs []backend.IO) {
	batched := cfg.MaxBatchSize > 0
	io := func(name string, dt pb.DataType, dims []int64, reshape *pb.ModelTensorReshape) backend.IO {
		shape := dims
		if reshape != nil {
			shape = reshape.Shape
		}
		if batched {
			shape = append([]int64{-1}, shape...)
		}
		t, _ := TensorType(dt)
		return backend.IO{Name: name, DataType: t, Shape: slices.Clone(shape)}
	}
	for _, in := range cfg.Input {
		inputs = append(inputs, io(in.Name, in.DataType, in.Dims, in.Reshape))
	}
	for _, out := range cfg.Output {
		outputs = append(outputs, io(out.Name, out.DataType, out.Dims, out.Reshape))
	}
	return inputs, outputs
}
