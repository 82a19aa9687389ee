package ensemble

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/tensor"
)

// Service runs a step's request; the worker's models.Manager, so that each
// step goes through its model's own scheduler.
type Service interface {
	Infer(ctx context.Context, req *infer.Request) (*infer.Response, error)
}

// Runner runs one version of an ensemble. It implements the models
// package's runner (Do, Close) and is safe for concurrent use.
type Runner struct {
	plan   *Plan
	svc    Service
	obs    scheduler.Observer
	closed atomic.Bool
}

// NewRunner returns a runner of plan whose steps go to svc; obs (may be
// nil) is told about each ensemble request, as Triton counts them in the
// ensemble's own statistics.
func NewRunner(plan *Plan, svc Service, obs scheduler.Observer) *Runner {
	return &Runner{plan: plan, svc: svc, obs: obs}
}

// Close makes later requests fail UNAVAILABLE. The ensemble holds no
// instances: its steps' models own theirs.
func (r *Runner) Close(context.Context) error {
	r.closed.Store(true)
	return nil
}

// Do runs the steps the requested outputs depend on, each as soon as its
// inputs exist (independent steps in parallel), and returns the outputs
// in the order r.Outputs names them. The request's inputs were checked
// against the ensemble's config by the caller. It fills req.Usage: Rows is
// the ensemble request's batch size, Compute the sum over its steps.
func (r *Runner) Do(ctx context.Context, req *scheduler.Request) ([]tensor.Tensor, error) {
	if r.closed.Load() {
		return nil, infer.Errorf(infer.CodeUnavailable, "ensemble '%s' is unloading", r.plan.name)
	}
	start := time.Now()
	outs, compute, err := r.run(ctx, req)
	batch := r.plan.batchSize(req.Inputs)
	req.Usage = scheduler.Usage{Compute: compute}
	st := scheduler.RequestStats{Success: err == nil, BatchSize: batch, ComputeInfer: compute, Total: time.Since(start)}
	if err == nil {
		req.Usage.Rows = batch
	} else {
		st.FailureReason = failureReason(err)
	}
	if r.obs != nil {
		r.obs.RequestDone(st)
		if err == nil {
			// Triton counts one execution per ensemble request.
			r.obs.ExecutionDone(scheduler.ExecutionStats{BatchSize: batch, Requests: 1, ComputeInfer: compute})
		}
	}
	return outs, err
}

type stepResult struct {
	step    int
	outputs []tensor.Tensor
	compute time.Duration
	err     error
}

func (r *Runner) run(ctx context.Context, req *scheduler.Request) ([]tensor.Tensor, time.Duration, error) {
	p := r.plan
	tensors := make(map[string]tensor.Tensor, len(req.Inputs)+len(p.producer))
	for _, t := range req.Inputs {
		tensors[t.Name] = t
	}
	need := p.needed(req.Outputs)
	waiting := make([]int, len(p.steps)) // unfinished deps of each needed step
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan stepResult, len(p.steps))
	running := 0
	launch := func(i int) {
		sreq := r.stepRequest(&p.steps[i], tensors, req)
		running++
		go func() {
			resp, err := r.svc.Infer(ctx, sreq)
			res := stepResult{step: i, compute: sreq.Usage.Compute, err: err}
			if err == nil {
				res.outputs = resp.Outputs
			}
			done <- res
		}()
	}
	for i := range p.steps {
		if !need[i] {
			continue
		}
		for _, d := range p.steps[i].deps {
			if need[d] {
				waiting[i]++
			}
		}
		if waiting[i] == 0 {
			launch(i)
		}
	}
	var (
		firstErr error
		compute  time.Duration
	)
	// Only this goroutine touches tensors and waiting; each step's request
	// is built from them before its goroutine starts.
	for running > 0 {
		res := <-done
		running--
		compute += res.compute
		if firstErr != nil {
			continue
		}
		s := &p.steps[res.step]
		if res.err != nil {
			firstErr = r.stepError(s, res.err)
			cancel()
			continue
		}
		if err := collect(s, res.outputs, tensors); err != nil {
			firstErr = r.stepError(s, err)
			cancel()
			continue
		}
		for _, c := range s.consumers {
			if !need[c] {
				continue
			}
			if waiting[c]--; waiting[c] == 0 {
				launch(c)
			}
		}
	}
	if firstErr != nil {
		return nil, compute, firstErr
	}
	outs := make([]tensor.Tensor, 0, len(req.Outputs))
	for _, name := range req.Outputs {
		t, ok := tensors[name]
		if !ok {
			return nil, compute, infer.Errorf(infer.CodeInternal, "ensemble '%s': output '%s' was not produced", p.name, name)
		}
		t.Name = name
		outs = append(outs, t)
	}
	return outs, compute, nil
}

// stepRequest builds a step's request from the tensors produced so far.
// An optional ensemble input the client left out is left out of the step.
func (r *Runner) stepRequest(s *step, tensors map[string]tensor.Tensor, req *scheduler.Request) *infer.Request {
	sreq := &infer.Request{Model: s.model, Timeout: req.Timeout}
	if s.version != Latest {
		sreq.Version = strconv.FormatInt(s.version, 10)
	}
	for _, in := range s.inputs {
		t, ok := tensors[in.tensor]
		if !ok {
			continue
		}
		t.Name = in.model
		sreq.Inputs = append(sreq.Inputs, t)
	}
	for _, out := range s.outputs {
		sreq.Outputs = append(sreq.Outputs, infer.RequestedOutput{Name: out.model})
	}
	if seq := req.Sequence; !seq.ID.IsZero() {
		// A step model with sequence_batching sees the ensemble request's
		// sequence, as in Triton.
		sreq.Parameters = map[string]any{"sequence_start": seq.Start, "sequence_end": seq.End}
		if seq.ID.Str != "" {
			sreq.Parameters["sequence_id"] = seq.ID.Str
		} else {
			sreq.Parameters["sequence_id"] = seq.ID.Num
		}
	}
	return sreq
}

// collect stores a step's outputs under their ensemble tensor names.
func collect(s *step, outputs []tensor.Tensor, tensors map[string]tensor.Tensor) error {
	for _, o := range s.outputs {
		found := false
		for _, t := range outputs {
			if t.Name == o.model {
				t.Name = o.tensor
				tensors[o.tensor] = t
				found = true
				break
			}
		}
		if !found {
			return infer.Errorf(infer.CodeInternal, "model '%s' returned no output '%s'", s.model, o.model)
		}
	}
	return nil
}

// stepError names the failing step and keeps the step's error code (a
// step model that is not loaded is NOT_FOUND, a bad tensor INVALID_ARGUMENT).
func (r *Runner) stepError(s *step, err error) error {
	return &infer.Error{
		Code: infer.CodeOf(err),
		Msg:  "ensemble '" + r.plan.name + "' " + s.String() + ": " + err.Error(),
		Err:  err,
	}
}

func failureReason(err error) string {
	switch infer.CodeOf(err) {
	case infer.CodeCancelled:
		return scheduler.FailureCanceled
	case infer.CodeUnavailable, infer.CodeResourceExhausted, infer.CodeDeadlineExceeded:
		return scheduler.FailureRejected
	case infer.CodeInvalidArgument, infer.CodeNotFound:
		return scheduler.FailureOther
	}
	if errors.Is(err, context.Canceled) {
		return scheduler.FailureCanceled
	}
	return scheduler.FailureBackend
}
