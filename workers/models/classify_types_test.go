package models

import (
	"encoding/binary"
	"math"
	"reflect"
	"testing"

	"github.com/helixflow/helixflow/workers/tensor"
)

// TestClassifyElementTypes: every numeric type is read in its own width and
// signedness, and printed as Triton prints it (integers as integers, floats
// with %f); NaN sorts last.
func TestClassifyElementTypes(t *testing.T) {
	le16 := func(v ...uint16) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint16(b, x)
		}
		return b
	}
	le32 := func(v ...uint32) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, x)
		}
		return b
	}
	le64 := func(v ...uint64) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint64(b, x)
		}
		return b
	}
	fp16 := func(f float64) uint16 { h, _ := tensor.Float64ToFP16(f); return h }
	bf16 := func(f float64) uint16 { h, _ := tensor.Float64ToBF16(f); return h }
	neg := func(v int64) uint64 { return uint64(v) }
	tests := []struct {
		dt   tensor.DataType
		data []byte
		want []string
	}{
		{tensor.Int8, []byte{0xff, 0x05, 0x80}, []string{"5:1", "-1:0", "-128:2"}},
		{tensor.Int16, le16(0xfffe, 300, 0), []string{"300:1", "0:2", "-2:0"}},
		{tensor.Int64, le64(neg(-7), 1<<40, 3), []string{"1099511627776:1", "3:2", "-7:0"}},
		{tensor.Uint8, []byte{200, 7, 255}, []string{"255:2", "200:0", "7:1"}},
		{tensor.Uint16, le16(65535, 1, 2), []string{"65535:0", "2:2", "1:1"}},
		{tensor.Uint32, le32(4000000000, 5, 6), []string{"4000000000:0", "6:2", "5:1"}},
		{tensor.Uint64, le64(math.MaxUint64, 0, 9), []string{"18446744073709551615:0", "9:2", "0:1"}},
		{tensor.FP16, le16(fp16(0.5), fp16(-2), fp16(1.5)), []string{"1.500000:2", "0.500000:0", "-2.000000:1"}},
		{tensor.BF16, le16(bf16(3), bf16(-1), bf16(0.25)), []string{"3.000000:0", "0.250000:2", "-1.000000:1"}},
		{tensor.FP64, le64(math.Float64bits(math.NaN()), math.Float64bits(-1), math.Float64bits(2.5)),
			[]string{"2.500000:2", "-1.000000:1", "nan:0"}},
		// As C's printf %f (std::to_string) prints them, not Go's NaN/+Inf.
		{tensor.FP32, le32(math.Float32bits(float32(math.Inf(-1))), math.Float32bits(float32(math.NaN())), math.Float32bits(float32(math.Inf(1)))),
			[]string{"inf:2", "-inf:0", "nan:1"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.dt), func(t *testing.T) {
			out, err := classify(tensor.Tensor{Name: "P", DataType: tt.dt, Shape: []int64{3}, Data: tt.data}, 3, false)
			if err != nil {
				t.Fatal(err)
			}
			elems, err := tensor.DecodeBytes(out.Data, 3)
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
}
