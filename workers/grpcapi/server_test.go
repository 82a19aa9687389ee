package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

func wantCode(t *testing.T, err error, code codes.Code, msgPart string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msgPart) {
		t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, msgPart)
	}
}

func TestHealthAndMetadataRPCs(t *testing.T) {
	svc := newFakeService()
	c := startServer(t, svc).infer
	ctx := t.Context()

	live, err := c.ServerLive(ctx, &pb.ServerLiveRequest{})
	if err != nil || !live.GetLive() {
		t.Fatalf("ServerLive = %v, %v", live, err)
	}
	ready, err := c.ServerReady(ctx, &pb.ServerReadyRequest{})
	if err != nil || !ready.GetReady() {
		t.Fatalf("ServerReady = %v, %v", ready, err)
	}
	svc.setReady(false)
	if ready, err := c.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil || ready.GetReady() {
		t.Fatalf("ServerReady after setReady(false) = %v, %v", ready, err)
	}

	for model, want := range map[string]bool{"simple": true, "cold": false} {
		r, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: model})
		if err != nil || r.GetReady() != want {
			t.Errorf("ModelReady(%s) = %v, %v; want %v", model, r, err, want)
		}
	}
	_, err = c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound, "Request for unknown model: 'nope' is not found")

	md, err := c.ServerMetadata(ctx, &pb.ServerMetadataRequest{})
	if err != nil || md.GetName() != "triton" || md.GetVersion() != "2.0.0" || len(md.GetExtensions()) != 2 {
		t.Fatalf("ServerMetadata = %v, %v", md, err)
	}

	mm, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "simple"})
	if err != nil {
		t.Fatal(err)
	}
	wantMM := &pb.ModelMetadataResponse{
		Name: "simple", Versions: []string{"1", "3"}, Platform: "onnxruntime_onnx",
		Inputs:  []*pb.ModelMetadataResponse_TensorMetadata{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{-1, 16}}},
		Outputs: []*pb.ModelMetadataResponse_TensorMetadata{{Name: "OUTPUT0", Datatype: "FP32", Shape: []int64{-1, 16}}},
	}
	if !proto.Equal(mm, wantMM) {
		t.Fatalf("ModelMetadata = %v, want %v", mm, wantMM)
	}
	_, err = c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound, "'nope'")

	cfg, err := c.ModelConfig(ctx, &pb.ModelConfigRequest{Name: "simple"})
	if err != nil || cfg.GetConfig().GetName() != "simple" || cfg.GetConfig().GetMaxBatchSize() != 8 {
		t.Fatalf("ModelConfig = %v, %v", cfg, err)
	}
	_, err = c.ModelConfig(ctx, &pb.ModelConfigRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound, "'nope'")

	stats, err := c.ModelStatistics(ctx, &pb.ModelStatisticsRequest{Name: "simple", Version: "1"})
	if err != nil || len(stats.GetModelStats()) != 1 || stats.GetModelStats()[0].GetInferenceCount() != 7 ||
		stats.GetModelStats()[0].GetVersion() != "1" {
		t.Fatalf("ModelStatistics = %v, %v", stats, err)
	}
}

