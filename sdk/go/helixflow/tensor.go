package helixflow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/helixflow/helixflow/sdk/go/inference"
)

// Float16 is an IEEE 754 half-precision number as its raw bits (KServe
// datatype FP16). Go has no float16: convert with Float16FromFloat32 and
// Float16.Float32, or keep the bits as they came from the model.
type Float16 uint16

// BFloat16 is a bfloat16 number as its raw bits (KServe datatype BF16): the
// upper half of a float32. Convert with BFloat16FromFloat32 and
// BFloat16.Float32.
type BFloat16 uint16

// Element is every numeric KServe v2 datatype with its Go type:
//
//	BOOL bool     INT8 int8     INT16 int16    INT32 int32    INT64 int64
//	UINT8 uint8   UINT16 uint16 UINT32 uint32  UINT64 uint64
//	FP16 Float16  BF16 BFloat16 FP32 float32   FP64 float64
//
// BYTES (strings) is not an Element: its elements have no fixed size.
type Element interface {
	bool | int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64 | Float16 | BFloat16 | float32 | float64
}

// Datatype is the KServe v2 datatype of T ("INT32", "FP16", ...).
func Datatype[T Element]() string {
	var z T
	switch any(z).(type) {
	case bool:
		return "BOOL"
	case int8:
		return "INT8"
	case int16:
		return "INT16"
	case int32:
		return "INT32"
	case int64:
		return "INT64"
	case uint8:
		return "UINT8"
	case uint16:
		return "UINT16"
	case uint32:
		return "UINT32"
	case uint64:
		return "UINT64"
	case Float16:
		return "FP16"
	case BFloat16:
		return "BF16"
	case float32:
		return "FP32"
	default: // float64: Element allows nothing else
		return "FP64"
	}
}

// ElementSize is the size in bytes of one T in raw tensor contents.
func ElementSize[T Element]() int {
	var z T
	switch any(z).(type) {
	case bool, int8, uint8:
		return 1
	case int16, uint16, Float16, BFloat16:
		return 2
	case int32, uint32, float32:
		return 4
	default:
		return 8
	}
}

// EncodeRaw is data in KServe's raw tensor form (raw_input_contents, the
// binary data extension): elements little-endian, row-major, BOOL one byte
// each (0 or 1).
func EncodeRaw[T Element](data []T) []byte {
	out := make([]byte, 0, len(data)*ElementSize[T]())
	le := binary.LittleEndian
	switch d := any(data).(type) {
	case []bool:
		for _, v := range d {
			if v {
				out = append(out, 1)
			} else {
				out = append(out, 0)
			}
		}
	case []int8:
		for _, v := range d {
			out = append(out, byte(v))
		}
	case []uint8:
		out = append(out, d...)
	case []int16:
		for _, v := range d {
			out = le.AppendUint16(out, uint16(v))
		}
	case []uint16:
		for _, v := range d {
			out = le.AppendUint16(out, v)
		}
	case []Float16:
		for _, v := range d {
			out = le.AppendUint16(out, uint16(v))
		}
	case []BFloat16:
		for _, v := range d {
			out = le.AppendUint16(out, uint16(v))
		}
	case []int32:
		for _, v := range d {
			out = le.AppendUint32(out, uint32(v))
		}
	case []uint32:
		for _, v := range d {
			out = le.AppendUint32(out, v)
		}
	case []float32:
		for _, v := range d {
			out = le.AppendUint32(out, math.Float32bits(v))
		}
	case []int64:
		for _, v := range d {
			out = le.AppendUint64(out, uint64(v))
		}
	case []uint64:
		for _, v := range d {
			out = le.AppendUint64(out, v)
		}
	case []float64:
		for _, v := range d {
			out = le.AppendUint64(out, math.Float64bits(v))
		}
	}
	return out
}

// ErrRawLength is returned when raw contents are not a whole number of
// elements.
var ErrRawLength = errors.New("helixflow: raw tensor length is not a multiple of the element size")

