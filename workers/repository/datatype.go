package repository

import (
	"fmt"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/tensor"
)

var toTensor = map[pb.DataType]tensor.DataType{
	pb.DataType_TYPE_BOOL:   tensor.Bool,
	pb.DataType_TYPE_UINT8:  tensor.Uint8,
	pb.DataType_TYPE_UINT16: tensor.Uint16,
	pb.DataType_TYPE_UINT32: tensor.Uint32,
	pb.DataType_TYPE_UINT64: tensor.Uint64,
	pb.DataType_TYPE_INT8:   tensor.Int8,
	pb.DataType_TYPE_INT16:  tensor.Int16,
	pb.DataType_TYPE_INT32:  tensor.Int32,
	pb.DataType_TYPE_INT64:  tensor.Int64,
	pb.DataType_TYPE_FP16:   tensor.FP16,
	pb.DataType_TYPE_BF16:   tensor.BF16,
	pb.DataType_TYPE_FP32:   tensor.FP32,
	pb.DataType_TYPE_FP64:   tensor.FP64,
	pb.DataType_TYPE_STRING: tensor.Bytes,
}

var toConfig = func() map[tensor.DataType]pb.DataType {
	m := make(map[tensor.DataType]pb.DataType, len(toTensor))
	for k, v := range toTensor {
		m[v] = k
	}
	return m
}()

// TensorType maps a config TYPE_* to its KServe datatype (TYPE_STRING is BYTES).
func TensorType(d pb.DataType) (tensor.DataType, error) {
	t, ok := toTensor[d]
	if !ok {
		return "", fmt.Errorf("%w: data_type %s is not a tensor type", ErrInvalidConfig, d)
	}
	return t, nil
}

// ConfigType maps a KServe datatype to the config's TYPE_*.
func ConfigType(d tensor.DataType) pb.DataType {
	return toConfig[d]
}
