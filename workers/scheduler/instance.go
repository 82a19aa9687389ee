package scheduler

import (
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// batch is a set of requests executed together.
type batch struct {
	reqs  []*pending
	seq   uint64
	start time.Time
}

// serve runs batches on inst until the scheduler is closed and its queue is
// empty, then closes inst.
func (s *Scheduler) serve(inst backend.Instance) {
	for {
		b := s.next()
		if b == nil {
			break
		}
		s.execute(inst, b)
	}
	err := s.closeInstance(inst)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.log.Error("closing instance", "error", err)
		s.closeErrs = append(s.closeErrs, fmt.Errorf("closing an instance of model '%s': %w", s.cfg.Model, err))
	}
	s.live--
	if s.live == 0 {
		if s.alarm != nil {
			s.alarm.stop()
		}
		close(s.stopped)
	}
}

// next blocks until a batch is ready for this (free) instance; nil means
// the scheduler is closed and nothing is left to run.
func (s *Scheduler) next() *batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.queuedLocked() == 0 {
			if s.closing {
				return nil
			}
			s.waitLocked(0)
			continue
		}
		now := time.Now()
		n, wait := s.planLocked(now)
		if n > 0 {
			b := s.takeLocked(n, now)
			if s.queuedLocked() > 0 {
				// Another instance may be free for the rest.
				s.broadcastLocked()
			}
			return b
		}
		if s.timing {
			// Another instance waits out the delay; one is enough.
			s.waitLocked(0)
			continue
		}
		s.timing = true
		s.waitLocked(wait)
		s.timing = false
	}
}

// waitLocked releases s.mu until the queue changes or d passes (d <= 0:
// no time limit). It may return early (an alarm's late firing); next then
// plans again.
func (s *Scheduler) waitLocked(d time.Duration) {
	if s.wake == nil {
		s.wake = make(chan struct{})
	}
	wake := s.wake
	if d <= 0 {
		s.mu.Unlock()
		<-wake
		s.mu.Lock()
		return
	}
	// Only one instance goroutine waits with a time limit (s.timing), so
	// one alarm serves the scheduler.
	s.alarm.arm(d)
	s.mu.Unlock()
	select {
	case <-wake:
	case <-s.alarm.c:
	}
	s.alarm.disarm()
	s.mu.Lock()
}

// at returns the i-th queued request, delayed ones last.
func (s *Scheduler) at(i int) *pending {
	if i < len(s.queue) {
		return s.queue[i]
	}
	return s.delayed[i-len(s.queue)]
}

// planLocked decides, as Triton's dynamic batcher does, how many requests
// from the head of the queue to run now; 0 means wait up to the returned
// duration for more to arrive.
func (s *Scheduler) planLocked(now time.Time) (n int, wait time.Duration) {
	if !s.batching || s.at(0).req.Send != nil {
		// A decoupled request runs alone.
		return 1, 0
	}
	var (
		total  int  // batch size of the first n requests
		bestN  int  // requests in the best cut found so far
		full   bool // the next request cannot join
		oldest = s.at(0).enqueued
		key    = s.at(0).key
	)
	for count := s.queuedLocked(); n < count; n++ {
		p := s.at(n)
		if n > 0 {
			// Past the largest preferred size no preferred size can be
			// reached, so what is there now is the best cut.
			if total+p.size > s.maxPref && bestN == 0 {
				bestN = n
			}
			if total+p.size > s.cfg.MaxBatchSize || p.key != key || p.req.Send != nil {
				full = true
				break
			}
		}
		total += p.size
		if p.enqueued.Before(oldest) {
			oldest = p.enqueued
		}
		if s.pref[total] {
			bestN = n + 1
		}
	}
	delay := s.cfg.Dynamic.MaxQueueDelay
	waited := now.Sub(oldest)
	expired := s.closing || (delay > 0 && waited >= delay)
	switch {
	case bestN > 0 && !expired:
		return bestN, 0
	case full, total >= s.maxPref, expired, delay == 0:
		return n, 0
	}
	return 0, delay - waited
}

// takeLocked removes the first n queued requests as a batch.
func (s *Scheduler) takeLocked(n int, now time.Time) *batch {
	b := &batch{reqs: make([]*pending, n), seq: s.nextSeq, start: now}
	s.nextSeq++
	for i := range n {
		p := s.at(i)
		p.state = dispatched
		b.reqs[i] = p
	}
	fromQueue := min(n, len(s.queue))
	clear(s.queue[:fromQueue])
	s.queue = s.queue[fromQueue:]
	if rest := n - fromQueue; rest > 0 {
		clear(s.delayed[:rest])
		s.delayed = s.delayed[rest:]
	}
	s.pendingChangedLocked()
	return b
}

