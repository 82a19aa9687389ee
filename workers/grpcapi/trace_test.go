package grpcapi

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/workers/scheduler/schedtest"
)

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestTraceBatchedRequests sends three requests, each in its own sampled
// trace, that the scheduler runs as one batch: each gets its server span,
// parented to the gateway's span, with its own queue, batch, execute and
// encode spans.
func TestTraceBatchedRequests(t *testing.T) {
	rec := schedtest.Tracing()
	svc := schedtest.New(t)
	c := startServer(t, svc).infer

	svc.Hold()
	held := make(chan error, 1)
	go func() { _, err := c.ModelInfer(t.Context(), int32Request("simple", 4)); held <- err }()
	waitUntil(t, "the held execution", func() bool { return svc.Executions() == 1 })

	const n = 3
	type call struct {
		id     trace.TraceID
		caller trace.SpanID
		err    chan error
	}
	calls := make([]call, n)
	for i := range calls {
		id, caller := schedtest.IDs()
		calls[i] = call{id: id, caller: caller, err: make(chan error, 1)}
		ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", schedtest.Traceparent(calls[i].id, calls[i].caller, true))
		go func() { _, err := c.ModelInfer(ctx, int32Request("simple", 4)); calls[i].err <- err }()
	}
	waitUntil(t, "the requests to queue", func() bool { return svc.Sched.Pending() == n })
	svc.Release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for _, cl := range calls {
		if err := <-cl.err; err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range calls {
		schedtest.CheckRequest(t, rec, cl.id, cl.caller, spanModelInfer, n)
	}
}

func TestTraceUnsampledAndMalformedRecordNothing(t *testing.T) {
	rec := schedtest.Tracing()
	svc := schedtest.New(t)
	c := startServer(t, svc).infer
	id, _ := schedtest.IDs()
	for _, tp := range []string{
		schedtest.Traceparent(id, trace.SpanID{1}, false),
		"00-not-a-trace-01",
		"ff-" + id.String() + "-0000000000000000-01", // invalid version and span id
	} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", tp)
		if _, err := c.ModelInfer(ctx, int32Request("simple", 4)); err != nil {
			t.Errorf("traceparent %q: %v", tp, err)
		}
	}
	if spans := schedtest.Spans(rec, id); len(spans) != 0 {
		t.Errorf("%d spans recorded for an unsampled or malformed traceparent", len(spans))
	}
}

func TestTraceStreamMessages(t *testing.T) {
	rec := schedtest.Tracing()
	svc := schedtest.New(t)
	c := startServer(t, svc).infer
	id, caller := schedtest.IDs()
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", schedtest.Traceparent(id, caller, true))
	stream, err := c.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(int32Request("simple", 4)); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.GetErrorMessage() != "" {
		t.Fatalf("stream answer %v, %v", resp, err)
	}
	_ = stream.CloseSend()
	schedtest.CheckRequest(t, rec, id, caller, spanModelStreamInfer, 1)
}
