package models

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"

	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// maxClassificationElements bounds the work one classification may ask for,
// as Triton bounds it.
const maxClassificationElements = 1_000_000

// classify implements Triton's classification extension: it replaces t by
// a BYTES tensor holding, for each batch item, the top k elements as
// "<value>:<index>" strings, highest value first. Values are printed as C++
// std::to_string prints them ("%f" for floating point).
func classify(t tensor.Tensor, k uint64, batched bool) (tensor.Tensor, error) {
	return classifyLabeled(t, k, batched, nil)
}

// classifyLabeled is classify with the output's label file (its
// label_filename, one label per line): "<value>:<index>:<label>" where the
// file has a non-empty label for the index, as Triton prints it.
func classifyLabeled(t tensor.Tensor, k uint64, batched bool, labels []string) (tensor.Tensor, error) {
	size := t.DataType.ElementSize()
	if t.DataType == tensor.Bytes || t.DataType == tensor.Bool || size == 0 {
		return tensor.Tensor{}, infer.Errorf(infer.CodeInvalidArgument,
			"class result not available for output '%s' due to unsupported type '%s'", t.Name, t.DataType)
	}
	if err := t.Validate(); err != nil {
		return tensor.Tensor{}, infer.Errorf(infer.CodeInternal, "classification of output '%s': %w", t.Name, err)
	}
	total := int64(len(t.Data) / size)
	if total > maxClassificationElements {
		return tensor.Tensor{}, infer.Errorf(infer.CodeInvalidArgument, "classification output tensor '%s' too large", t.Name)
	}
	batch := int64(1)
	perItem := total
	if batched && len(t.Shape) > 0 {
		batch = t.Shape[0]
		perItem, _ = tensor.ElementCount(t.Shape[1:])
	}
	count := int64(min(k, uint64(perItem)))
	shape := []int64{count}
	if batched && len(t.Shape) > 0 {
		shape = []int64{batch, count}
	}
	value := elementReader(t.DataType, t.Data)
	var out []byte
	order := make([]int64, perItem)
	for b := int64(0); b < batch; b++ {
		base := b * perItem
		for i := range order {
			order[i] = int64(i)
		}
		slices.SortStableFunc(order, func(i, j int64) int {
			return compareDesc(value(base+i), value(base+j))
		})
		for _, idx := range order[:count] {
			s := value(base + idx).format()
			s = append(s, ':')
			s = strconv.AppendInt(s, idx, 10)
			if idx < int64(len(labels)) && labels[idx] != "" {
				s = append(append(s, ':'), labels[idx]...)
			}
			out = binary.LittleEndian.AppendUint32(out, uint32(len(s)))
			out = append(out, s...)
		}
	}
	return tensor.Tensor{Name: t.Name, DataType: tensor.Bytes, Shape: shape, Data: out}, nil
}

// classValue is one element, kept in the type that compares it exactly.
type classValue struct {
	kind byte // 'i' signed, 'u' unsigned, 'f' floating point
	i    int64
	u    uint64
	f    float64
}

func (v classValue) format() []byte {
	switch v.kind {
	case 'i':
		return strconv.AppendInt(nil, v.i, 10)
	case 'u':
		return strconv.AppendUint(nil, v.u, 10)
	}
	// C's %f, which std::to_string uses, names the specials in lower case.
	switch {
	case math.IsNaN(v.f):
		return []byte("nan")
	case math.IsInf(v.f, 1):
		return []byte("inf")
	case math.IsInf(v.f, -1):
		return []byte("-inf")
	}
	return strconv.AppendFloat(nil, v.f, 'f', 6, 64)
}

// compareDesc orders higher values first; NaN sorts last.
func compareDesc(a, b classValue) int {
	switch a.kind {
	case 'i':
		return -cmpOrdered(a.i, b.i)
	case 'u':
		return -cmpOrdered(a.u, b.u)
	}
	an, bn := math.IsNaN(a.f), math.IsNaN(b.f)
	switch {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	}
	return -cmpOrdered(a.f, b.f)
}

func cmpOrdered[T int64 | uint64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// elementReader returns a function reading element i of data.
func elementReader(dt tensor.DataType, data []byte) func(int64) classValue {
	le := binary.LittleEndian
	switch dt {
	case tensor.Int8:
		return func(i int64) classValue { return classValue{kind: 'i', i: int64(int8(data[i]))} }
	case tensor.Int16:
		return func(i int64) classValue { return classValue{kind: 'i', i: int64(int16(le.Uint16(data[2*i:])))} }
	case tensor.Int32:
		return func(i int64) classValue { return classValue{kind: 'i', i: int64(int32(le.Uint32(data[4*i:])))} }
	case tensor.Int64:
		return func(i int64) classValue { return classValue{kind: 'i', i: int64(le.Uint64(data[8*i:]))} }
	case tensor.Uint8:
		return func(i int64) classValue { return classValue{kind: 'u', u: uint64(data[i])} }
	case tensor.Uint16:
		return func(i int64) classValue { return classValue{kind: 'u', u: uint64(le.Uint16(data[2*i:]))} }
	case tensor.Uint32:
		return func(i int64) classValue { return classValue{kind: 'u', u: uint64(le.Uint32(data[4*i:]))} }
	case tensor.Uint64:
		return func(i int64) classValue { return classValue{kind: 'u', u: le.Uint64(data[8*i:])} }
	case tensor.FP16:
		return func(i int64) classValue { return classValue{kind: 'f', f: tensor.FP16ToFloat64(le.Uint16(data[2*i:]))} }
	case tensor.BF16:
		return func(i int64) classValue { return classValue{kind: 'f', f: tensor.BF16ToFloat64(le.Uint16(data[2*i:]))} }
	case tensor.FP32:
		return func(i int64) classValue {
			return classValue{kind: 'f', f: float64(math.Float32frombits(le.Uint32(data[4*i:])))}
		}
	default: // FP64
		return func(i int64) classValue { return classValue{kind: 'f', f: math.Float64frombits(le.Uint64(data[8*i:]))} }
	}
}