// execute runs b on inst and hands every request its outcome.
func (s *Scheduler) execute(inst backend.Instance, b *batch) {
	if b.reqs[0].req.Send != nil {
		s.executeDecoupled(inst, b)
		return
	}
	reqs := make([]*Request, len(b.reqs))
	sizes := make([]int64, len(b.reqs))
	total := 0
	for i, p := range b.reqs {
		reqs[i] = p.req
		sizes[i] = int64(p.size)
		total += p.size
	}

	t0 := time.Now()
	inputs, err := joinInputs(reqs)
	t1 := time.Now()
	var outs []tensor.Tensor
	if err == nil {
		outs, err = s.call(inst, inputs, reqs[0].Outputs)
	}
	t2 := time.Now()
	var pieces [][]tensor.Tensor
	if err == nil {
		pieces, err = s.split(outs, sizes, len(reqs[0].Outputs))
	}
	t3 := time.Now()

	if err != nil {
		s.log.Debug("execution failed", "requests", len(reqs), "batch_size", total, "error", err)
		err = s.backendError(err)
	}
	s.obs.ExecutionDone(ExecutionStats{
		BatchSize:     total,
		Requests:      len(reqs),
		ComputeInput:  t1.Sub(t0),
		ComputeInfer:  t2.Sub(t1),
		ComputeOutput: t3.Sub(t2),
	})
	ds := make([]delivery, len(b.reqs))
	exec := t3.Sub(t0)
	for i, p := range b.reqs {
		res := outcome{
			err:     err,
			queue:   b.start.Sub(p.enqueued),
			input:   t1.Sub(t0),
			infer:   t2.Sub(t1),
			output:  t3.Sub(t2),
			compute: computeShare(exec, p.size, total),

			requests: int32(len(b.reqs)),
			rows:     int32(total),
		}
		if err == nil {
			res.outputs = pieces[i]
		} else {
			res.reason = FailureBackend
		}
		ds[i] = delivery{to: p.done, res: res}
	}
	s.order.deliver(b.seq, ds)
}

// computeShare is a request's share of an execution that took exec: exec x
// rows / batchRows, rounded down. Integer arithmetic: an hour's execution
// (3.6e12 ns) times a batch of a million rows still fits in an int64.
func computeShare(exec time.Duration, rows, batchRows int) time.Duration {
	if batchRows <= 0 || rows <= 0 || exec <= 0 {
		return 0
	}
	if rows >= batchRows {
		return exec
	}
	return time.Duration(int64(exec) * int64(rows) / int64(batchRows))
}

// call runs Execute, turning a panic into an error so that a backend bug
// fails one batch rather than the worker.
func (s *Scheduler) call(inst backend.Instance, inputs []tensor.Tensor, outputs []string) (outs []tensor.Tensor, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("instance panicked", "panic", v, "stack", string(debug.Stack()))
			outs, err = nil, infer.Errorf(infer.CodeInternal, "instance panicked: %v", v)
		}
	}()
	return inst.Execute(s.execCtx, inputs, outputs)
}

// closeInstance closes inst, turning a panic into an error.
func (s *Scheduler) closeInstance(inst backend.Instance) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("instance panicked while closing", "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("instance panicked while closing: %v", v)
		}
	}()
	return inst.Close()
}

// split checks the instance's outputs and cuts them per request.
func (s *Scheduler) split(outs []tensor.Tensor, sizes []int64, asked int) ([][]tensor.Tensor, error) {
	if asked > 0 && len(outs) != asked {
		return nil, infer.Errorf(infer.CodeInternal, "instance returned %d outputs, %d were requested", len(outs), asked)
	}
	if s.cfg.MaxBatchSize == 0 {
		return [][]tensor.Tensor{outs}, nil
	}
	return SplitOutputs(outs, sizes)
}

// backendError names the model in err and keeps the code the backend chose.
func (s *Scheduler) backendError(err error) error {
	return infer.Errorf(infer.CodeOf(err), "model '%s' version %d failed to execute: %w", s.cfg.Model, s.cfg.Version, err)
}

// delivery is one outcome bound for one request.
type delivery struct {
	to  chan<- outcome
	res outcome
}

// ordering hands outcomes over, in batch order when enabled (Triton's
// preserve_ordering); finished batches wait here, not on their instance.
type ordering struct {
	enabled bool
	mu      sync.Mutex
	next    uint64
	ready   map[uint64][]delivery
}

func (o *ordering) deliver(seq uint64, ds []delivery) {
	if !o.enabled {
		send(ds)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ready[seq] = ds
	for {
		ds, ok := o.ready[o.next]
		if !ok {
			return
		}
		delete(o.ready, o.next)
		o.next++
		send(ds)
	}
}

func send(ds []delivery) {
	for _, d := range ds {
		d.to <- d.res // buffered and sent once: never blocks
	}
}
