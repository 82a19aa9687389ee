package grpcapi

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/helixflow/helixflow/proto/inference"
)

// TestModelInferContents sends every datatype both as typed contents and as
// raw contents and checks the bytes the service receives. Expected bytes are
// written out by hand (little-endian) so the test does not share the
// encoder's logic.
func TestModelInferContents(t *testing.T) {
	cases := []struct {
		datatype string
		contents *pb.InferTensorContents // nil: raw only (FP16, BF16)
		want     []byte
	}{
		{"BOOL", &pb.InferTensorContents{BoolContents: []bool{true, false}}, []byte{1, 0}},
		{"INT8", &pb.InferTensorContents{IntContents: []int32{-1, 127}}, []byte{0xff, 0x7f}},
		{"INT16", &pb.InferTensorContents{IntContents: []int32{-2, 300}}, []byte{0xfe, 0xff, 0x2c, 0x01}},
		{"INT32", &pb.InferTensorContents{IntContents: []int32{-1, 2}}, []byte{0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0}},
		{"INT64", &pb.InferTensorContents{Int64Contents: []int64{-2, 1 << 40}},
			[]byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1, 0, 0}},
		{"UINT8", &pb.InferTensorContents{UintContents: []uint32{255, 1}}, []byte{0xff, 1}},
		{"UINT16", &pb.InferTensorContents{UintContents: []uint32{65535, 2}}, []byte{0xff, 0xff, 2, 0}},
		{"UINT32", &pb.InferTensorContents{UintContents: []uint32{0xdeadbeef, 1}}, []byte{0xef, 0xbe, 0xad, 0xde, 1, 0, 0, 0}},
		{"UINT64", &pb.InferTensorContents{Uint64Contents: []uint64{1 << 63, 3}},
			[]byte{0, 0, 0, 0, 0, 0, 0, 0x80, 3, 0, 0, 0, 0, 0, 0, 0}},
		{"FP32", &pb.InferTensorContents{Fp32Contents: []float32{1, -2.5}}, []byte{0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0}},
		{"FP64", &pb.InferTensorContents{Fp64Contents: []float64{1, -2}},
			[]byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0xc0}},
		{"BYTES", &pb.InferTensorContents{BytesContents: [][]byte{[]byte("ab"), {}}}, []byte{2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0}},
		{"FP16", nil, []byte{0x00, 0x3c, 0x00, 0xc0}},
		{"BF16", nil, []byte{0x80, 0x3f, 0x00, 0xc0}},
	}
	svc := newFakeService()
	c := startServer(t, svc).infer
	for _, tc := range cases {
		for _, raw := range []bool{false, true} {
			if !raw && tc.contents == nil {
				continue
			}
			name := tc.datatype + "/typed"
			if raw {
				name = tc.datatype + "/raw"
			}
			t.Run(name, func(t *testing.T) {
				in := &pb.ModelInferRequest_InferInputTensor{Name: "X", Datatype: tc.datatype, Shape: []int64{1, 2}}
				req := &pb.ModelInferRequest{ModelName: "simple", Inputs: []*pb.ModelInferRequest_InferInputTensor{in}}
				if raw {
					req.RawInputContents = [][]byte{tc.want}
				} else {
					in.Contents = tc.contents
				}
				resp, err := c.ModelInfer(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				got := svc.lastRequest().Inputs[0]
				if string(got.DataType) != tc.datatype || !equalShape(got.Shape, []int64{1, 2}) || !bytes.Equal(got.Data, tc.want) {
					t.Fatalf("service got %s %v %x, want %s [1 2] %x", got.DataType, got.Shape, got.Data, tc.datatype, tc.want)
				}
				// Outputs always come back raw, whatever the request used.
				if out := resp.GetOutputs()[0]; out.GetDatatype() != tc.datatype || out.GetContents() != nil ||
					!bytes.Equal(resp.GetRawOutputContents()[0], tc.want) {
					t.Fatalf("response output %v raw %x", out, resp.GetRawOutputContents()[0])
				}
			})
		}
	}
}