func TestRepositoryRPCs(t *testing.T) {
	svc := newFakeService()
	c := startServer(t, svc).infer
	ctx := t.Context()

	idx, err := c.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wantIdx := &pb.RepositoryIndexResponse{Models: []*pb.RepositoryIndexResponse_ModelIndex{
		{Name: "simple", Version: "1", State: "READY"},
		{Name: "cold", State: "UNAVAILABLE", Reason: "unloaded"},
	}}
	if !proto.Equal(idx, wantIdx) {
		t.Fatalf("RepositoryIndex = %v, want %v", idx, wantIdx)
	}
	if idx, err := c.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{Ready: true}); err != nil || len(idx.GetModels()) != 1 {
		t.Fatalf("RepositoryIndex(ready) = %v, %v", idx, err)
	}

	_, err = c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{
		ModelName: "simple",
		Parameters: map[string]*pb.ModelRepositoryParameter{
			"config":              {ParameterChoice: &pb.ModelRepositoryParameter_StringParam{StringParam: `{"backend":"onnxruntime"}`}},
			"file:1/model.onnx":   {ParameterChoice: &pb.ModelRepositoryParameter_BytesParam{BytesParam: []byte{1, 2, 3}}},
			"file:1/weights.data": {ParameterChoice: &pb.ModelRepositoryParameter_BytesParam{BytesParam: []byte{4}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if svc.lastLoad != "simple" || svc.loadOpts.ConfigJSON != `{"backend":"onnxruntime"}` ||
		!bytes.Equal(svc.loadOpts.Files["file:1/model.onnx"], []byte{1, 2, 3}) || len(svc.loadOpts.Files) != 2 {
		t.Fatalf("LoadModel got %q %+v", svc.lastLoad, svc.loadOpts)
	}

	_, err = c.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{
		ModelName:  "simple",
		Parameters: map[string]*pb.ModelRepositoryParameter{"unload_dependents": {ParameterChoice: &pb.ModelRepositoryParameter_BoolParam{BoolParam: true}}},
	})
	if err != nil || svc.lastUnload != "simple" || !svc.dependents {
		t.Fatalf("Unload: err %v, model %q, dependents %v", err, svc.lastUnload, svc.dependents)
	}

	errorCases := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"index with repository name", func() error {
			_, err := c.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{RepositoryName: "other"})
			return err
		}, codes.Unimplemented, "'repository_name' specification is not supported"},
		{"load config as bytes", func() error {
			_, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "m", Parameters: map[string]*pb.ModelRepositoryParameter{
				"config": {ParameterChoice: &pb.ModelRepositoryParameter_BytesParam{BytesParam: []byte("{}")}}}})
			return err
		}, codes.InvalidArgument, "invalid value type for load parameter 'config', expected string_param."},
		{"load file as string", func() error {
			_, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "m", Parameters: map[string]*pb.ModelRepositoryParameter{
				"file:1/model.onnx": {ParameterChoice: &pb.ModelRepositoryParameter_StringParam{StringParam: "x"}}}})
			return err
		}, codes.InvalidArgument, "'file:1/model.onnx', expected bytes_param."},
		{"load unknown parameter", func() error {
			_, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "m", Parameters: map[string]*pb.ModelRepositoryParameter{
				"colour": {ParameterChoice: &pb.ModelRepositoryParameter_StringParam{StringParam: "x"}}}})
			return err
		}, codes.InvalidArgument, "unrecognized load parameter 'colour'."},
		{"load with repository name", func() error {
			_, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{RepositoryName: "r", ModelName: "m"})
			return err
		}, codes.Unimplemented, "repository_name"},
		{"unload_dependents not bool", func() error {
			_, err := c.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{ModelName: "m", Parameters: map[string]*pb.ModelRepositoryParameter{
				"unload_dependents": {ParameterChoice: &pb.ModelRepositoryParameter_StringParam{StringParam: "yes"}}}})
			return err
		}, codes.InvalidArgument, "expected bool_param."},
		{"unload with repository name", func() error {
			_, err := c.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{RepositoryName: "r", ModelName: "m"})
			return err
		}, codes.Unimplemented, "repository_name"},
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code, tc.msg) })
	}
}

func TestUnsupportedRPCs(t *testing.T) {
	c := startServer(t, newFakeService()).infer
	ctx := t.Context()

	if r, err := c.SystemSharedMemoryStatus(ctx, &pb.SystemSharedMemoryStatusRequest{}); err != nil || len(r.GetRegions()) != 0 {
		t.Errorf("SystemSharedMemoryStatus = %v, %v; want no regions", r, err)
	}
	if r, err := c.CudaSharedMemoryStatus(ctx, &pb.CudaSharedMemoryStatusRequest{}); err != nil || len(r.GetRegions()) != 0 {
		t.Errorf("CudaSharedMemoryStatus = %v, %v; want no regions", r, err)
	}
	cases := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"system status of a region", func() error {
			_, err := c.SystemSharedMemoryStatus(ctx, &pb.SystemSharedMemoryStatusRequest{Name: "r0"})
			return err
		}, codes.NotFound, "Unable to find system shared memory region: 'r0'"},
		{"cuda status of a region", func() error {
			_, err := c.CudaSharedMemoryStatus(ctx, &pb.CudaSharedMemoryStatusRequest{Name: "r0"})
			return err
		}, codes.NotFound, "Unable to find cuda shared memory region: 'r0'"},
		{"system register", func() error {
			_, err := c.SystemSharedMemoryRegister(ctx, &pb.SystemSharedMemoryRegisterRequest{Name: "r0", Key: "/k", ByteSize: 64})
			return err
		}, codes.Unimplemented, "helix-worker does not support system shared memory; send tensors in raw_input_contents"},
		{"system unregister", func() error {
			_, err := c.SystemSharedMemoryUnregister(ctx, &pb.SystemSharedMemoryUnregisterRequest{})
			return err
		}, codes.OK, ""},
		{"cuda register", func() error {
			_, err := c.CudaSharedMemoryRegister(ctx, &pb.CudaSharedMemoryRegisterRequest{Name: "r0"})
			return err
		}, codes.Unimplemented, "CUDA shared memory needs the cuda backend on a GPU; this worker has none"},
		{"cuda unregister", func() error {
			_, err := c.CudaSharedMemoryUnregister(ctx, &pb.CudaSharedMemoryUnregisterRequest{Name: "r0"})
			return err
		}, codes.OK, ""},
		{"trace setting", func() error {
			_, err := c.TraceSetting(ctx, &pb.TraceSettingRequest{})
			return err
		}, codes.Unimplemented, "trace settings"},
		{"log settings", func() error {
			_, err := c.LogSettings(ctx, &pb.LogSettingsRequest{})
			return err
		}, codes.Unimplemented, "log settings"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code, tc.msg) })
	}
}