// DecodeRaw reads raw tensor contents (see EncodeRaw) as []T.
func DecodeRaw[T Element](b []byte) ([]T, error) {
	size := ElementSize[T]()
	if len(b)%size != 0 {
		return nil, fmt.Errorf("%w: %d bytes of %s (%d bytes each)", ErrRawLength, len(b), Datatype[T](), size)
	}
	out := make([]T, len(b)/size)
	le := binary.LittleEndian
	switch o := any(out).(type) {
	case []bool:
		for i := range o {
			o[i] = b[i] != 0
		}
	case []int8:
		for i := range o {
			o[i] = int8(b[i])
		}
	case []uint8:
		copy(o, b)
	case []int16:
		for i := range o {
			o[i] = int16(le.Uint16(b[2*i:]))
		}
	case []uint16:
		for i := range o {
			o[i] = le.Uint16(b[2*i:])
		}
	case []Float16:
		for i := range o {
			o[i] = Float16(le.Uint16(b[2*i:]))
		}
	case []BFloat16:
		for i := range o {
			o[i] = BFloat16(le.Uint16(b[2*i:]))
		}
	case []int32:
		for i := range o {
			o[i] = int32(le.Uint32(b[4*i:]))
		}
	case []uint32:
		for i := range o {
			o[i] = le.Uint32(b[4*i:])
		}
	case []float32:
		for i := range o {
			o[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case []int64:
		for i := range o {
			o[i] = int64(le.Uint64(b[8*i:]))
		}
	case []uint64:
		for i := range o {
			o[i] = le.Uint64(b[8*i:])
		}
	case []float64:
		for i := range o {
			o[i] = math.Float64frombits(le.Uint64(b[8*i:]))
		}
	}
	return out, nil
}

// elements is the number of elements a shape holds.
func elements(shape []int64) (int, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("helixflow: shape %v has a negative dimension", shape)
		}
		if d != 0 && n > math.MaxInt32/d {
			return 0, fmt.Errorf("helixflow: shape %v is too large", shape)
		}
		n *= d
	}
	return int(n), nil
}

// AddInput appends the input tensor name of the given shape holding data
// (row-major) to req, its bytes in raw_input_contents. Every input of a
// request must then be raw: AddInput refuses a request whose earlier
// inputs carry typed contents instead.
func AddInput[T Element](req *inference.ModelInferRequest, name string, shape []int64, data []T) error {
	n, err := elements(shape)
	if err != nil {
		return fmt.Errorf("input %q: %w", name, err)
	}
	if n != len(data) {
		return fmt.Errorf("helixflow: input %q: shape %v holds %d elements, data has %d", name, shape, n, len(data))
	}
	if len(req.GetRawInputContents()) != len(req.GetInputs()) {
		return fmt.Errorf("helixflow: input %q: the request's other inputs are not raw (raw_input_contents is all or none)", name)
	}
	req.Inputs = append(req.Inputs, &inference.ModelInferRequest_InferInputTensor{
		Name: name, Datatype: Datatype[T](), Shape: append([]int64(nil), shape...),
	})
	req.RawInputContents = append(req.RawInputContents, EncodeRaw(data))
	return nil
}

// ErrNoOutput is returned by Output when the answer has no output of that
// name (ask for it in the request's outputs, or check the model's).
var ErrNoOutput = errors.New("helixflow: no such output")

