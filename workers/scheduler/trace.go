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
	// The batch starts when it leaves the queue; its execution begins
	// there too (a few allocations later).
	batchStart := p.enqueued.Add(res.queue)
	inferStart := batchStart.Add(res.input)
	end := inferStart.Add(res.infer + res.output)
	infer.ChildSpan(ctx, telemetry.SpanQueue, p.enqueued, batchStart, nil)
	infer.ChildSpan(ctx, telemetry.SpanBatch, batchStart, inferStart, nil,
		trace.WithAttributes(telemetry.AttrBatchSize.Int(int(res.requests)), attrBatchRows.Int(int(res.rows))))
	infer.ChildSpan(ctx, telemetry.SpanExecute, inferStart, end, res.err)
}

// attrBatchRows is the batch's rows (Triton's batch size: the sum of the
// requests' own batch sizes) on the batch span, next to
// telemetry.AttrBatchSize's request count.
const attrBatchRows = attribute.Key("helix.batch_rows")
