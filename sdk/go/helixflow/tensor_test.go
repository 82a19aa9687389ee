package helixflow

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/sdk/go/inference"
)

// roundTrip puts data into a request as AddInput does and reads it back as
// an answer's output with Output, as a worker echoing it would answer.
func roundTrip[T Element](t *testing.T, data []T, wantType string, wantBytes int) {
	t.Helper()
	req := &inference.ModelInferRequest{ModelName: "m"}
	if err := AddInput(req, "IN", []int64{1, int64(len(data))}, data); err != nil {
		t.Fatal(err)
	}
	in := req.GetInputs()[0]
	if in.GetDatatype() != wantType {
		t.Fatalf("datatype %s, want %s", in.GetDatatype(), wantType)
	}
	if got := len(req.GetRawInputContents()[0]); got != wantBytes {
		t.Fatalf("%d raw bytes, want %d", got, wantBytes)
	}
	resp := &inference.ModelInferResponse{
		Outputs:           []*inference.ModelInferResponse_InferOutputTensor{{Name: "OUT", Datatype: in.GetDatatype(), Shape: in.GetShape()}},
		RawOutputContents: req.GetRawInputContents(),
	}
	got, shape, err := Output[T](resp, "OUT")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, data) || !reflect.DeepEqual(shape, []int64{1, int64(len(data))}) {
		t.Fatalf("got %v %v, want %v", got, shape, data)
	}
}

