package grpcapi

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
)

// TestStreamConcurrentInOrder checks that stream requests run at the same
// time (each waits until all have arrived, which would deadlock if they ran
// one by one) and that responses still come back in request order although
// later requests finish first.
func TestStreamConcurrentInOrder(t *testing.T) {
	const n = 8
	var (
		mu      sync.Mutex
		arrived int
		all     = make(chan struct{})
	)
	svc := newFakeService()
	svc.inferFn = func(ctx context.Context, req *infer.Request) (*infer.Response, error) {
		mu.Lock()
		arrived++
		if arrived == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		i, _ := strconv.Atoi(req.ID)
		time.Sleep(time.Duration(n-i) * 5 * time.Millisecond) // later ids finish first
		return echo(req), nil
	}
	c := startServer(t, svc).infer
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := c.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		req := int32Request("simple", 4)
		req.Id = strconv.Itoa(i)
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if resp.GetErrorMessage() != "" || resp.GetInferResponse().GetId() != strconv.Itoa(i) {
			t.Fatalf("response %d = id %q error %q", i, resp.GetInferResponse().GetId(), resp.GetErrorMessage())
		}
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last response: %v, want io.EOF", err)
	}
}

// TestStreamErrorKeepsStreamOpen checks that failed requests are answered
// in-band with error_message and the request id, and later requests still
// succeed.
func TestStreamErrorKeepsStreamOpen(t *testing.T) {
	c := startServer(t, newFakeService()).infer
	stream, err := c.ModelStreamInfer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	bad := int32Request("simple", 4)
	bad.Id = "bad"
	bad.Inputs[0].Datatype = "INT33"
	unknown := int32Request("nope", 4)
	unknown.Id = "unknown"
	steps := []struct {
		req     *pb.ModelInferRequest
		wantErr string
	}{
		{int32Request("simple", 4), ""},
		{bad, "input 'INPUT0' for model 'simple' has unknown datatype 'INT33'"},
		{unknown, "Request for unknown model: 'nope' is not found"},
		{int32Request("simple", 2), ""},
	}
	for i, step := range steps {
		if err := stream.Send(step.req); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if resp.GetErrorMessage() != step.wantErr {
			t.Fatalf("response %d error = %q, want %q", i, resp.GetErrorMessage(), step.wantErr)
		}
		if resp.GetInferResponse().GetId() != step.req.GetId() {
			t.Fatalf("response %d id = %q, want %q", i, resp.GetInferResponse().GetId(), step.req.GetId())
		}
		if step.wantErr == "" && len(resp.GetInferResponse().GetRawOutputContents()) != 1 {
			t.Fatalf("response %d has no output", i)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want io.EOF", err)
	}
}

func TestStreamServiceErrorInBand(t *testing.T) {
	svc := newFakeService()
	svc.inferFn = func(_ context.Context, req *infer.Request) (*infer.Response, error) {
		if req.ID == "full" {
			return nil, infer.Errorf(infer.CodeResourceExhausted, "queue of model 'simple' is full")
		}
		return echo(req), nil
	}
	c := startServer(t, svc).infer
	stream, err := c.ModelStreamInfer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ok-1", "full", "ok-2"} {
		req := int32Request("simple", 1)
		req.Id = id
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	_ = stream.CloseSend()
	want := []struct{ id, err string }{{"ok-1", ""}, {"full", "queue of model 'simple' is full"}, {"ok-2", ""}}
	for _, w := range want {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetInferResponse().GetId() != w.id || resp.GetErrorMessage() != w.err {
			t.Fatalf("got id %q error %q, want %q %q", resp.GetInferResponse().GetId(), resp.GetErrorMessage(), w.id, w.err)
		}
	}
}

// TestStreamCancel checks that cancelling the client's context ends the
// stream and cancels the requests still running.
func TestStreamCancel(t *testing.T) {
	started := make(chan struct{})
	stopped := make(chan error, 1)
	svc := newFakeService()
	svc.inferFn = func(ctx context.Context, _ *infer.Request) (*infer.Response, error) {
		close(started)
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	}
	c := startServer(t, svc).infer
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := c.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(int32Request("simple", 1)); err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Recv after cancel: %v, want Canceled", err)
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("service context ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the running request was not cancelled")
	}
}
