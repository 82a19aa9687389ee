package onnxruntime

import (
	"slices"

	ort "github.com/yalue/onnxruntime_go"
)

// stageLimit is the largest tensor, in bytes, that an instance copies
// through a buffer it keeps rather than giving ORT a value made for the run:
// up to this size the copy costs less than creating and releasing an ORT
// value (two cgo calls and a few allocations).
const stageLimit = 16 << 10

// stage is an ORT value over a Go buffer that an instance keeps from run to
// run for one input or output, as long as the tensors through it keep their
// shape. Only the instance's Execute uses it, one call at a time.
type stage struct {
	shape []int64
	data  []byte // len is the tensor's byte size
	value *ort.CustomDataTensor
}

// fit returns the stage's value for a tensor of this shape and byte size,
// replacing the value if the shape changed.
func (s *stage) fit(shape []int64, size int, elem ort.TensorElementDataType) (*ort.CustomDataTensor, error) {
	if s.value != nil && slices.Equal(s.shape, shape) {
		return s.value, nil
	}
	s.release()
	// ORT wants a buffer even for a tensor with no elements.
	buf := make([]byte, max(size, 1))
	v, err := ort.NewCustomDataTensor(ort.NewShape(slices.Clone(shape)...), buf, elem)
	if err != nil {
		return nil, err
	}
	*s = stage{shape: slices.Clone(shape), data: buf[:size], value: v}
	return v, nil
}

// holds reports whether v is the stage's value.
func (s *stage) holds(v ort.Value) bool {
	return s.value != nil && v == ort.Value(s.value)
}

func (s *stage) release() {
	if s.value != nil {
		s.value.Destroy()
	}
	*s = stage{}
}
