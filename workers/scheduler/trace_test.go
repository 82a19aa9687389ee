package scheduler

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/workers/backend"
)

// tracing returns a provider that records every span it samples:
// requests whose context is unsampled get none.
func tracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

// spansOf groups the ended spans by their parent's span id and name.
func spansOf(rec *tracetest.SpanRecorder) map[trace.SpanID]map[string]sdktrace.ReadOnlySpan {
	out := make(map[trace.SpanID]map[string]sdktrace.ReadOnlySpan)
	for _, s := range rec.Ended() {
		p := s.Parent().SpanID()
		if out[p] == nil {
			out[p] = make(map[string]sdktrace.ReadOnlySpan)
		}
		out[p][s.Name()] = s
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return a.Value
		}
	}
	return attribute.Value{}
}

func TestTraceSpansPerRequestInABatch(t *testing.T) {
	tp, rec := tracing(t)
	inst := &fakeInstance{gate: make(chan struct{})}
	obs := &recorder{}
	s := start(t, Config{
		MaxBatchSize: 8,
		Dynamic:      &DynamicBatching{},
		Instances:    []backend.Instance{inst},
		Observer:     obs,
	})
	// A first request holds the instance while three more queue.
	hold := goDo(context.Background(), s, rowsRequest(1, 0))
	waitFor(t, "first batch to start", func() bool { c, _, _, _ := inst.stats(); return c == 1 })

	const n = 3
	var parents []trace.Span
	var results []<-chan result
	for i := range n {
		ctx, span := tp.Tracer("test").Start(context.Background(), "request")
		parents = append(parents, span)
		results = append(results, goDo(ctx, s, rowsRequest(i+1, 0))) // rows 1+2+3
		waitFor(t, "request queued", func() bool { return s.Pending() == i+1 })
	}
	// An unsampled request in the same batch records nothing.
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1},
	}))
	results = append(results, goDo(unsampled, s, rowsRequest(1, 0)))
	waitFor(t, "request queued", func() bool { return s.Pending() == n+1 })
	time.Sleep(5 * time.Millisecond) // a queue span of measurable length
	close(inst.gate)
	if r := get(t, hold); r.err != nil {
		t.Fatal(r.err)
	}
	for i, ch := range results {
		if r := get(t, ch); r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
	}

	byParent := spansOf(rec)
	if len(rec.Ended()) != 3*n {
		t.Errorf("%d spans ended, want %d (queue, batch, execute for each sampled request)", len(rec.Ended()), 3*n)
	}
	for i, p := range parents {
		kids := byParent[p.SpanContext().SpanID()]
		q, b, e := kids[telemetry.SpanQueue], kids[telemetry.SpanBatch], kids[telemetry.SpanExecute]
		if q == nil || b == nil || e == nil {
			t.Fatalf("request %d: children %v, want queue, batch and execute", i, kids)
		}
		if q.EndTime().Sub(q.StartTime()) < 5*time.Millisecond {
			t.Errorf("request %d: queue span %v, it waited at least 5ms", i, q.EndTime().Sub(q.StartTime()))
		}
		if !q.EndTime().Equal(b.StartTime()) || b.EndTime().After(e.StartTime()) || e.EndTime().Before(e.StartTime()) {
			t.Errorf("request %d: queue %v-%v, batch %v-%v, execute %v-%v out of order", i,
				q.StartTime(), q.EndTime(), b.StartTime(), b.EndTime(), e.StartTime(), e.EndTime())
		}
		if got := attr(b, telemetry.AttrBatchSize).AsInt64(); got != n+1 {
			t.Errorf("request %d: %s = %d, want %d requests", i, telemetry.AttrBatchSize, got, n+1)
		}
		if got := attr(b, attrBatchRows).AsInt64(); got != 7 {
			t.Errorf("request %d: %s = %d, want 7 rows", i, attrBatchRows, got)
		}
		if e.Status().Code != codes.Unset {
			t.Errorf("request %d: execute status %v", i, e.Status())
		}
	}
	// Exemplars: the sampled requests' trace ids reach the observer.
	traced := 0
	for _, r := range obs.reqs {
		if r.Trace.IsValid() {
			traced++
		}
	}
	if traced != n {
		t.Errorf("%d request stats carry a trace id, want %d", traced, n)
	}
}

func TestTraceQueueTimeoutRecordsTheWait(t *testing.T) {
	tp, rec := tracing(t)
	inst := &fakeInstance{gate: make(chan struct{})}
	s := start(t, Config{MaxBatchSize: 4, DefaultTimeout: 20 * time.Millisecond, Instances: []backend.Instance{inst}})
	hold := goDo(context.Background(), s, rowsRequest(1, 0))
	waitFor(t, "first request to run", func() bool { c, _, _, _ := inst.stats(); return c == 1 })

	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := s.Do(ctx, rowsRequest(1, 1)); err == nil {
		t.Fatal("Do succeeded, want a queue timeout")
	}
	close(inst.gate)
	if r := get(t, hold); r.err != nil {
		t.Fatal(r.err)
	}
	kids := spansOf(rec)[span.SpanContext().SpanID()]
	q := kids[telemetry.SpanQueue]
	if len(kids) != 1 || q == nil {
		t.Fatalf("children %v, want only queue", kids)
	}
	if q.Status().Code != codes.Error {
		t.Errorf("queue span status %v, want an error", q.Status())
	}
}