func TestErrorCodeMapping(t *testing.T) {
	cases := []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{infer.Errorf(infer.CodeInvalidArgument, "bad shape"), codes.InvalidArgument, "bad shape"},
		{infer.Errorf(infer.CodeNotFound, "no such model"), codes.NotFound, "no such model"},
		{infer.Errorf(infer.CodeUnavailable, "model is loading"), codes.Unavailable, "model is loading"},
		{infer.Errorf(infer.CodeUnimplemented, "decoupled"), codes.Unimplemented, "decoupled"},
		{infer.Errorf(infer.CodeResourceExhausted, "queue full"), codes.ResourceExhausted, "queue full"},
		{infer.Errorf(infer.CodeDeadlineExceeded, "Request timeout expired"), codes.DeadlineExceeded, "Request timeout expired"},
		{infer.Errorf(infer.CodeCancelled, "cancelled"), codes.Canceled, "cancelled"},
		{infer.Errorf(infer.CodeAlreadyExists, "exists"), codes.AlreadyExists, "exists"},
		{infer.Errorf(infer.CodeInternal, "backend crashed"), codes.Internal, "backend crashed"},
		{&infer.Error{Code: infer.CodeUnavailable, Err: errors.New("wrapped only")}, codes.Unavailable, "wrapped only"},
		{errors.New("plain"), codes.Internal, "plain"},
		{context.DeadlineExceeded, codes.DeadlineExceeded, "deadline"},
		{context.Canceled, codes.Canceled, "canceled"},
	}
	svc := newFakeService()
	c := startServer(t, svc).infer
	for _, tc := range cases {
		t.Run(tc.err.Error(), func(t *testing.T) {
			svc.mu.Lock()
			svc.inferFn = func(context.Context, *infer.Request) (*infer.Response, error) { return nil, tc.err }
			svc.mu.Unlock()
			_, err := c.ModelInfer(t.Context(), int32Request("simple", 2))
			wantCode(t, err, tc.code, tc.msg)
		})
	}
}

// int32Request is a request for model with one INT32 input of n elements
// sent as raw contents.
func int32Request(model string, n int) *pb.ModelInferRequest {
	data := make([]byte, 4*n)
	for i := range n {
		data[4*i] = byte(i)
	}
	return &pb.ModelInferRequest{
		ModelName: model,
		Id:        "req-1",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, int64(n)}},
		},
		RawInputContents: [][]byte{data},
	}
}

