package tensorflow

import (
	"strconv"

	"github.com/helixflow/helixflow/workers/tensor"
)

// TF_DataType values (tensorflow/c/tf_datatype.h; DataType in types.proto)
// that have a KServe datatype. TF_STRING carries BYTES.
const (
	tfFloat    = 1
	tfDouble   = 2
	tfInt32    = 3
	tfUint8    = 4
	tfInt16    = 5
	tfInt8     = 6
	tfString   = 7
	tfInt64    = 9
	tfBool     = 10
	tfBfloat16 = 14
	tfUint16   = 17
	tfHalf     = 19
	tfUint32   = 22
	tfUint64   = 23
)

// dataTypes maps every TensorFlow dtype this backend serves to its KServe
// datatype; the byte layouts agree (BOOL one byte, FP16 and BF16 their bit
// patterns), so tensors are copied as they are, BYTES excepted.
var dataTypes = map[int]tensor.DataType{
	tfBool:     tensor.Bool,
	tfUint8:    tensor.Uint8,
	tfUint16:   tensor.Uint16,
	tfUint32:   tensor.Uint32,
	tfUint64:   tensor.Uint64,
	tfInt8:     tensor.Int8,
	tfInt16:    tensor.Int16,
	tfInt32:    tensor.Int32,
	tfInt64:    tensor.Int64,
	tfHalf:     tensor.FP16,
	tfBfloat16: tensor.BF16,
	tfFloat:    tensor.FP32,
	tfDouble:   tensor.FP64,
	tfString:   tensor.Bytes,
}

var tfTypes = func() map[tensor.DataType]int {
	m := make(map[tensor.DataType]int, len(dataTypes))
	for t, d := range dataTypes {
		m[d] = t
	}
	return m
}()

// dtypeNames names TensorFlow dtypes in errors, as types.proto does.
var dtypeNames = map[int]string{
	1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16", 6: "DT_INT8",
	7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64", 10: "DT_BOOL", 11: "DT_QINT8",
	12: "DT_QUINT8", 13: "DT_QINT32", 14: "DT_BFLOAT16", 15: "DT_QINT16", 16: "DT_QUINT16",
	17: "DT_UINT16", 18: "DT_COMPLEX128", 19: "DT_HALF", 20: "DT_RESOURCE", 21: "DT_VARIANT",
	22: "DT_UINT32", 23: "DT_UINT64",
}

func dtypeName(t int) string {
	if n, ok := dtypeNames[t]; ok {
		return n
	}
	return "dtype " + strconv.Itoa(t)
}
