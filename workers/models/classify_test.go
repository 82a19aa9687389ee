package models

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

func le[T int32 | uint8 | float32](vals ...T) []byte {
	var out []byte
	for _, v := range vals {
		switch x := any(v).(type) {
		case int32:
			out = binary.LittleEndian.AppendUint32(out, uint32(x))
		case uint8:
			out = append(out, x)
		case float32:
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(x))
		}
	}
	return out
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		in        tensor.Tensor
		k         uint64
		batched   bool
		wantShape []int64
		want      []string
	}{
		{"batched", tensor.Tensor{DataType: tensor.FP32, Shape: []int64{2, 4}, Data: le[float32](1.1, 3.3, 0.5, 2.4, 4, 3, 2, 1)}, 2, true,
			[]int64{2, 2}, []string{"3.300000:1", "2.400000:3", "4.000000:0", "3.000000:1"}},
		{"unbatched", tensor.Tensor{DataType: tensor.FP32, Shape: []int64{4}, Data: le[float32](1.1, 3.3, 0.5, 2.4)}, 2, false,
			[]int64{2}, []string{"3.300000:1", "2.400000:3"}},
		{"k larger than classes", tensor.Tensor{DataType: tensor.Int32, Shape: []int64{3}, Data: le[int32](-5, 7, 0)}, 10, false,
			[]int64{3}, []string{"7:1", "0:2", "-5:0"}},
		{"ties keep index order", tensor.Tensor{DataType: tensor.Uint8, Shape: []int64{1, 3}, Data: le[uint8](2, 9, 9)}, 3, true,
			[]int64{1, 3}, []string{"9:1", "9:2", "2:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Name = "P"
			out, err := classify(tt.in, tt.k, tt.batched)
			if err != nil {
				t.Fatal(err)
			}
			if out.DataType != tensor.Bytes || !reflect.DeepEqual(out.Shape, tt.wantShape) {
				t.Fatalf("output %s %v", out.DataType, out.Shape)
			}
			elems, err := tensor.DecodeBytes(out.Data, int64(len(tt.want)))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range elems {
				got = append(got, string(e))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("classes %q, want %q", got, tt.want)
			}
		})
	}
	_, err := classify(tensor.Tensor{Name: "S", DataType: tensor.Bytes, Shape: []int64{1}, Data: tensor.EncodeBytes([][]byte{[]byte("a")})}, 1, false)
	if infer.CodeOf(err) != infer.CodeInvalidArgument || !strings.Contains(err.Error(), "unsupported type 'BYTES'") {
		t.Fatalf("BYTES classification: %v", err)
	}
}

func TestInferClassification(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	m := newManager(t, root, ModeNone, &fakeBackend{})
	req := simpleRequest("simple")
	req.Outputs = []infer.RequestedOutput{{Name: "OUTPUT0", Parameters: map[string]any{"classification": int64(2)}}}
	resp, err := m.Infer(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	out := resp.Outputs[0]
	elems, err := tensor.DecodeBytes(out.Data, 2)
	if err != nil || !reflect.DeepEqual(out.Shape, []int64{1, 2}) || string(elems[0]) != "1005:3" || string(elems[1]) != "1004:2" {
		t.Fatalf("classification output %v %q %v", out.Shape, elems, err)
	}
}
