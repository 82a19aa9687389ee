package grpcapi

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
)

// streamService adds infer.StreamService to fakeService: requests to
// model "repeat" are decoupled and handled by streamFn; the others answer
// once, through Infer.
type streamService struct {
	*fakeService
	streamFn func(ctx context.Context, req *infer.Request, send func(*infer.Response, bool) error) error
}

func (s *streamService) InferStream(ctx context.Context, req *infer.Request, send func(*infer.Response, bool) error) error {
	if req.Model == "repeat" {
		return s.streamFn(ctx, req, send)
	}
	resp, err := s.Infer(ctx, req)
	if err != nil {
		return err
	}
	return send(resp, true)
}

// repeatFn answers n responses (each echoing the inputs) and an empty final
// one.
func repeatFn(n int) func(context.Context, *infer.Request, func(*infer.Response, bool) error) error {
	return func(_ context.Context, req *infer.Request, send func(*infer.Response, bool) error) error {
		for range n {
			if err := send(echo(req), false); err != nil {
				return err
			}
		}
		return send(&infer.Response{Model: req.Model, Version: "1", ID: req.ID}, true)
	}
}

func newStreamService() *streamService {
	f := newFakeService()
	f.models["repeat"] = true
	return &streamService{fakeService: f}
}

func openStream(t *testing.T, svc infer.Service) pb.GRPCInferenceService_ModelStreamInferClient {
	t.Helper()
	stream, err := startServer(t, svc).infer.ModelStreamInfer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

func recv(t *testing.T, stream pb.GRPCInferenceService_ModelStreamInferClient) *pb.ModelStreamInferResponse {
	t.Helper()
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func finalParam(resp *pb.ModelStreamInferResponse) (value, ok bool) {
	p, ok := resp.GetInferResponse().GetParameters()[paramFinalResponse]
	return p.GetBoolParam(), ok
}

// TestStreamDecoupledEmptyFinal checks Triton's empty final response: only
// when the request asks for it, and triton_final_response false on the
// other responses.
func TestStreamDecoupledEmptyFinal(t *testing.T) {
	svc := newStreamService()
	svc.streamFn = repeatFn(2)
	stream := openStream(t, svc)

	req := int32Request("repeat", 2)
	req.Id = "with"
	req.Parameters = map[string]*pb.InferParameter{paramEmptyFinal: {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}}}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		resp := recv(t, stream)
		if v, ok := finalParam(resp); !ok || v || len(resp.GetInferResponse().GetOutputs()) != 1 || resp.GetInferResponse().GetId() != "with" {
			t.Fatalf("response %d = %v, want outputs and triton_final_response false", i, resp)
		}
	}
	last := recv(t, stream)
	if v, ok := finalParam(last); !ok || !v || len(last.GetInferResponse().GetOutputs()) != 0 ||
		last.GetInferResponse().GetId() != "with" || last.GetInferResponse().GetModelName() != "repeat" {
		t.Fatalf("final response = %v, want an empty one with triton_final_response true", last)
	}

	req = int32Request("repeat", 2)
	req.Id = "without"
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, ok := finalParam(recv(t, stream)); ok {
			t.Fatalf("response %d carries triton_final_response unasked", i)
		}
	}
	// A model that is not decoupled: its one response is final.
	req = int32Request("simple", 2)
	req.Parameters = map[string]*pb.InferParameter{paramEmptyFinal: {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}}}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	if v, ok := finalParam(recv(t, stream)); !ok || !v {
		t.Fatal("the one response of a model that is not decoupled is not marked final")
	}
	_ = stream.CloseSend()
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want io.EOF (no empty final response unasked)", err)
	}
}

