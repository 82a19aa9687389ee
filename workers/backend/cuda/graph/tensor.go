package graph

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/helixflow/helixflow/workers/tensor"
)

// Tensor is a constant held on the host: an initializer, a Constant node's
// value, or a value folded at load. Data is little-endian, row-major.
type Tensor struct {
	DType DType
	Shape []int64
	Data  []byte
}

// Numel is the element count of a shape; a scalar has one element.
func Numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// maxHostElements bounds a tensor computed on the host (folding, shape
// arithmetic): a model whose constants would broadcast into more is left to
// the device rather than exhaust the worker's memory.
const maxHostElements = 1 << 24

// numelChecked is the element count of shape, false when a dimension is
// negative or the count overflows.
func numelChecked(shape []int64) (int64, bool) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || (d > 0 && n > (1<<62)/d) {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// hostSized reports whether tensors of these shapes may be computed on
// the host.
func hostSized(infos []Info) bool {
	for _, i := range infos {
		if n, ok := numelChecked(i.Shape); !ok || n > maxHostElements {
			return false
		}
	}
	return true
}

// Len is the tensor's element count.
func (t *Tensor) Len() int64 { return Numel(t.Shape) }

// Info is the tensor's type and shape.
func (t *Tensor) Info() Info { return Info{DType: t.DType, Shape: t.Shape} }

// check reports a Data length that does not fit DType and Shape.
func (t *Tensor) check() error {
	if _, ok := numelChecked(t.Shape); !ok {
		return fmt.Errorf("shape %v has a negative dimension or too many elements", t.Shape)
	}
	if t.DType.Size() == 0 {
		return fmt.Errorf("element type %s cannot be held as a dense numeric tensor", t.DType)
	}
	if want := t.Len() * int64(t.DType.Size()); int64(len(t.Data)) != want {
		return fmt.Errorf("%d bytes of data for %s%v, want %d", len(t.Data), t.DType, t.Shape, want)
	}
	return nil
}

// Floats decodes every element as a float64.
func (t *Tensor) Floats() []float64 {
	n := int(t.Len())
	out := make([]float64, n)
	d := t.Data
	for i := range out {
		switch t.DType {
		case Float:
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:])))
		case Double:
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:]))
		case Float16:
			out[i] = tensor.FP16ToFloat64(binary.LittleEndian.Uint16(d[2*i:]))
		case BFloat16:
			out[i] = tensor.BF16ToFloat64(binary.LittleEndian.Uint16(d[2*i:]))
		default:
			out[i] = float64(t.intAt(i))
		}
	}
	return out
}

// Ints decodes every element as an int64 (floats truncate toward zero).
func (t *Tensor) Ints() []int64 {
	n := int(t.Len())
	out := make([]int64, n)
	if t.DType.IsFloat() {
		for i, f := range t.Floats() {
			out[i] = int64(f)
		}
		return out
	}
	for i := range out {
		out[i] = t.intAt(i)
	}
	return out
}

func (t *Tensor) intAt(i int) int64 {
	d := t.Data
	switch t.DType {
	case Bool, Uint8:
		return int64(d[i])
	case Int8:
		return int64(int8(d[i]))
	case Uint16:
		return int64(binary.LittleEndian.Uint16(d[2*i:]))
	case Int16:
		return int64(int16(binary.LittleEndian.Uint16(d[2*i:])))
	case Int32:
		return int64(int32(binary.LittleEndian.Uint32(d[4*i:])))
	case Uint32:
		return int64(binary.LittleEndian.Uint32(d[4*i:]))
	case Int64, Uint64:
		return int64(binary.LittleEndian.Uint64(d[8*i:]))
	}
	return 0
}

// NewFloats encodes vals as a tensor of dtype (rounding to nearest for
// narrower floats, truncating toward zero for integers).
func NewFloats(dt DType, shape []int64, vals []float64) *Tensor {
	if !dt.IsFloat() {
		ints := make([]int64, len(vals))
		for i, v := range vals {
			ints[i] = int64(v)
		}
		if dt == Bool {
			for i, v := range vals {
				ints[i] = 0
				if v != 0 {
					ints[i] = 1
				}
			}
		}
		return NewInts(dt, shape, ints)
	}
	size := dt.Size()
	data := make([]byte, len(vals)*size)
	for i, v := range vals {
		switch dt {
		case Float:
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(v)))
		case Double:
			binary.LittleEndian.PutUint64(data[8*i:], math.Float64bits(v))
		case Float16:
			binary.LittleEndian.PutUint16(data[2*i:], halfBits(v, tensor.Float64ToFP16, 0x7c00))
		case BFloat16:
			binary.LittleEndian.PutUint16(data[2*i:], halfBits(v, tensor.Float64ToBF16, 0x7f80))
		}
	}
	return &Tensor{DType: dt, Shape: slices.Clone(shape), Data: data}
}

// halfBits rounds v, saturating to infinity where it is too large.
func halfBits(v float64, conv func(float64) (uint16, bool), inf uint16) uint16 {
	b, ok := conv(v)
	if !ok {
		if v < 0 {
			return 0x8000 | inf
		}
		return inf
	}
	return b
}

// NewInts encodes vals as a tensor of an integer or bool dtype (wrapping as
// a C cast would); float dtypes convert each value.
func NewInts(dt DType, shape []int64, vals []int64) *Tensor {
	if dt.IsFloat() {
		f := make([]float64, len(vals))
		for i, v := range vals {
			f[i] = float64(v)
		}
		return NewFloats(dt, shape, f)
	}
	size := dt.Size()
	data := make([]byte, len(vals)*size)
	for i, v := range vals {
		switch size {
		case 1:
			data[i] = byte(v)
			if dt == Bool && v != 0 {
				data[i] = 1
			}
		case 2:
			binary.LittleEndian.PutUint16(data[2*i:], uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(data[4*i:], uint32(v))
		case 8:
			binary.LittleEndian.PutUint64(data[8*i:], uint64(v))
		}
	}
	return &Tensor{DType: dt, Shape: slices.Clone(shape), Data: data}
}

// Convert returns t as dtype dt (t itself when it already is).
func (t *Tensor) Convert(dt DType) *Tensor {
	if t.DType == dt {
		return t
	}
	if t.DType.IsFloat() || dt.IsFloat() {
		return NewFloats(dt, t.Shape, t.Floats())
	}
	return NewInts(dt, t.Shape, t.Ints())
}
