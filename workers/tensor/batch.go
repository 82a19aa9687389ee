package tensor

import (
	"fmt"
	"slices"
)

// Concat joins tensors of the same name, datatype and per-item shape along
// their first (batch) dimension.
func Concat(parts []Tensor) (Tensor, error) {
	if len(parts) == 0 {
		return Tensor{}, fmt.Errorf("%w: nothing to concatenate", ErrInvalid)
	}
	first := parts[0]
	if len(parts) == 1 {
		return first, nil
	}
	if len(first.Shape) == 0 {
		return Tensor{}, fmt.Errorf("%w: tensor %q has no batch dimension", ErrInvalid, first.Name)
	}
	var batch int64
	size := 0
	for _, p := range parts {
		if p.DataType != first.DataType {
			return Tensor{}, fmt.Errorf("%w: tensor %q: cannot batch %s with %s", ErrInvalid, first.Name, p.DataType, first.DataType)
		}
		if len(p.Shape) != len(first.Shape) || !slices.Equal(p.Shape[1:], first.Shape[1:]) {
			return Tensor{}, fmt.Errorf("%w: tensor %q: cannot batch shape %v with %v", ErrInvalid, first.Name, p.Shape, first.Shape)
		}
		batch += p.Shape[0]
		size += len(p.Data)
	}
	data := make([]byte, 0, size)
	for _, p := range parts {
		data = append(data, p.Data...)
	}
	shape := slices.Clone(first.Shape)
	shape[0] = batch
	return Tensor{Name: first.Name, DataType: first.DataType, Shape: shape, Data: data}, nil
}

// Split cuts t along its first dimension into pieces of the given sizes,
// which must add up to t.Shape[0]. Fixed-size pieces alias t.Data.
func Split(t Tensor, sizes []int64) ([]Tensor, error) {
	if len(t.Shape) == 0 {
		return nil, fmt.Errorf("%w: tensor %q has no batch dimension", ErrInvalid, t.Name)
	}
	var total int64
	for _, s := range sizes {
		if s < 0 {
			return nil, fmt.Errorf("%w: negative split size %d", ErrInvalid, s)
		}
		total += s
	}
	if total != t.Shape[0] {
		return nil, fmt.Errorf("%w: tensor %q has batch %d, split asks for %d", ErrInvalid, t.Name, t.Shape[0], total)
	}
	perItem, err := ElementCount(t.Shape[1:])
	if err != nil {
		return nil, err
	}
	out := make([]Tensor, 0, len(sizes))
	off := 0
	for _, s := range sizes {
		shape := slices.Clone(t.Shape)
		shape[0] = s
		var n int
		if t.DataType == Bytes {
			n, err = bytesPrefix(t.Data[off:], s*perItem)
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
			}
		} else {
			n = int(s * perItem * int64(t.DataType.ElementSize()))
			if off+n > len(t.Data) {
				return nil, fmt.Errorf("%w: tensor %q has %d bytes, split needs %d", ErrInvalid, t.Name, len(t.Data), off+n)
			}
		}
		out = append(out, Tensor{Name: t.Name, DataType: t.DataType, Shape: shape, Data: t.Data[off : off+n : off+n]})
		off += n
	}
	return out, nil
}
