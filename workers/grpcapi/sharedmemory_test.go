package grpcapi

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/internal/wire"
	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/shm"
	"github.com/helixflow/helixflow/workers/tensor"
)

func shmParams(region string, size, offset int64) map[string]*pb.InferParameter {
	p := map[string]*pb.InferParameter{
		shm.ParamRegion:   {ParameterChoice: &pb.InferParameter_StringParam{StringParam: region}},
		shm.ParamByteSize: {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: size}},
	}
	if offset != 0 {
		p[shm.ParamOffset] = &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: offset}}
	}
	return p
}

func int32s(v ...int32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

// shmServer starts a front end over the echo service with a registry in a
// temporary folder, which it returns.
func shmServer(t *testing.T) (pb.GRPCInferenceServiceClient, string) {
	t.Helper()
	dir := t.TempDir()
	reg := shm.New(shm.Options{Dir: dir})
	t.Cleanup(reg.Close)
	return startServerOptions(t, newFakeService(), Options{SharedMemory: reg}).infer, dir
}

func writeObject(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readObject(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSystemSharedMemoryRPCs(t *testing.T) {
	c, dir := shmServer(t)
	ctx := t.Context()
	writeObject(t, dir, "input_simple", make([]byte, 128))

	if _, err := c.SystemSharedMemoryRegister(ctx, &pb.SystemSharedMemoryRegisterRequest{Name: "input_data", Key: "/input_simple", ByteSize: 128}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SystemSharedMemoryRegister(ctx, &pb.SystemSharedMemoryRegisterRequest{Name: "tail", Key: "/input_simple", Offset: 64, ByteSize: 64}); err != nil {
		t.Fatal(err)
	}
	st, err := c.SystemSharedMemoryStatus(ctx, &pb.SystemSharedMemoryStatusRequest{})
	if err != nil || len(st.GetRegions()) != 2 {
		t.Fatalf("status = %v, %v", st, err)
	}
	if r := st.GetRegions()["tail"]; r.GetName() != "tail" || r.GetKey() != "/input_simple" || r.GetOffset() != 64 || r.GetByteSize() != 64 {
		t.Errorf("tail = %v", r)
	}
	st, err = c.SystemSharedMemoryStatus(ctx, &pb.SystemSharedMemoryStatusRequest{Name: "input_data"})
	if err != nil || len(st.GetRegions()) != 1 || st.GetRegions()["input_data"].GetByteSize() != 128 {
		t.Fatalf("status(input_data) = %v, %v", st, err)
	}

	bad := []struct {
		name string
		req  *pb.SystemSharedMemoryRegisterRequest
		code codes.Code
		msg  string
	}{
		{"double register", &pb.SystemSharedMemoryRegisterRequest{Name: "input_data", Key: "/input_simple", ByteSize: 8},
			codes.AlreadyExists, "shared memory region 'input_data' already in manager"},
		{"key with slash", &pb.SystemSharedMemoryRegisterRequest{Name: "x", Key: "/a/b", ByteSize: 8},
			codes.InvalidArgument, "shared memory key '/a/b' must be a single name"},
		{"object too small", &pb.SystemSharedMemoryRegisterRequest{Name: "x", Key: "/input_simple", ByteSize: 129},
			codes.InvalidArgument, "holds 128 bytes, fewer than offset 0 + byte_size 129"},
		{"offset past end", &pb.SystemSharedMemoryRegisterRequest{Name: "x", Key: "/input_simple", Offset: 200, ByteSize: 1},
			codes.InvalidArgument, "holds 128 bytes, fewer than offset 200"},
		{"no object", &pb.SystemSharedMemoryRegisterRequest{Name: "x", Key: "/nothing", ByteSize: 1},
			codes.InvalidArgument, "no shared memory object with key '/nothing'"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.SystemSharedMemoryRegister(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}

	if _, err := c.SystemSharedMemoryUnregister(ctx, &pb.SystemSharedMemoryUnregisterRequest{Name: "tail"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SystemSharedMemoryUnregister(ctx, &pb.SystemSharedMemoryUnregisterRequest{Name: "never"}); err != nil {
		t.Fatalf("unregistering an unknown region: %v", err)
	}
	_, err = c.SystemSharedMemoryStatus(ctx, &pb.SystemSharedMemoryStatusRequest{Name: "tail"})
	wantCode(t, err, codes.NotFound, "Unable to find system shared memory region: 'tail'")
	if _, err := c.SystemSharedMemoryUnregister(ctx, &pb.SystemSharedMemoryUnregisterRequest{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.SystemSharedMemoryStatus(ctx, &pb.SystemSharedMemoryStatusRequest{}); len(st.GetRegions()) != 0 {
		t.Fatalf("after unregistering all: %v", st)
	}
}

// TestModelInferSharedMemory follows simple_grpc_shm_client.py: two INT32
// inputs in one region, two outputs in another, plus a third input sent
// in raw_input_contents.
func TestModelInferSharedMemory(t *testing.T) {
	c, dir := shmServer(t)
	ctx := t.Context()
	in0 := int32s(0, 1, 2, 3)
	in1 := int32s(1, 1, 1, 1)
	writeObject(t, dir, "input_simple", append(append([]byte{}, in0...), in1...))
	writeObject(t, dir, "output_simple", make([]byte, 64))
	for _, r := range []*pb.SystemSharedMemoryRegisterRequest{
		{Name: "input_data", Key: "/input_simple", ByteSize: 32},
		{Name: "output_data", Key: "/output_simple", ByteSize: 64},
	} {
		if _, err := c.SystemSharedMemoryRegister(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	raw := int32s(7, 7, 7, 7)
	req := &pb.ModelInferRequest{
		ModelName: "simple",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, 4}, Parameters: shmParams("input_data", 16, 0)},
			{Name: "RAW", Datatype: "INT32", Shape: []int64{1, 4}},
			{Name: "INPUT1", Datatype: "INT32", Shape: []int64{1, 4}, Parameters: shmParams("input_data", 16, 16)},
		},
		RawInputContents: [][]byte{raw},
		Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{
			{Name: "INPUT0", Parameters: shmParams("output_data", 16, 0)},
			{Name: "INPUT1", Parameters: shmParams("output_data", 16, 32)},
			{Name: "RAW"},
		},
	}
	resp, err := c.ModelInfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	out := readObject(t, dir, "output_simple")
	if !bytes.Equal(out[:16], in0) || !bytes.Equal(out[32:48], in1) {
		t.Fatalf("output region = %v", out)
	}
	if len(resp.GetOutputs()) != 3 || len(resp.GetRawOutputContents()) != 3 {
		t.Fatalf("response = %v", resp)
	}
	for i, o := range resp.GetOutputs() {
		switch o.GetName() {
		case "INPUT0", "INPUT1":
			if len(resp.GetRawOutputContents()[i]) != 0 || o.GetParameters()[shm.ParamRegion].GetStringParam() != "output_data" ||
				o.GetParameters()[shm.ParamByteSize].GetInt64Param() != 16 {
				t.Errorf("shared-memory output %s = %v, raw %v", o.GetName(), o, resp.GetRawOutputContents()[i])
			}
			if o.GetName() == "INPUT1" && o.GetParameters()[shm.ParamOffset].GetInt64Param() != 32 {
				t.Errorf("INPUT1 offset = %v", o.GetParameters())
			}
		case "RAW":
			if !bytes.Equal(resp.GetRawOutputContents()[i], raw) || len(o.GetParameters()) != 0 {
				t.Errorf("RAW = %v, %v", o, resp.GetRawOutputContents()[i])
			}
		}
	}
}

// TestModelInferSharedMemoryBytes follows simple_grpc_shm_string_client.py:
// BYTES tensors travel in Triton's 4-byte length-prefixed serialization.
func TestModelInferSharedMemoryBytes(t *testing.T) {
	c, dir := shmServer(t)
	ctx := t.Context()
	in := tensor.EncodeBytes([][]byte{[]byte("1"), []byte("22"), []byte("")})
	writeObject(t, dir, "in", in)
	writeObject(t, dir, "out", make([]byte, len(in)))
	for _, r := range []*pb.SystemSharedMemoryRegisterRequest{
		{Name: "in", Key: "/in", ByteSize: uint64(len(in))},
		{Name: "out", Key: "/out", ByteSize: uint64(len(in))},
	} {
		if _, err := c.SystemSharedMemoryRegister(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	req := &pb.ModelInferRequest{
		ModelName: "simple",
		Inputs:    []*pb.ModelInferRequest_InferInputTensor{{Name: "S", Datatype: "BYTES", Shape: []int64{1, 3}, Parameters: shmParams("in", int64(len(in)), 0)}},
		Outputs:   []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "S", Parameters: shmParams("out", int64(len(in)), 0)}},
	}
	if _, err := c.ModelInfer(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := readObject(t, dir, "out"); !bytes.Equal(got, in) {
		t.Fatalf("out = %q", got)
	}
	// Four elements claimed, three serialized.
	req.Inputs[0].Shape = []int64{1, 4}
	_, err := c.ModelInfer(ctx, req)
	wantCode(t, err, codes.InvalidArgument, "expected 4 string elements for inference input 'S' for model 'simple', got 3")
}

func TestModelInferSharedMemoryBadInput(t *testing.T) {
	c, dir := shmServer(t)
	ctx := t.Context()
	writeObject(t, dir, "obj", make([]byte, 64))
	if _, err := c.SystemSharedMemoryRegister(ctx, &pb.SystemSharedMemoryRegisterRequest{Name: "r", Key: "/obj", ByteSize: 64}); err != nil {
		t.Fatal(err)
	}
	in := func(p map[string]*pb.InferParameter) []*pb.ModelInferRequest_InferInputTensor {
		return []*pb.ModelInferRequest_InferInputTensor{{Name: "X", Datatype: "INT32", Shape: []int64{4}, Parameters: p}}
	}
	okIn := in(shmParams("r", 16, 0))
	outs := func(p map[string]*pb.InferParameter) []*pb.ModelInferRequest_InferRequestedOutputTensor {
		return []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "X", Parameters: p}}
	}
	tests := []struct {
		name string
		req  *pb.ModelInferRequest
		code codes.Code
		msg  string
	}{
		{"unregistered input region", &pb.ModelInferRequest{Inputs: in(shmParams("nope", 16, 0))},
			codes.InvalidArgument, "input 'X': Unable to find shared memory region: 'nope'"},
		{"input offset past end", &pb.ModelInferRequest{Inputs: in(shmParams("r", 16, 65))},
			codes.InvalidArgument, "Invalid offset for shared memory region: 'r': offset 65 is past the region's end (it holds 64 bytes)"},
		{"input window past end", &pb.ModelInferRequest{Inputs: in(shmParams("r", 16, 56))},
			codes.InvalidArgument, "offset 56 + byte_size 16 is past the region's end"},
		{"negative offset", &pb.ModelInferRequest{Inputs: in(shmParams("r", 16, -8))},
			codes.InvalidArgument, "'shared_memory_offset' is -8; it must not be negative"},
		{"negative byte size", &pb.ModelInferRequest{Inputs: in(shmParams("r", -1, 0))},
			codes.InvalidArgument, "'shared_memory_byte_size' is -1"},
		{"byte size not the tensor's", &pb.ModelInferRequest{Inputs: in(shmParams("r", 12, 0))},
			codes.InvalidArgument, "input byte size mismatch for input 'X' for model 'simple'. Expected 16, got 12"},
		{"region as int", &pb.ModelInferRequest{Inputs: in(map[string]*pb.InferParameter{
			shm.ParamRegion: {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 1}}, shm.ParamByteSize: {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 16}}})},
			codes.InvalidArgument, "'shared_memory_region' must be a string"},
		{"shared memory and contents", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "X", Datatype: "INT32", Shape: []int64{1},
			Parameters: shmParams("r", 4, 0), Contents: &pb.InferTensorContents{IntContents: []int32{1}}}}},
			codes.InvalidArgument, "has both contents and a shared memory region"},
		{"raw entry for a shared-memory input", &pb.ModelInferRequest{Inputs: okIn, RawInputContents: [][]byte{int32s(1, 2, 3, 4)}},
			codes.InvalidArgument, "has 1 raw_input_contents entries but 0 inputs not in shared memory"},
		{"unregistered output region", &pb.ModelInferRequest{Inputs: okIn, Outputs: outs(shmParams("gone", 16, 0))},
			codes.InvalidArgument, "output 'X': Unable to find shared memory region: 'gone'"},
		{"output offset past end", &pb.ModelInferRequest{Inputs: okIn, Outputs: outs(shmParams("r", 1, 64))},
			codes.InvalidArgument, "offset 64 + byte_size 1 is past the region's end"},
		{"output region too small", &pb.ModelInferRequest{Inputs: okIn, Outputs: outs(shmParams("r", 8, 0))},
			codes.InvalidArgument, "shared memory size specified with the request for output 'X' (8 bytes) should be at least 16 bytes to hold the results"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.ModelName = "simple"
			_, err := c.ModelInfer(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
}

// TestSharedMemoryThroughGateway: a request that carries the gateway's
// client header may not register regions or use them.
func TestSharedMemoryThroughGateway(t *testing.T) {
	c, dir := shmServer(t)
	writeObject(t, dir, "obj", make([]byte, 64))
	if _, err := c.SystemSharedMemoryRegister(t.Context(), &pb.SystemSharedMemoryRegisterRequest{Name: "r", Key: "/obj", ByteSize: 64}); err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), wire.HeaderClient, "client-1")
	const msg = "shared memory works only for a client on the worker's host; through the gateway send tensors in the request"
	_, err := c.SystemSharedMemoryRegister(ctx, &pb.SystemSharedMemoryRegisterRequest{Name: "r2", Key: "/obj", ByteSize: 64})
	wantCode(t, err, codes.FailedPrecondition, msg)
	_, err = c.CudaSharedMemoryRegister(ctx, &pb.CudaSharedMemoryRegisterRequest{Name: "c"})
	wantCode(t, err, codes.FailedPrecondition, msg)
	_, err = c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "simple",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "X", Datatype: "INT32", Shape: []int64{4}, Parameters: shmParams("r", 16, 0)}}})
	wantCode(t, err, codes.FailedPrecondition, msg)
	_, err = c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "simple",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "X", Datatype: "INT32", Shape: []int64{1}}},
		RawInputContents: [][]byte{int32s(1)},
		Outputs:          []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "X", Parameters: shmParams("r", 4, 0)}}})
	wantCode(t, err, codes.FailedPrecondition, msg)
	// Plain requests through the gateway are served.
	if _, err := c.ModelInfer(ctx, int32Request("simple", 2)); err != nil {
		t.Fatal(err)
	}
}

