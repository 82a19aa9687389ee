package scheduler

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/workers/infer"
)

// traceRequest records the request's queue, batch and execute spans after
// the fact, from the times the statistics are made of: queue from enqueue
// to its batch's start, batch from there to the end of input batching,
// execute the backend's run and the split of its outputs. Do calls it only
// when the request's span is recording.
func (s *Scheduler) traceRequest(ctx context.Context, p *pending, res *outcome) {
	if p.enqueued.IsZero() {
		return // never queued
	}
	if res.requests == 0 {
		// No outcome from an execution (timed out, cancelled, dropped at
		// unload): the span covers the wait until then.
		infer.ChildSpan(ctx, telemetry.SpanQueue, p.enqueued, time.Now(), res.err)
		return
	}
	TraceExecution(ctx, p.enqueued, res.queue, res.input, res.infer+res.output, int(res.requests), int(res.rows), res.err)
}

// TraceExecution records a request's queue, batch and execute spans, for
// batchers other than this package's (workers/sequence): the request was
// queued at enqueued and waited queue; its batch of requests requests and
// rows rows spent input batching its inputs and execute running the model
// and splitting its outputs.
func TraceExecution(ctx context.Context, enqueued time.Time, queue, input, execute time.Duration, requests, rows int, err error) {
	batchStart := enqueued.Add(queue)
	inferStart := batchStart.Add(input)
	end := inferStart.Add(execute)
	infer.ChildSpan(ctx, telemetry.SpanQueue, enqueued, batchStart, nil)
	infer.ChildSpan(ctx, telemetry.SpanBatch, batchStart, inferStart, nil,
		trace.WithAttributes(telemetry.AttrBatchSize.Int(requests), attrBatchRows.Int(rows)))
	infer.ChildSpan(ctx, telemetry.SpanExecute, inferStart, end, err)
}

// attrBatchRows is the batch's rows (Triton's batch size: the sum of the
// requests' own batch sizes) on the batch span, next to
// telemetry.AttrBatchSize's request count.
const attrBatchRows = attribute.Key("helix.batch_rows")