func TestRoundTripEveryDatatype(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"BOOL", func(t *testing.T) { roundTrip(t, []bool{true, false, true}, "BOOL", 3) }},
		{"INT8", func(t *testing.T) { roundTrip(t, []int8{-128, 0, 127}, "INT8", 3) }},
		{"INT16", func(t *testing.T) { roundTrip(t, []int16{-32768, 1, 32767}, "INT16", 6) }},
		{"INT32", func(t *testing.T) { roundTrip(t, []int32{math.MinInt32, -1, math.MaxInt32}, "INT32", 12) }},
		{"INT64", func(t *testing.T) { roundTrip(t, []int64{math.MinInt64, 2, math.MaxInt64}, "INT64", 24) }},
		{"UINT8", func(t *testing.T) { roundTrip(t, []uint8{0, 1, 255}, "UINT8", 3) }},
		{"UINT16", func(t *testing.T) { roundTrip(t, []uint16{0, 1, 65535}, "UINT16", 6) }},
		{"UINT32", func(t *testing.T) { roundTrip(t, []uint32{0, 1, math.MaxUint32}, "UINT32", 12) }},
		{"UINT64", func(t *testing.T) { roundTrip(t, []uint64{0, 1, math.MaxUint64}, "UINT64", 24) }},
		{"FP16", func(t *testing.T) { roundTrip(t, []Float16{0x3c00, 0xc000, 0x7bff}, "FP16", 6) }},
		{"BF16", func(t *testing.T) { roundTrip(t, []BFloat16{0x3f80, 0xc000, 0x7f7f}, "BF16", 6) }},
		{"FP32", func(t *testing.T) { roundTrip(t, []float32{-1.5, 0, math.MaxFloat32}, "FP32", 12) }},
		{"FP64", func(t *testing.T) { roundTrip(t, []float64{-1.5, 0, math.MaxFloat64}, "FP64", 24) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

func TestEncodeRawIsLittleEndian(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"int32", EncodeRaw([]int32{1, -2}), []byte{1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff}},
		{"uint16", EncodeRaw([]uint16{0x0102}), []byte{2, 1}},
		{"fp32", EncodeRaw([]float32{1}), []byte{0, 0, 0x80, 0x3f}},
		{"bool", EncodeRaw([]bool{true, false}), []byte{1, 0}},
		{"fp16", EncodeRaw([]Float16{Float16FromFloat32(1)}), []byte{0, 0x3c}},
	}
	for _, tc := range tests {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestFloat16(t *testing.T) {
	tests := []struct {
		in   float32
		bits Float16
		back float32
	}{
		{0, 0x0000, 0},
		{1, 0x3c00, 1},
		{-2, 0xc000, -2},
		{0.5, 0x3800, 0.5},
		{65504, 0x7bff, 65504},
		{65520, 0x7c00, float32(math.Inf(1))}, // rounds past the largest: Inf
		{1e6, 0x7c00, float32(math.Inf(1))},
		{float32(math.Inf(-1)), 0xfc00, float32(math.Inf(-1))},
		{5.960464477539063e-08, 0x0001, 5.960464477539063e-08}, // smallest subnormal
		{6.103515625e-05, 0x0400, 6.103515625e-05},             // smallest normal
		{1e-9, 0x0000, 0},                    // underflow
		{1.0009765625, 0x3c01, 1.0009765625}, // 1 + 2^-10
		{1.00048828125, 0x3c00, 1},           // a tie: to even
		{1.00146484375, 0x3c02, 1.001953125}, // a tie: to even (up)
	}
	for _, tc := range tests {
		got := Float16FromFloat32(tc.in)
		if got != tc.bits {
			t.Errorf("Float16FromFloat32(%g) = %#04x, want %#04x", tc.in, uint16(got), uint16(tc.bits))
		}
		if back := got.Float32(); back != tc.back {
			t.Errorf("%#04x.Float32() = %g, want %g", uint16(got), back, tc.back)
		}
	}
	if nan := Float16FromFloat32(float32(math.NaN())); !math.IsNaN(float64(nan.Float32())) {
		t.Errorf("NaN became %#04x", uint16(nan))
	}
}

func TestBFloat16(t *testing.T) {
	tests := []struct {
		in   float32
		bits BFloat16
		back float32
	}{
		{0, 0x0000, 0},
		{1, 0x3f80, 1},
		{-2, 0xc000, -2},
		{3.140625, 0x4049, 3.140625},
		{1.00390625, 0x3f80, 1},        // a tie: to even (down)
		{1.01171875, 0x3f82, 1.015625}, // a tie: to even (up)
		{float32(math.Inf(1)), 0x7f80, float32(math.Inf(1))},
	}
	for _, tc := range tests {
		got := BFloat16FromFloat32(tc.in)
		if got != tc.bits {
			t.Errorf("BFloat16FromFloat32(%g) = %#04x, want %#04x", tc.in, uint16(got), uint16(tc.bits))
		}
		if back := got.Float32(); back != tc.back {
			t.Errorf("%#04x.Float32() = %g, want %g", uint16(got), back, tc.back)
		}
	}
	if nan := BFloat16FromFloat32(float32(math.NaN())); !math.IsNaN(float64(nan.Float32())) {
		t.Errorf("NaN became %#04x", uint16(nan))
	}
}

func TestAddInputErrors(t *testing.T) {
	tests := []struct {
		name  string
		req   *inference.ModelInferRequest
		shape []int64
		data  []int32
		want  string
	}{
		{"shape and data disagree", &inference.ModelInferRequest{}, []int64{1, 16}, make([]int32, 15), "holds 16 elements, data has 15"},
		{"negative dimension", &inference.ModelInferRequest{}, []int64{-1, 4}, make([]int32, 4), "negative dimension"},
		{"too large", &inference.ModelInferRequest{}, []int64{1 << 40, 1 << 40}, nil, "too large"},
		{"others not raw", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "A"}}}, []int64{1}, []int32{1}, "all or none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := AddInput(tc.req, "X", tc.shape, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestOutput(t *testing.T) {
	out := func(dt string, shape ...int64) []*inference.ModelInferResponse_InferOutputTensor {
		return []*inference.ModelInferResponse_InferOutputTensor{{Name: "OUT", Datatype: dt, Shape: shape}}
	}
	tests := []struct {
		name    string
		resp    *inference.ModelInferResponse
		want    []int32
		wantErr string
	}{
		{"raw", &inference.ModelInferResponse{Outputs: out("INT32", 2), RawOutputContents: [][]byte{EncodeRaw([]int32{7, 8})}}, []int32{7, 8}, ""},
		{"typed contents", &inference.ModelInferResponse{Outputs: []*inference.ModelInferResponse_InferOutputTensor{{
			Name: "OUT", Datatype: "INT32", Shape: []int64{2}, Contents: &inference.InferTensorContents{IntContents: []int32{3, 4}}}}}, []int32{3, 4}, ""},
		{"no such output", &inference.ModelInferResponse{Outputs: out("INT32", 2)}, nil, "no such output"},
		{"wrong type", &inference.ModelInferResponse{Outputs: out("FP32", 2), RawOutputContents: [][]byte{make([]byte, 8)}}, nil, "is FP32, read as INT32"},
		{"short raw", &inference.ModelInferResponse{Outputs: out("INT32", 2), RawOutputContents: [][]byte{make([]byte, 6)}}, nil, "not a multiple"},
		{"shape disagrees", &inference.ModelInferResponse{Outputs: out("INT32", 3), RawOutputContents: [][]byte{make([]byte, 8)}}, nil, "holds 3 elements, the answer has 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := "OUT"
			if tc.name == "no such output" {
				name = "OTHER"
			}
			got, _, err := Output[int32](tc.resp, name)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				if tc.name == "no such output" && !errors.Is(err, ErrNoOutput) {
					t.Fatalf("%v is not ErrNoOutput", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestFP16HasNoTypedContents(t *testing.T) {
	resp := &inference.ModelInferResponse{Outputs: []*inference.ModelInferResponse_InferOutputTensor{{Name: "OUT", Datatype: "FP16", Shape: []int64{1}}}}
	if _, _, err := Output[Float16](resp, "OUT"); err == nil || !strings.Contains(err.Error(), "raw only") {
		t.Fatalf("err %v", err)
	}
}

// FuzzDecodeRaw: any bytes either decode to whole elements that encode
// back to the same bytes (BOOL: to 0 or 1), or are refused with ErrRawLength.
func FuzzDecodeRaw(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(err error, again []byte) {
			if err != nil {
				if !errors.Is(err, ErrRawLength) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if !reflect.DeepEqual(again, b) && len(b) > 0 {
				t.Fatalf("%v re-encoded as %v", b, again)
			}
		}
		i32, err := DecodeRaw[int32](b)
		check(err, EncodeRaw(i32))
		f64, err := DecodeRaw[uint64](b)
		check(err, EncodeRaw(f64))
		h, err := DecodeRaw[Float16](b)
		check(err, EncodeRaw(h))
		if bs, err := DecodeRaw[bool](b); err != nil || len(bs) != len(b) {
			t.Fatalf("bool: %v, %d of %d", err, len(bs), len(b))
		}
	})
}