// FuzzSharedMemoryParams decodes requests whose shared-memory parameters
// have any types and values against a registered region: decoding never
// panics, never reads outside the region, and refuses with
// INVALID_ARGUMENT.
func FuzzSharedMemoryParams(f *testing.F) {
	f.Add("r", int64(16), int64(0), uint8(0), true)
	f.Add("r", int64(16), int64(60), uint8(1), false)
	f.Add("x", int64(-1), int64(-1), uint8(7), true)
	f.Add("r", int64(1<<62), int64(1<<62), uint8(3), false)
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "obj"), make([]byte, 64), 0o600); err != nil {
		f.Fatal(err)
	}
	reg := shm.New(shm.Options{Dir: dir})
	f.Cleanup(reg.Close)
	if err := reg.Register("r", "/obj", 0, 64); err != nil {
		f.Fatal(err)
	}
	sm := &sharedMemory{reg: reg}
	param := func(kind uint8, s string, n int64) *pb.InferParameter {
		switch kind % 6 {
		case 0:
			return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: n}}
		case 1:
			return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: uint64(n)}}
		case 2:
			return &pb.InferParameter{ParameterChoice: &pb.InferParameter_StringParam{StringParam: s}}
		case 3:
			return &pb.InferParameter{ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: n > 0}}
		case 4:
			return &pb.InferParameter{ParameterChoice: &pb.InferParameter_DoubleParam{DoubleParam: float64(n)}}
		}
		return nil
	}
	f.Fuzz(func(t *testing.T, region string, size, offset int64, kinds uint8, output bool) {
		p := map[string]*pb.InferParameter{}
		if v := param(kinds>>4, region, 0); v != nil {
			p[shm.ParamRegion] = v
		}
		if v := param(kinds, region, size); v != nil {
			p[shm.ParamByteSize] = v
		}
		if v := param(kinds>>2, region, offset); v != nil {
			p[shm.ParamOffset] = v
		}
		req := &pb.ModelInferRequest{ModelName: "m",
			Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "X", Datatype: "UINT8", Shape: []int64{max(min(size, 64), 1)}}}}
		if output {
			req.Inputs[0].Contents = &pb.InferTensorContents{UintContents: make([]uint32, max(min(size, 64), 1))}
			req.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "X", Parameters: p}}
		} else {
			req.Inputs[0].Parameters = p
		}
		ireq, outs, err := decodeRequest(req, sm)
		defer outs.Release()
		if err != nil {
			if c := grpcStatus(err).Code(); c != codes.InvalidArgument {
				t.Fatalf("code %v: %v", c, err)
			}
			return
		}
		if !output && len(p) > 0 && int64(len(ireq.Inputs[0].Data)) != size {
			t.Fatalf("read %d bytes for byte size %d", len(ireq.Inputs[0].Data), size)
		}
	})
}
