package onnxruntime

import (
	"fmt"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

// dataTypes maps every ONNX element type that has a KServe datatype.
var dataTypes = map[ort.TensorElementDataType]tensor.DataType{
	ort.TensorElementDataTypeBool:     tensor.Bool,
	ort.TensorElementDataTypeInt8:     tensor.Int8,
	ort.TensorElementDataTypeInt16:    tensor.Int16,
	ort.TensorElementDataTypeInt32:    tensor.Int32,
	ort.TensorElementDataTypeInt64:    tensor.Int64,
	ort.TensorElementDataTypeUint8:    tensor.Uint8,
	ort.TensorElementDataTypeUint16:   tensor.Uint16,
	ort.TensorElementDataTypeUint32:   tensor.Uint32,
	ort.TensorElementDataTypeUint64:   tensor.Uint64,
	ort.TensorElementDataTypeFloat16:  tensor.FP16,
	ort.TensorElementDataTypeBFloat16: tensor.BF16,
	ort.TensorElementDataTypeFloat:    tensor.FP32,
	ort.TensorElementDataTypeDouble:   tensor.FP64,
	ort.TensorElementDataTypeString:   tensor.Bytes,
}

var elementTypes = func() map[tensor.DataType]ort.TensorElementDataType {
	m := make(map[tensor.DataType]ort.TensorElementDataType, len(dataTypes))
	for e, d := range dataTypes {
		m[d] = e
	}
	return m
}()

// port is one model input or output as the model file declares it.
type port struct {
	backend.IO
	elemType ort.TensorElementDataType
}

// portFromInfo converts ORT's description of a model input or output.
func portFromInfo(kind string, info ort.InputOutputInfo) (port, error) {
	if info.OrtValueType != ort.ONNXTypeTensor {
		return port{}, fmt.Errorf("%w: %s %q is a %s, only dense tensors are supported",
			backend.ErrUnsupported, kind, info.Name, info.OrtValueType)
	}
	dt, ok := dataTypes[info.DataType]
	if !ok {
		return port{}, fmt.Errorf("%w: %s %q has element type %s, which has no KServe datatype",
			backend.ErrUnsupported, kind, info.Name, strings.TrimPrefix(info.DataType.String(), "ONNX_TENSOR_ELEMENT_DATA_TYPE_"))
	}
	shape := make([]int64, len(info.Dimensions))
	for i, d := range info.Dimensions {
		// ORT reports symbolic and unknown dimensions as negative numbers.
		shape[i] = max(d, -1)
	}
	return port{IO: backend.IO{Name: info.Name, DataType: dt, Shape: shape}, elemType: info.DataType}, nil
}

func portsFromInfo(kind string, infos []ort.InputOutputInfo) ([]port, error) {
	ports := make([]port, len(infos))
	for i, info := range infos {
		p, err := portFromInfo(kind, info)
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	return ports, nil
}
