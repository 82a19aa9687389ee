package sequence

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// requestKey is equal for two requests exactly when their inputs can be
// concatenated (same names, datatypes and per-row shapes) and they ask for
// the same outputs in the same order.
func requestKey(inputs []tensor.Tensor, outputs []string, batched bool) string {
	ins := make([]*tensor.Tensor, len(inputs))
	for i := range inputs {
		ins[i] = &inputs[i]
	}
	slices.SortFunc(ins, func(a, b *tensor.Tensor) int { return cmp.Compare(a.Name, b.Name) })
	var k strings.Builder
	for _, in := range ins {
		k.WriteString(in.Name)
		k.WriteByte(0)
		k.WriteString(string(in.DataType))
		shape := in.Shape
		if batched && len(shape) > 0 {
			shape = shape[1:]
		}
		writeShape(&k, shape)
		k.WriteByte(0)
	}
	k.WriteByte(1)
	for _, o := range outputs {
		k.WriteString(o)
		k.WriteByte(0)
	}
	return k.String()
}

func writeShape(k *strings.Builder, shape []int64) {
	for _, d := range shape {
		k.WriteByte(',')
		k.WriteString(strconv.FormatInt(d, 10))
	}
}

// zeros is a tensor like t (name, type, shape) full of zeros; BYTES
// elements are empty.
func zeros(t tensor.Tensor) tensor.Tensor {
	n, err := tensor.ElementCount(t.Shape)
	if err != nil {
		n = 0
	}
	size := int64(t.DataType.ElementSize())
	if t.DataType == tensor.Bytes {
		size = 4 // a zero length prefix per element
	}
	t.Data = make([]byte, n*size)
	return t
}

// withBatch returns shape with a leading batch dimension n when batched.
func withBatch(shape []int64, n int, batched bool) []int64 {
	if !batched {
		return slices.Clone(shape)
	}
	return append([]int64{int64(n)}, shape...)
}

// corridValue encodes a correlation id as one element of a CORRID control
// of type dt. A string CORRID takes a numeric id in decimal; a numeric
// CORRID needs a numeric id that fits.
func corridValue(dt tensor.DataType, id infer.CorrelationID) ([]byte, error) {
	if dt == tensor.Bytes {
		s := id.Str
		if s == "" && id.Num != 0 {
			s = strconv.FormatUint(id.Num, 10)
		}
		return tensor.EncodeBytes([][]byte{[]byte(s)}), nil
	}
	if id.Str != "" {
		return nil, fmt.Errorf("the model's CORRID control is %s, so the sequence id must be an integer, not the string %q", dt, id.Str)
	}
	v := id.Num
	switch dt {
	case tensor.Uint64:
		return binary.LittleEndian.AppendUint64(nil, v), nil
	case tensor.Int64:
		if v > math.MaxInt64 {
			return nil, fmt.Errorf("sequence id %d does not fit the model's INT64 CORRID control", v)
		}
		return binary.LittleEndian.AppendUint64(nil, v), nil
	case tensor.Uint32:
		if v > math.MaxUint32 {
			return nil, fmt.Errorf("sequence id %d does not fit the model's UINT32 CORRID control", v)
		}
		return binary.LittleEndian.AppendUint32(nil, uint32(v)), nil
	case tensor.Int32:
		if v > math.MaxInt32 {
			return nil, fmt.Errorf("sequence id %d does not fit the model's INT32 CORRID control", v)
		}
		return binary.LittleEndian.AppendUint32(nil, uint32(v)), nil
	}
	return nil, fmt.Errorf("CORRID control of type %s", dt)
}

// corridZero is a CORRID element for a row without a request.
func corridZero(dt tensor.DataType) []byte {
	if dt == tensor.Bytes {
		return tensor.EncodeBytes([][]byte{nil})
	}
	return make([]byte, dt.ElementSize())
}
