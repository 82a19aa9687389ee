package grpcapi

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
)

// FuzzDecodeInferRequest feeds arbitrary bytes through proto unmarshal and
// the request decoder: it must never panic, and whatever it accepts must be
// a set of valid tensors.
func FuzzDecodeInferRequest(f *testing.F) {
	seeds := []*pb.ModelInferRequest{
		int32Request("simple", 16),
		{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "S", Datatype: "BYTES", Shape: []int64{2}, Contents: &pb.InferTensorContents{BytesContents: [][]byte{[]byte("a"), nil}}},
			{Name: "B", Datatype: "INT8", Shape: []int64{1, 2}, Contents: &pb.InferTensorContents{IntContents: []int32{-128, 127}}},
			{Name: "U", Datatype: "UINT16", Shape: []int64{1}, Contents: &pb.InferTensorContents{UintContents: []uint32{65535}}},
		}},
		{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "H", Datatype: "FP16", Shape: []int64{2}}},
			RawInputContents: [][]byte{{0, 0x3c, 0, 0xc0}},
			Parameters: map[string]*pb.InferParameter{
				"priority": {ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: 1}},
				"timeout":  {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 100}},
			},
			Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "O", Parameters: map[string]*pb.InferParameter{
				"classification": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 2}}}}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.ModelInferRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return
		}
		ireq, err := decodeInferRequest(&req)
		if err != nil {
			if infer.CodeOf(err) == infer.CodeInternal {
				t.Fatalf("decode error without a client-facing code: %v", err)
			}
			return
		}
		for _, in := range ireq.Inputs {
			if err := in.Validate(); err != nil {
				t.Fatalf("decoder accepted an invalid tensor: %v", err)
			}
		}
		// The response path must cope with whatever was accepted, too.
		if _, err := encodeInferResponse(ireq, echo(ireq)); err != nil {
			t.Fatalf("encode: %v", err)
		}
	})
}

// BenchmarkModelInfer measures the front end's own work for a 16-element
// INT32 request: decode, an echoing service, and encode. The wire variant
// adds protobuf unmarshal and marshal, as grpc-go does per call.
func BenchmarkModelInfer(b *testing.B) {
	s := NewServer(newFakeService(), Options{})
	req := int32Request("simple", 16)
	ctx := context.Background()
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.ModelInfer(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	wire, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r pb.ModelInferRequest
			if err := proto.Unmarshal(wire, &r); err != nil {
				b.Fatal(err)
			}
			resp, err := s.ModelInfer(ctx, &r)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := proto.Marshal(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}
