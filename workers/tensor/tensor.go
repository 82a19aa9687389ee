// Package tensor holds the worker's protocol-neutral tensor: a name, a KServe
// datatype, a shape and the raw little-endian bytes, as the KServe v2 binary
// formats carry them. Keeping one flat byte layout everywhere lets the
// scheduler concatenate and split batches without knowing element types.
package tensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// DataType is a KServe v2 datatype name ("FP32", "BYTES", ...).
type DataType string

// The KServe v2 datatypes.
const (
	Bool   DataType = "BOOL"
	Uint8  DataType = "UINT8"
	Uint16 DataType = "UINT16"
	Uint32 DataType = "UINT32"
	Uint64 DataType = "UINT64"
	Int8   DataType = "INT8"
	Int16  DataType = "INT16"
	Int32  DataType = "INT32"
	Int64  DataType = "INT64"
	FP16   DataType = "FP16"
	BF16   DataType = "BF16"
	FP32   DataType = "FP32"
	FP64   DataType = "FP64"
	Bytes  DataType = "BYTES"
)

var elementSizes = map[DataType]int{
	Bool: 1, Uint8: 1, Uint16: 2, Uint32: 4, Uint64: 8,
	Int8: 1, Int16: 2, Int32: 4, Int64: 8,
	FP16: 2, BF16: 2, FP32: 4, FP64: 8,
	Bytes: 0,
}

// ErrInvalid is wrapped by every validation error of this package.
var ErrInvalid = errors.New("invalid tensor")

// ParseDataType returns the DataType named s, or an error naming s.
func ParseDataType(s string) (DataType, error) {
	d := DataType(s)
	if _, ok := elementSizes[d]; !ok {
		return "", fmt.Errorf("%w: unknown datatype %q", ErrInvalid, s)
	}
	return d, nil
}

// Valid reports whether d is a KServe datatype.
func (d DataType) Valid() bool {
	_, ok := elementSizes[d]
	return ok
}

// ElementSize is the size in bytes of one element, 0 for BYTES (variable).
func (d DataType) ElementSize() int { return elementSizes[d] }

// Tensor is one named input or output. Data holds the elements in row-major
// little-endian order; for BYTES each element is a 4-byte little-endian length
// followed by that many bytes (Triton's serialization).
type Tensor struct {
	Name     string
	DataType DataType
	Shape    []int64
	Data     []byte
}

// ElementCount is the product of shape, rejecting negative dims and overflow.
func ElementCount(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: dimension %d of shape %v is negative", ErrInvalid, i, shape)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("%w: shape %v has too many elements", ErrInvalid, shape)
		}
		n *= d
	}
	return n, nil
}

// ByteSize is the size Data must have for a fixed-size datatype.
func ByteSize(d DataType, shape []int64) (int64, error) {
	n, err := ElementCount(shape)
	if err != nil {
		return 0, err
	}
	size := int64(d.ElementSize())
	if size != 0 && n > math.MaxInt64/size {
		return 0, fmt.Errorf("%w: shape %v is too large", ErrInvalid, shape)
	}
	return n * size, nil
}

// Validate checks that Data matches DataType and Shape.
func (t *Tensor) Validate() error {
	if !t.DataType.Valid() {
		return fmt.Errorf("%w: tensor %q has unknown datatype %q", ErrInvalid, t.Name, t.DataType)
	}
	n, err := ElementCount(t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if t.DataType == Bytes {
		if _, err := CountBytesElements(t.Data, n); err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		return nil
	}
	want, _ := ByteSize(t.DataType, t.Shape)
	if int64(len(t.Data)) != want {
		return fmt.Errorf("%w: tensor %q has %d bytes of data, shape %v of %s needs %d",
			ErrInvalid, t.Name, len(t.Data), t.Shape, t.DataType, want)
	}
	return nil
}

// EncodeBytes serializes BYTES elements as Triton does.
func EncodeBytes(elems [][]byte) []byte {
	size := 0
	for _, e := range elems {
		size += 4 + len(e)
	}
	out := make([]byte, 0, size)
	for _, e := range elems {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(e)))
		out = append(out, e...)
	}
	return out
}

// DecodeBytes parses exactly n serialized BYTES elements that fill data.
// The returned slices alias data.
func DecodeBytes(data []byte, n int64) ([][]byte, error) {
	// Every element needs at least its 4-byte length prefix.
	if n < 0 || n > int64(len(data)/4) {
		return nil, fmt.Errorf("%w: %d BYTES elements cannot fit in %d bytes", ErrInvalid, n, len(data))
	}
	out := make([][]byte, 0, n)
	rest := data
	for i := int64(0); i < n; i++ {
		e, r, err := nextBytesElement(rest, i)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		rest = r
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes left after %d BYTES elements", ErrInvalid, len(rest), n)
	}
	return out, nil
}

// CountBytesElements checks that data holds exactly n serialized elements and
// returns the total size of their payloads.
func CountBytesElements(data []byte, n int64) (int64, error) {
	var payload int64
	rest := data
	for i := int64(0); i < n; i++ {
		e, r, err := nextBytesElement(rest, i)
		if err != nil {
			return 0, err
		}
		payload += int64(len(e))
		rest = r
	}
	if len(rest) != 0 {
		return 0, fmt.Errorf("%w: %d bytes left after %d BYTES elements", ErrInvalid, len(rest), n)
	}
	return payload, nil
}

// bytesPrefix returns the byte length of the first n serialized elements.
func bytesPrefix(data []byte, n int64) (int, error) {
	off := 0
	for i := int64(0); i < n; i++ {
		_, r, err := nextBytesElement(data[off:], i)
		if err != nil {
			return 0, err
		}
		off = len(data) - len(r)
	}
	return off, nil
}

func nextBytesElement(b []byte, index int64) (elem, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: BYTES element %d: length prefix runs past the end of the data", ErrInvalid, index)
	}
	l := binary.LittleEndian.Uint32(b)
	if uint64(l) > uint64(len(b)-4) {
		return nil, nil, fmt.Errorf("%w: BYTES element %d: length %d runs past the end of the data (%d bytes left)",
			ErrInvalid, index, l, len(b)-4)
	}
	return b[4 : 4+int(l)], b[4+int(l):], nil
}