func TestModelInferInvalidRequests(t *testing.T) {
	fp32 := func(name string, shape ...int64) *pb.ModelInferRequest_InferInputTensor {
		return &pb.ModelInferRequest_InferInputTensor{Name: name, Datatype: "FP32", Shape: shape}
	}
	typed := func(in *pb.ModelInferRequest_InferInputTensor, c *pb.InferTensorContents) *pb.ModelInferRequest_InferInputTensor {
		in.Contents = c
		return in
	}
	withDatatype := func(in *pb.ModelInferRequest_InferInputTensor, dt string) *pb.ModelInferRequest_InferInputTensor {
		in.Datatype = dt
		return in
	}
	i64 := func(v int64) *pb.InferParameter {
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: v}}
	}
	str := func(v string) *pb.InferParameter {
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_StringParam{StringParam: v}}
	}
	u64 := func(v uint64) *pb.InferParameter {
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: v}}
	}
	eight := make([]byte, 8)

	cases := []struct {
		name string
		req  *pb.ModelInferRequest
		code codes.Code
		msg  string
	}{
		{"missing input name",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("", 2)}, RawInputContents: [][]byte{eight}},
			codes.InvalidArgument, "input 0 for model 'm' has no name"},
		{"missing datatype",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{withDatatype(fp32("X", 2), "")}, RawInputContents: [][]byte{eight}},
			codes.InvalidArgument, "input 'X' for model 'm' has no datatype"},
		{"bad datatype",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{withDatatype(fp32("X", 2), "FLOAT32")}, RawInputContents: [][]byte{eight}},
			codes.InvalidArgument, "input 'X' for model 'm' has unknown datatype 'FLOAT32'"},
		{"missing shape",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X")}, RawInputContents: [][]byte{eight}},
			codes.InvalidArgument, "input 'X' for model 'm' has no shape"},
		{"negative dimension",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", -1, 2)}, RawInputContents: [][]byte{eight}},
			codes.InvalidArgument, "input 'X' for model 'm' has invalid shape [-1 2]"},
		{"shape overflows",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 1<<40, 1<<40)}, RawInputContents: [][]byte{eight}},
			codes.InvalidArgument, "input 'X' for model 'm' has invalid shape"},
		{"raw size mismatch",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 3)}, RawInputContents: [][]byte{eight}},
			codes.InvalidArgument, "input byte size mismatch for input 'X' for model 'm'. Expected 12, got 8"},
		{"typed count mismatch",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{typed(fp32("X", 3), &pb.InferTensorContents{Fp32Contents: []float32{1}})}},
			codes.InvalidArgument, "input byte size mismatch for input 'X' for model 'm'. Expected 12, got 4"},
		{"mixed raw and typed",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2), typed(fp32("Y", 1), &pb.InferTensorContents{Fp32Contents: []float32{1}})},
				RawInputContents: [][]byte{eight}},
			codes.InvalidArgument, "contents field must not be specified when using raw_input_contents for 'Y' for model 'm'"},
		{"too many raw contents",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2)}, RawInputContents: [][]byte{eight, eight}},
			codes.InvalidArgument, "request for model 'm' has 2 raw_input_contents entries but only 1 inputs"},
		{"too few raw contents",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2), fp32("Y", 2)}, RawInputContents: [][]byte{eight}},
			codes.InvalidArgument, "unable to find data for input tensor 'Y' for model 'm' in request."},
		{"no data",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2)}},
			codes.InvalidArgument, "unable to find data for input tensor 'X' for model 'm' in request."},
		{"duplicate input",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2), fp32("X", 2)}, RawInputContents: [][]byte{eight, eight}},
			codes.InvalidArgument, "input 'X' for model 'm' is given more than once"},
		{"INT8 out of range",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{typed(withDatatype(fp32("X", 2), "INT8"), &pb.InferTensorContents{IntContents: []int32{1, 128}})}},
			codes.InvalidArgument, "input 'X' for model 'm': int_contents[1] = 128 is out of range for INT8"},
		{"INT16 out of range",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{typed(withDatatype(fp32("X", 1), "INT16"), &pb.InferTensorContents{IntContents: []int32{-40000}})}},
			codes.InvalidArgument, "int_contents[0] = -40000 is out of range for INT16"},
		{"UINT8 out of range",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{typed(withDatatype(fp32("X", 1), "UINT8"), &pb.InferTensorContents{UintContents: []uint32{256}})}},
			codes.InvalidArgument, "uint_contents[0] = 256 is out of range for UINT8"},
		{"UINT16 out of range",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{typed(withDatatype(fp32("X", 1), "UINT16"), &pb.InferTensorContents{UintContents: []uint32{70000}})}},
			codes.InvalidArgument, "uint_contents[0] = 70000 is out of range for UINT16"},
		{"contents of another type",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{typed(fp32("X", 1), &pb.InferTensorContents{Int64Contents: []int64{1}})}},
			codes.InvalidArgument, "unexpected explicit tensor data for input tensor 'X' for model 'm' of type 'INT64', expected datatype 'FP32'"},
		{"two contents fields",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{typed(fp32("X", 1), &pb.InferTensorContents{Fp32Contents: []float32{1}, BoolContents: []bool{true}})}},
			codes.InvalidArgument, "of type 'BOOL', expected datatype 'FP32'"},
		{"FP16 typed",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{typed(withDatatype(fp32("X", 1), "FP16"), &pb.InferTensorContents{Fp32Contents: []float32{1}})}},
			codes.InvalidArgument, "input 'X' for model 'm' of type 'FP16' has no typed contents field; send it in raw_input_contents"},
		{"BYTES element count",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{typed(withDatatype(fp32("X", 3), "BYTES"), &pb.InferTensorContents{BytesContents: [][]byte{[]byte("a")}})}},
			codes.InvalidArgument, "expected 3 string elements for inference input 'X' for model 'm', got 1"},
		{"BYTES malformed",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{withDatatype(fp32("X", 1), "BYTES")}, RawInputContents: [][]byte{{9, 0, 0, 0, 'a'}}},
			codes.InvalidArgument, "input 'X' for model 'm' has malformed BYTES data"},
		{"shared memory input",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "X", Datatype: "FP32", Shape: []int64{2},
				Parameters: map[string]*pb.InferParameter{"shared_memory_region": str("r0"), "shared_memory_byte_size": i64(8)}}}},
			codes.Unimplemented, "input 'X' for model 'm' uses shared memory, which this endpoint does not support"},
		{"shared memory input without byte size",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "X", Datatype: "FP32", Shape: []int64{2},
				Parameters: map[string]*pb.InferParameter{"shared_memory_region": str("r0")}}}},
			codes.InvalidArgument, "input 'X' for model 'm' uses shared memory region 'r0' but has no 'shared_memory_byte_size'"},
		{"shared memory output",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2)}, RawInputContents: [][]byte{eight},
				Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "Y", Parameters: map[string]*pb.InferParameter{"shared_memory_region": str("r0"), "shared_memory_byte_size": i64(8)}}}},
			codes.Unimplemented, "output 'Y' for model 'm' asks for shared memory"},
		{"output without name",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2)}, RawInputContents: [][]byte{eight},
				Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{}}},
			codes.InvalidArgument, "requested output 0 for model 'm' has no name"},
		{"duplicate output",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2)}, RawInputContents: [][]byte{eight},
				Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "Y"}, {Name: "Y"}}},
			codes.InvalidArgument, "output 'Y' for model 'm' is requested more than once"},
		{"classification not int64",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2)}, RawInputContents: [][]byte{eight},
				Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "Y", Parameters: map[string]*pb.InferParameter{"classification": str("3")}}}},
			codes.InvalidArgument, "invalid value type for 'classification' parameter, expected int64_param"},
		{"classification zero",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2)}, RawInputContents: [][]byte{eight},
				Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "Y", Parameters: map[string]*pb.InferParameter{"classification": i64(0)}}}},
			codes.InvalidArgument, "invalid value for 'classification' parameter, expected > 0"},
		{"output parameter of unknown type",
			&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{fp32("X", 2)}, RawInputContents: [][]byte{eight},
				Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "Y", Parameters: map[string]*pb.InferParameter{"k": u64(1)}}}},
			codes.InvalidArgument, "output 'Y' for model 'm': invalid value type for 'k' parameter"},
		{"negative priority",
			&pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{"priority": i64(-1)}},
			codes.InvalidArgument, "invalid value for 'priority', expected value >= 0."},
		{"priority as string",
			&pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{"priority": str("high")}},
			codes.InvalidArgument, "invalid value type for 'priority' parameter, expected int64_param or uint64_param."},
		{"timeout as string",
			&pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{"timeout": str("1s")}},
			codes.InvalidArgument, "invalid value type for 'timeout' parameter, expected int64_param."},
		{"negative timeout",
			&pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{"timeout": i64(-5)}},
			codes.InvalidArgument, "invalid value for 'timeout', expected value >= 0."},
		{"sequence_start not bool",
			&pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{"sequence_start": i64(1)}},
			codes.InvalidArgument, "invalid value type for 'sequence_start' parameter, expected bool_param."},
		{"sequence_id as uint64",
			&pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{"sequence_id": u64(1)}},
			codes.InvalidArgument, "invalid value type for 'sequence_id' parameter, expected int64_param or string_param."},
		{"reserved triton_ key",
			&pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{"triton_secret": i64(1)}},
			codes.InvalidArgument, "parameter keys starting with 'triton_' are reserved for Triton usage"},
		{"parameter of unknown type",
			&pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{"k": u64(1)}},
			codes.InvalidArgument, "invalid value type for 'k' parameter, expected int64_param, bool_param, string_param or double_param."},
		{"parameter without value",
			&pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{"k": {}}},
			codes.InvalidArgument, "invalid value type for 'k' parameter"},
	}
	svc := newFakeService()
	c := startServer(t, svc).infer
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.ModelName = "m"
			_, err := c.ModelInfer(t.Context(), tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
}

func TestNameSet(t *testing.T) {
	for _, n := range []int{1, smallNameSet, smallNameSet + 1, 200} {
		var s nameSet
		for i := range n {
			if !s.add(fmt.Sprint("t", i)) {
				t.Fatalf("n=%d: name %d reported as a duplicate", n, i)
			}
		}
		for i := range n {
			if s.add(fmt.Sprint("t", i)) {
				t.Fatalf("n=%d: duplicate of name %d not found", n, i)
			}
		}
	}
}
