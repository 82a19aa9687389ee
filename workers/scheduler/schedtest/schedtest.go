// Package schedtest serves the front ends' tracing tests: an infer.Service
// whose Infer runs through a real Scheduler (dynamic batching, an echo
// instance that can be held), and a global tracer provider that records
// spans.
package schedtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/internal/telemetry"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/tensor"
)

var (
	once     sync.Once
	recorder *tracetest.SpanRecorder
)

// Tracing installs, once per test binary, a global tracer provider that
// records sampled spans and the W3C propagator, as telemetry.Setup does;
// requests without a trace context are not sampled. Tests tell their spans
// apart by trace id.
func Tracing() *tracetest.SpanRecorder {
	once.Do(func() {
		recorder = tracetest.NewSpanRecorder()
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample()))))
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	})
	return recorder
}

// Service is an infer.Service whose Infer runs on a Scheduler of
// MaxBatchSize 8 with dynamic batching; other methods are not implemented.
type Service struct {
	infer.Service
	Sched *scheduler.Scheduler
	inst  *echo
}

// New starts a Service, closed when t ends.
func New(t testing.TB) *Service {
	inst := &echo{gate: make(chan struct{})}
	close(inst.gate)
	s, err := scheduler.New(scheduler.Config{
		Model: "simple", Version: 1, MaxBatchSize: 8, Dynamic: &scheduler.DynamicBatching{},
		Instances: []backend.Instance{inst}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		inst.release()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return &Service{Sched: s, inst: inst}
}

// Hold makes the next execution wait for Release, so that requests queue
// up behind it and run together afterwards.
func (s *Service) Hold() { s.inst.hold() }

// Release lets the held execution run.
func (s *Service) Release() { s.inst.release() }

// Executions is the number of executions started so far.
func (s *Service) Executions() int {
	s.inst.mu.Lock()
	defer s.inst.mu.Unlock()
	return s.inst.execs
}

// Infer runs req on the scheduler; outputs echo the inputs.
func (s *Service) Infer(ctx context.Context, req *infer.Request) (*infer.Response, error) {
	outs, err := s.Sched.Do(ctx, &scheduler.Request{Inputs: req.Inputs})
	if err != nil {
		return nil, err
	}
	return &infer.Response{Model: req.Model, Version: "1", ID: req.ID, Outputs: outs}, nil
}

// echo answers with its inputs; while held, Execute waits for the gate.
type echo struct {
	mu    sync.Mutex
	gate  chan struct{}
	execs int
}

func (e *echo) hold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gate = make(chan struct{})
}

func (e *echo) release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-e.gate:
	default:
		close(e.gate)
	}
}

func (e *echo) Execute(ctx context.Context, in []tensor.Tensor, _ []string) ([]tensor.Tensor, error) {
	e.mu.Lock()
	gate := e.gate
	e.execs++
	e.mu.Unlock()
	select {
	case <-gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return in, nil
}

func (e *echo) Close() error { return nil }

// Traceparent is a sampled (or not) W3C traceparent header for a new trace
// whose caller span is span.
func Traceparent(trace [16]byte, span [8]byte, sampled bool) string {
	flags := "00"
	if sampled {
		flags = "01"
	}
	return fmt.Sprintf("00-%x-%x-%s", trace, span, flags)
}

// Spans returns the ended spans of trace id.
func Spans(rec *tracetest.SpanRecorder, id trace.TraceID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

// CheckRequest checks one inference request's spans in trace id: a server
// span named server whose parent is the caller's (remote) span, and its
// children queue, batch (with helix.batch_size requests), execute and
// encode, in that order.
func CheckRequest(t testing.TB, rec *tracetest.SpanRecorder, id trace.TraceID, caller trace.SpanID, server string, batchSize int) {
	t.Helper()
	var srv sdktrace.ReadOnlySpan
	kids := map[string]sdktrace.ReadOnlySpan{}
	spans := Spans(rec, id)
	for _, s := range spans {
		if s.Name() == server {
			srv = s
		}
	}
	if srv == nil {
		t.Errorf("trace %s: no %q span among %d", id, server, len(spans))
		return
	}
	if p := srv.Parent(); p.SpanID() != caller || !p.IsRemote() {
		t.Errorf("trace %s: server span's parent %s (remote %v), want the caller's %s", id, p.SpanID(), p.IsRemote(), caller)
	}
	if srv.SpanKind() != trace.SpanKindServer {
		t.Errorf("trace %s: server span kind %v", id, srv.SpanKind())
	}
	for _, s := range spans {
		if s.Parent().SpanID() == srv.SpanContext().SpanID() {
			kids[s.Name()] = s
		}
	}
	var prevEnd time.Time
	for _, name := range []string{telemetry.SpanQueue, telemetry.SpanBatch, telemetry.SpanExecute, telemetry.SpanEncode} {
		s := kids[name]
		if s == nil {
			t.Errorf("trace %s: no %q child of the server span (children: %d)", id, name, len(kids))
			continue
		}
		if s.StartTime().Before(prevEnd) || s.EndTime().Before(s.StartTime()) {
			t.Errorf("trace %s: %q runs %v to %v, before its predecessor ended (%v)", id, name, s.StartTime(), s.EndTime(), prevEnd)
		}
		prevEnd = s.EndTime()
		if s.StartTime().Before(srv.StartTime()) || s.EndTime().After(srv.EndTime()) {
			t.Errorf("trace %s: %q is outside its server span", id, name)
		}
	}
	if b := kids[telemetry.SpanBatch]; b != nil {
		var got int64 = -1
		for _, a := range b.Attributes() {
			if a.Key == telemetry.AttrBatchSize {
				got = a.Value.AsInt64()
			}
		}
		if got != int64(batchSize) {
			t.Errorf("trace %s: %s = %d, want %d", id, telemetry.AttrBatchSize, got, batchSize)
		}
	}
}

// IDs returns a random trace id and caller span id, so that runs of a test
// (-count) and tests sharing the global recorder do not mix their spans.
func IDs() (trace.TraceID, trace.SpanID) {
	var id trace.TraceID
	var span trace.SpanID
	_, _ = rand.Read(id[:])
	_, _ = rand.Read(span[:])
	return id, span
}