// TestStreamDecoupledNotBehindOthers checks that a decoupled request's
// responses go out as they come, without waiting for an earlier request
// that is still running, and that the stream ends only after the last
// decoupled response.
func TestStreamDecoupledNotBehindOthers(t *testing.T) {
	release := make(chan struct{})
	last := make(chan struct{})
	svc := newStreamService()
	svc.inferFn = func(ctx context.Context, req *infer.Request) (*infer.Response, error) {
		<-release
		return echo(req), nil
	}
	svc.streamFn = func(ctx context.Context, req *infer.Request, send func(*infer.Response, bool) error) error {
		if err := send(echo(req), false); err != nil {
			return err
		}
		<-last
		if err := send(echo(req), false); err != nil {
			return err
		}
		return send(&infer.Response{Model: req.Model, ID: req.ID}, true)
	}
	stream := openStream(t, svc)
	slow := int32Request("simple", 1)
	slow.Id = "slow"
	dec := int32Request("repeat", 1)
	dec.Id = "decoupled"
	for _, r := range []*pb.ModelInferRequest{slow, dec} {
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	_ = stream.CloseSend()
	if id := recv(t, stream).GetInferResponse().GetId(); id != "decoupled" {
		t.Fatalf("first response is %q, want the decoupled one", id)
	}
	close(release)
	if id := recv(t, stream).GetInferResponse().GetId(); id != "slow" {
		t.Fatalf("second response is %q, want slow", id)
	}
	close(last)
	if id := recv(t, stream).GetInferResponse().GetId(); id != "decoupled" {
		t.Fatalf("third response is %q, want decoupled", id)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last response: %v, want io.EOF", err)
	}
}

// TestStreamDecoupledErrorAfterResponses checks that a decoupled request
// failing midway is answered in-band after its responses.
func TestStreamDecoupledErrorAfterResponses(t *testing.T) {
	svc := newStreamService()
	svc.streamFn = func(ctx context.Context, req *infer.Request, send func(*infer.Response, bool) error) error {
		if err := send(echo(req), false); err != nil {
			return err
		}
		return infer.Errorf(infer.CodeInternal, "model 'repeat' version 1 failed to execute: boom")
	}
	stream := openStream(t, svc)
	req := int32Request("repeat", 1)
	req.Id = "r"
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	if recv(t, stream).GetErrorMessage() != "" {
		t.Fatal("first response is an error")
	}
	resp := recv(t, stream)
	if resp.GetErrorMessage() != "model 'repeat' version 1 failed to execute: boom" || resp.GetInferResponse().GetId() != "r" {
		t.Fatalf("second response = %v, want the error with the id", resp)
	}
}

// TestStreamSequencesInOrder checks that requests of one sequence run one
// after the other, in the order sent, while other sequences and requests
// without one run alongside.
func TestStreamSequencesInOrder(t *testing.T) {
	var (
		mu      sync.Mutex
		order   []string
		running = map[string]int{}
		overlap bool
	)
	gate := make(chan struct{})
	svc := newStreamService()
	svc.inferFn = func(ctx context.Context, req *infer.Request) (*infer.Response, error) {
		seq := ""
		if v, ok := req.Parameters["sequence_id"]; ok {
			seq = strconv.Quote(toString(v))
		}
		mu.Lock()
		order = append(order, req.ID)
		running[seq]++
		if seq != "" && running[seq] > 1 {
			overlap = true
		}
		mu.Unlock()
		if req.ID == "a1" {
			<-gate // a2 must wait; b1 and plain must not
		}
		mu.Lock()
		running[seq]--
		mu.Unlock()
		return echo(req), nil
	}
	stream := openStream(t, svc)
	send := func(id string, seq *pb.InferParameter) {
		req := int32Request("simple", 1)
		req.Id = id
		if seq != nil {
			req.Parameters = map[string]*pb.InferParameter{"sequence_id": seq}
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	num := func(n int64) *pb.InferParameter {
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: n}}
	}
	str := func(s string) *pb.InferParameter {
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_StringParam{StringParam: s}}
	}
	send("a1", num(7))
	send("a2", num(7))
	send("a3", num(7))
	send("b1", str("7")) // a string id is another sequence than the number 7
	send("plain", nil)
	waitUntil(t, "a1, b1 and plain to start", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 3 // a1, b1, plain
	})
	mu.Lock()
	for _, id := range order {
		if id == "a2" || id == "a3" {
			t.Errorf("%s ran before a1 finished (order %v)", id, order)
		}
	}
	mu.Unlock()
	close(gate)
	_ = stream.CloseSend()
	for {
		if _, err := stream.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var seq7 []string
	for _, id := range order {
		if id[0] == 'a' {
			seq7 = append(seq7, id)
		}
	}
	if len(seq7) != 3 || seq7[0] != "a1" || seq7[1] != "a2" || seq7[2] != "a3" || overlap {
		t.Errorf("sequence 7 ran %v (overlap %v), want a1 a2 a3 one at a time", seq7, overlap)
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return "s" + x
	case int64:
		return "n" + strconv.FormatInt(x, 10)
	}
	return ""
}

// TestStreamDecoupledClientGone checks that a client leaving mid-stream
// cancels the decoupled execution and leaves no goroutine behind.
func TestStreamDecoupledClientGone(t *testing.T) {
	svc := newStreamService()
	stopped := make(chan error, 1)
	svc.streamFn = func(ctx context.Context, req *infer.Request, send func(*infer.Response, bool) error) error {
		if err := send(echo(req), false); err != nil {
			return err
		}
		<-ctx.Done()
		stopped <- ctx.Err()
		return ctx.Err()
	}
	c := startServer(t, svc).infer
	if _, err := c.ServerLive(t.Context(), &pb.ServerLiveRequest{}); err != nil { // connect first
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := c.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(int32Request("repeat", 1)); err != nil {
		t.Fatal(err)
	}
	recv(t, stream)
	cancel()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("execution ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the decoupled execution was not cancelled")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after the stream ended", runtime.NumGoroutine()-before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSequenceKey(t *testing.T) {
	tests := []struct {
		p    *pb.InferParameter
		want string
	}{
		{nil, ""},
		{&pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 0}}, ""},
		{&pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 42}}, "n42"},
		{&pb.InferParameter{ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: 42}}, "n42"},
		{&pb.InferParameter{ParameterChoice: &pb.InferParameter_StringParam{StringParam: "42"}}, "s42"},
		{&pb.InferParameter{ParameterChoice: &pb.InferParameter_StringParam{StringParam: ""}}, ""},
		{&pb.InferParameter{ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}}, ""},
	}
	for _, tt := range tests {
		req := &pb.ModelInferRequest{}
		if tt.p != nil {
			req.Parameters = map[string]*pb.InferParameter{"sequence_id": tt.p}
		}
		if got := sequenceKey(req); got != tt.want {
			t.Errorf("sequenceKey(%v) = %q, want %q", tt.p, got, tt.want)
		}
	}
}