// Output reads the output tensor name of resp as []T with its shape,
// from raw_output_contents (what the workers answer) or, if the answer has
// none, the typed contents. T must match the output's datatype.
func Output[T Element](resp *inference.ModelInferResponse, name string) ([]T, []int64, error) {
	idx := -1
	for i, o := range resp.GetOutputs() {
		if o.GetName() == name {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, nil, fmt.Errorf("%w: %q", ErrNoOutput, name)
	}
	o := resp.GetOutputs()[idx]
	if o.GetDatatype() != Datatype[T]() {
		return nil, nil, fmt.Errorf("helixflow: output %q is %s, read as %s", name, o.GetDatatype(), Datatype[T]())
	}
	n, err := elements(o.GetShape())
	if err != nil {
		return nil, nil, fmt.Errorf("output %q: %w", name, err)
	}
	var data []T
	if raw := resp.GetRawOutputContents(); len(raw) > 0 {
		if idx >= len(raw) {
			return nil, nil, fmt.Errorf("helixflow: output %q has no raw contents (%d outputs, %d raw)", name, len(resp.GetOutputs()), len(raw))
		}
		if data, err = DecodeRaw[T](raw[idx]); err != nil {
			return nil, nil, fmt.Errorf("output %q: %w", name, err)
		}
	} else if data, err = fromContents[T](o.GetContents()); err != nil {
		return nil, nil, fmt.Errorf("output %q: %w", name, err)
	}
	if len(data) != n {
		return nil, nil, fmt.Errorf("helixflow: output %q: shape %v holds %d elements, the answer has %d", name, o.GetShape(), n, len(data))
	}
	return data, o.GetShape(), nil
}

type number interface {
	int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64 | float32 | float64
}

func convert[D, S number](s []S) []D {
	out := make([]D, len(s))
	for i, v := range s {
		out[i] = D(v)
	}
	return out
}

// fromContents reads KServe's typed contents (int_contents holds INT8,
// INT16 and INT32, and so on). FP16 and BF16 have no typed field.
func fromContents[T Element](c *inference.InferTensorContents) ([]T, error) {
	var z T
	var out any
	switch any(z).(type) {
	case bool:
		out = append([]bool{}, c.GetBoolContents()...)
	case int8:
		out = convert[int8](c.GetIntContents())
	case int16:
		out = convert[int16](c.GetIntContents())
	case int32:
		out = append([]int32{}, c.GetIntContents()...)
	case int64:
		out = append([]int64{}, c.GetInt64Contents()...)
	case uint8:
		out = convert[uint8](c.GetUintContents())
	case uint16:
		out = convert[uint16](c.GetUintContents())
	case uint32:
		out = append([]uint32{}, c.GetUintContents()...)
	case uint64:
		out = append([]uint64{}, c.GetUint64Contents()...)
	case float32:
		out = append([]float32{}, c.GetFp32Contents()...)
	case float64:
		out = append([]float64{}, c.GetFp64Contents()...)
	default:
		return nil, fmt.Errorf("helixflow: %s has no typed contents in KServe v2; it travels raw only", Datatype[T]())
	}
	return out.([]T), nil
}

// Float16FromFloat32 rounds f to the nearest half-precision number (ties
// to even); beyond ±65504 it is ±Inf, NaN stays NaN.
func Float16FromFloat32(f float32) Float16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return Float16(sign | 0x7e00)
		}
		return Float16(sign | 0x7c00)
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return Float16(sign | 0x7c00)
	}
	if e <= 0 { // a subnormal half, or zero
		if e < -10 {
			return Float16(sign)
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		h := mant >> shift
		rem, mid := mant&(1<<shift-1), uint32(1)<<(shift-1)
		if rem > mid || (rem == mid && h&1 == 1) {
			h++
		}
		return Float16(sign | uint16(h))
	}
	h := uint32(e)<<10 | mant>>13
	if rem := mant & 0x1fff; rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is still right (up to Inf)
	}
	return Float16(sign | uint16(h))
}

// Float32 is h's exact value as a float32.
func (h Float16) Float32() float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		f := float32(mant) / (1 << 24)
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// BFloat16FromFloat32 rounds f to the nearest bfloat16 (ties to even); NaN
// stays NaN.
func BFloat16FromFloat32(f float32) BFloat16 {
	b := math.Float32bits(f)
	if f != f {
		return BFloat16(b>>16 | 0x40)
	}
	b += 0x7fff + (b>>16)&1
	return BFloat16(b >> 16)
}

// Float32 is h's exact value as a float32.
func (h BFloat16) Float32() float32 { return math.Float32frombits(uint32(h) << 16) }