func TestModelInferEchoesIdentity(t *testing.T) {
	svc := newFakeService()
	c := startServer(t, svc).infer
	req := int32Request("simple", 16)
	req.ModelVersion = ""
	resp, err := c.ModelInfer(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetModelName() != "simple" || resp.GetModelVersion() != "3" || resp.GetId() != "req-1" {
		t.Fatalf("response identity = %q %q %q, want simple 3 req-1", resp.GetModelName(), resp.GetModelVersion(), resp.GetId())
	}
	if len(resp.GetOutputs()) != 1 || len(resp.GetRawOutputContents()) != 1 {
		t.Fatalf("got %d outputs, %d raw contents", len(resp.GetOutputs()), len(resp.GetRawOutputContents()))
	}
	out := resp.GetOutputs()[0]
	if out.GetName() != "INPUT0" || out.GetDatatype() != "INT32" || out.GetContents() != nil ||
		!equalShape(out.GetShape(), []int64{1, 16}) || !bytes.Equal(resp.GetRawOutputContents()[0], req.GetRawInputContents()[0]) {
		t.Fatalf("output = %v raw %x", out, resp.GetRawOutputContents()[0])
	}
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestModelInferParameters(t *testing.T) {
	svc := newFakeService()
	svc.inferFn = func(_ context.Context, req *infer.Request) (*infer.Response, error) {
		r := echo(req)
		r.Parameters = map[string]any{"sequence_id": int64(9), "queued": true, "label": "x", "score": 0.5, "big": uint64(1 << 63)}
		return r, nil
	}
	c := startServer(t, svc).infer
	req := int32Request("simple", 2)
	req.Parameters = map[string]*pb.InferParameter{
		"priority":       {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 2}},
		"timeout":        {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 1500}},
		"sequence_id":    {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "seq"}},
		"sequence_start": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}},
		"temperature":    {ParameterChoice: &pb.InferParameter_DoubleParam{DoubleParam: 0.7}},
		"max_tokens":     {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 64}},
	}
	req.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{
		Name:       "INPUT0",
		Parameters: map[string]*pb.InferParameter{"classification": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 3}}},
	}}
	resp, err := c.ModelInfer(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	got := svc.lastRequest()
	if got.Priority != 2 || got.Timeout != 1500*time.Microsecond {
		t.Errorf("priority %d timeout %v, want 2 and 1.5ms", got.Priority, got.Timeout)
	}
	wantParams := map[string]any{"sequence_id": "seq", "sequence_start": true, "temperature": 0.7, "max_tokens": int64(64)}
	if len(got.Parameters) != len(wantParams) {
		t.Errorf("parameters = %v, want %v", got.Parameters, wantParams)
	}
	for k, v := range wantParams {
		if got.Parameters[k] != v {
			t.Errorf("parameter %s = %#v, want %#v", k, got.Parameters[k], v)
		}
	}
	if len(got.Outputs) != 1 || got.Outputs[0].Name != "INPUT0" || got.Outputs[0].Parameters["classification"] != int64(3) {
		t.Errorf("requested outputs = %+v", got.Outputs)
	}
	p := resp.GetParameters()
	if p["sequence_id"].GetInt64Param() != 9 || !p["queued"].GetBoolParam() || p["label"].GetStringParam() != "x" ||
		p["score"].GetDoubleParam() != 0.5 || p["big"].GetUint64Param() != 1<<63 {
		t.Errorf("response parameters = %v", p)
	}

	// A uint64 priority is accepted too, as Triton does.
	req.Parameters = map[string]*pb.InferParameter{"priority": {ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: 5}}}
	if _, err := c.ModelInfer(t.Context(), req); err != nil || svc.lastRequest().Priority != 5 {
		t.Errorf("uint64 priority: err %v, priority %d", err, svc.lastRequest().Priority)
	}
}

func TestModelInferUnsupportedResponseParameter(t *testing.T) {
	svc := newFakeService()
	svc.inferFn = func(_ context.Context, req *infer.Request) (*infer.Response, error) {
		r := echo(req)
		r.Parameters = map[string]any{"odd": []int{1}}
		return r, nil
	}
	c := startServer(t, svc).infer
	_, err := c.ModelInfer(t.Context(), int32Request("simple", 1))
	wantCode(t, err, codes.Internal, `response parameter "odd"`)
}

func TestMaxMessageSize(t *testing.T) {
	c := startServer(t, newFakeService(), ServerOptions(1024)...).infer
	if _, err := c.ModelInfer(t.Context(), int32Request("simple", 16)); err != nil {
		t.Fatalf("small request: %v", err)
	}
	_, err := c.ModelInfer(t.Context(), int32Request("simple", 1024))
	wantCode(t, err, codes.ResourceExhausted, "larger than max")
}

func TestMaxSendMessageSize(t *testing.T) {
	svc := newFakeService()
	svc.inferFn = func(_ context.Context, req *infer.Request) (*infer.Response, error) {
		r := echo(req)
		r.Outputs = []tensor.Tensor{{Name: "BIG", DataType: tensor.Uint8, Shape: []int64{4096}, Data: make([]byte, 4096)}}
		return r, nil
	}
	c := startServer(t, svc, ServerOptions(1024)...).infer
	_, err := c.ModelInfer(t.Context(), int32Request("simple", 1))
	wantCode(t, err, codes.ResourceExhausted, "larger than max")
}
