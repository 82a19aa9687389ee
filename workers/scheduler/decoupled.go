package scheduler

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// executeDecoupled runs b's one decoupled request (Request.Send set) on
// inst. The execution's context ends when the caller's does (the client
// went away) or when Close gives up waiting, so that a model that would
// keep producing responses stops. Statistics count it as one execution of
// the request's batch size; its compute time is the whole run, responses
// included (Triton counts a decoupled request the same way).
func (s *Scheduler) executeDecoupled(inst backend.Instance, b *batch) {
	p := b.reqs[0]
	ctx, cancel := context.WithCancel(s.execCtx)
	stop := context.AfterFunc(p.ctx, cancel)
	t0 := time.Now()
	err := s.callDecoupled(ctx, inst, p.req)
	exec := time.Since(t0)
	stop()
	cancel()

	if err != nil {
		s.log.Debug("decoupled execution failed", "error", err)
		switch {
		case p.ctx.Err() != nil:
			err = s.ctxError(p.ctx.Err())
		case s.execCtx.Err() != nil:
			err = infer.Errorf(infer.CodeUnavailable, "model '%s' was unloaded while the request ran", s.cfg.Model)
		default:
			err = s.backendError(err)
		}
	}
	s.obs.ExecutionDone(ExecutionStats{BatchSize: p.size, Requests: 1, ComputeInfer: exec})
	res := outcome{
		err:      err,
		queue:    b.start.Sub(p.enqueued),
		infer:    exec,
		compute:  exec,
		requests: 1,
		rows:     int32(p.size),
	}
	if err != nil {
		res.reason = FailureBackend
		if infer.CodeOf(err) == infer.CodeCancelled {
			res.reason = FailureCanceled
		}
	}
	s.order.deliver(b.seq, []delivery{{to: p.done, res: res}})
}

// callDecoupled checks that inst can serve a decoupled request and runs
// it, checking each response's outputs and turning a panic into an error.
func (s *Scheduler) callDecoupled(ctx context.Context, inst backend.Instance, r *Request) (err error) {
	di, ok := inst.(backend.DecoupledInstance)
	if !ok {
		return infer.Errorf(infer.CodeInternal, "the instance cannot serve a decoupled request")
	}
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("instance panicked", "panic", v, "stack", string(debug.Stack()))
			err = infer.Errorf(infer.CodeInternal, "instance panicked: %v", v)
		}
	}()
	asked := len(r.Outputs)
	return di.ExecuteDecoupled(ctx, r.Inputs, r.Outputs, func(outs []tensor.Tensor) error {
		if asked > 0 && len(outs) != asked {
			return infer.Errorf(infer.CodeInternal, "instance returned %d outputs, %d were requested", len(outs), asked)
		}
		return r.Send(outs)
	})
}
