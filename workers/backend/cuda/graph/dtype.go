package graph

import (
	"fmt"

	"github.com/helixflow/helixflow/workers/tensor"
)

// DType is an ONNX tensor element type, numbered as TensorProto.DataType.
type DType int32

// The element types the cuda backend knows by name.
const (
	Undefined DType = 0
	Float     DType = 1
	Uint8     DType = 2
	Int8      DType = 3
	Uint16    DType = 4
	Int16     DType = 5
	Int32     DType = 6
	Int64     DType = 7
	String    DType = 8
	Bool      DType = 9
	Float16   DType = 10
	Double    DType = 11
	Uint32    DType = 12
	Uint64    DType = 13
	BFloat16  DType = 16
)

var dtypeInfo = map[DType]struct {
	name string
	size int
	kind tensor.DataType
}{
	Float:    {"float32", 4, tensor.FP32},
	Uint8:    {"uint8", 1, tensor.Uint8},
	Int8:     {"int8", 1, tensor.Int8},
	Uint16:   {"uint16", 2, tensor.Uint16},
	Int16:    {"int16", 2, tensor.Int16},
	Int32:    {"int32", 4, tensor.Int32},
	Int64:    {"int64", 8, tensor.Int64},
	String:   {"string", 0, tensor.Bytes},
	Bool:     {"bool", 1, tensor.Bool},
	Float16:  {"float16", 2, tensor.FP16},
	Double:   {"float64", 8, tensor.FP64},
	Uint32:   {"uint32", 4, tensor.Uint32},
	Uint64:   {"uint64", 8, tensor.Uint64},
	BFloat16: {"bfloat16", 2, tensor.BF16},
}

// String names the type as numpy does ("float32").
func (d DType) String() string {
	if i, ok := dtypeInfo[d]; ok {
		return i.name
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// Size is the element size in bytes (0 for strings and unknown types).
func (d DType) Size() int { return dtypeInfo[d].size }

// Known reports whether d is an ONNX type this package can hold.
func (d DType) Known() bool { _, ok := dtypeInfo[d]; return ok }

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	return d == Float || d == Float16 || d == BFloat16 || d == Double
}

// IsInt reports whether d is an integer type (bool excluded).
func (d DType) IsInt() bool {
	switch d {
	case Uint8, Int8, Uint16, Int16, Int32, Int64, Uint32, Uint64:
		return true
	}
	return false
}

// DataType is the KServe datatype of d.
func (d DType) DataType() tensor.DataType { return dtypeInfo[d].kind }

// FromDataType is the ONNX type of a KServe datatype.
func FromDataType(t tensor.DataType) (DType, bool) {
	for d, i := range dtypeInfo {
		if i.kind == t {
			return d, true
		}
	}
	return Undefined, false
}
