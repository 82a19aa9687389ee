package sequence

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/tensor"
)

// instance is one backend instance and the sequences placed on it.
type instance struct {
	b     *Batcher
	inst  backend.Instance
	slots []*seq        // direct: batch slots; oldest: candidates
	wake  chan struct{} // buffered 1: a wake-up is never lost
}

func (in *instance) notify() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// row is one row of a batch: a request of a sequence, or padding (p nil)
// for a direct slot with nothing to run.
type row struct {
	p *pending
	s *seq
}

type batch struct {
	rows  []row
	real  int // rows with a request
	start time.Time
}

// serve runs batches until the batcher is closed and nothing is queued in
// this instance's slots, then closes the instance.
func (in *instance) serve() {
	b := in.b
	for {
		bt := in.next()
		if bt == nil {
			break
		}
		b.execute(in, bt)
	}
	err := closeInstance(b, in.inst)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.log.Error("closing instance", "error", err)
		b.closeErrs = append(b.closeErrs, fmt.Errorf("closing an instance of model '%s': %w", b.cfg.Model, err))
	}
	b.live--
	if b.live == 0 {
		close(b.stopped)
	}
}

// next blocks until a batch is ready; nil means the batcher is closed and
// nothing is left to run here.
func (in *instance) next() *batch {
	b := in.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		bt, wait := b.planLocked(in, time.Now())
		if bt != nil {
			return bt
		}
		if wait < 0 && b.closing {
			return nil
		}
		b.mu.Unlock()
		if wait <= 0 {
			<-in.wake
		} else {
			t := time.NewTimer(wait)
			select {
			case <-in.wake:
			case <-t.C:
			}
			t.Stop()
		}
		b.mu.Lock()
	}
}

// head is the next request of a sequence in a slot.
type head struct {
	slot int
	p    *pending
	key  string
}

// planLocked takes the next batch of in, or returns how long to wait for a
// fuller one (-1: nothing to run, wait for a request).
func (b *Batcher) planLocked(in *instance, now time.Time) (*batch, time.Duration) {
	var heads []head
	for i, s := range in.slots {
		if s != nil && len(s.queue) > 0 && !s.running {
			p := s.queue[0]
			heads = append(heads, head{slot: i, p: p, key: p.key + b.stateKey(s, p)})
		}
	}
	if len(heads) == 0 {
		return nil, -1
	}
	sort.SliceStable(heads, func(i, j int) bool { return heads[i].p.enqueued.Before(heads[j].p.enqueued) })
	waited := now.Sub(heads[0].p.enqueued)
	delay := b.cfg.MaxQueueDelay
	key := heads[0].key
	var picked []head
	for _, h := range heads {
		if h.key == key && len(picked) < b.maxBatch {
			picked = append(picked, h)
		}
	}
	bt := &batch{start: now, real: len(picked)}
	switch b.cfg.Strategy {
	case Direct:
		util := b.cfg.MinSlotUtilization
		if !b.closing && delay > 0 && util > 0 && waited < delay && float64(len(heads)) < util*float64(b.slots) {
			return nil, delay - waited
		}
		top := 0 // the batch reaches the highest occupied slot
		for i, s := range in.slots {
			if s != nil {
				top = i
			}
		}
		bt.rows = make([]row, top+1)
		for i := range bt.rows {
			bt.rows[i].s = in.slots[i]
		}
		for _, h := range picked {
			bt.rows[h.slot].p = h.p
		}
	case Oldest:
		n := len(picked)
		if !b.closing && delay > 0 && waited < delay && n < b.maxPref && !b.pref[n] {
			return nil, delay - waited
		}
		best := 0
		for p := range b.pref {
			if p <= n && p > best {
				best = p
			}
		}
		if best > 0 {
			n = best
		}
		for _, h := range picked[:n] {
			bt.rows = append(bt.rows, row{p: h.p, s: in.slots[h.slot]})
		}
		bt.real = n
	}
	for _, r := range bt.rows {
		if r.p == nil {
			continue
		}
		s := r.s
		s.queue = slices.Delete(s.queue, 0, 1)
		s.running = true
		r.p.state = dispatched
		if r.p.req.Sequence.Start || s.state == nil {
			s.state = b.initialState()
		}
	}
	b.queued -= bt.real
	b.obs.PendingChanged(b.queued)
	return bt, 0
}

// stateKey describes the state shapes the request's row will carry, so
// that rows with different state shapes are not batched together.
func (b *Batcher) stateKey(s *seq, p *pending) string {
	if len(b.cfg.States) == 0 {
		return ""
	}
	var k strings.Builder
	k.WriteByte(2)
	for i, st := range b.cfg.States {
		shape := st.Shape
		if !p.req.Sequence.Start && s.state != nil {
			shape = s.state[i].Shape
		}
		writeShape(&k, shape)
		k.WriteByte(0)
	}
	return k.String()
}

func (b *Batcher) initialState() []tensor.Tensor {
	out := make([]tensor.Tensor, len(b.cfg.States))
	for i, st := range b.cfg.States {
		t := tensor.Tensor{Name: st.Input, DataType: st.DataType, Shape: slices.Clone(st.Shape)}
		if st.Data == nil {
			t = zeros(t)
		} else {
			t.Data = bytes.Clone(st.Data)
		}
		out[i] = t
	}
	return out
}

// execute runs bt on in and hands every request its outcome.
func (b *Batcher) execute(in *instance, bt *batch) {
	var first *scheduler.Request
	var firstSeq *seq
	for _, r := range bt.rows {
		if r.p != nil {
			first, firstSeq = r.p.req, r.s
			break
		}
	}
	asked := first.Outputs
	outputs := slices.Clone(asked)
	for _, st := range b.cfg.States {
		if !slices.Contains(outputs, st.Output) {
			outputs = append(outputs, st.Output)
		}
	}

	t0 := time.Now()
	inputs, err := b.batchInputs(bt, first, firstSeq)
	t1 := time.Now()
	var outs []tensor.Tensor
	if err == nil {
		outs, err = b.call(in.inst, inputs, outputs)
	}
	t2 := time.Now()
	var pieces [][]tensor.Tensor
	if err == nil {
		pieces, err = b.split(outs, len(bt.rows), len(outputs))
	}
	t3 := time.Now()
	if err != nil {
		b.log.Debug("execution failed", "requests", bt.real, "rows", len(bt.rows), "error", err)
		err = infer.Errorf(infer.CodeOf(err), "model '%s' version %d failed to execute: %w", b.cfg.Model, b.cfg.Version, err)
	}
	b.obs.ExecutionDone(scheduler.ExecutionStats{
		BatchSize: len(bt.rows), Requests: bt.real,
		ComputeInput: t1.Sub(t0), ComputeInfer: t2.Sub(t1), ComputeOutput: t3.Sub(t2),
	})

	now := time.Now()
	b.mu.Lock()
	for i, r := range bt.rows {
		if r.p == nil {
			continue
		}
		s := r.s
		s.running = false
		s.last = now
		if err == nil {
			for k, st := range b.cfg.States {
				j := slices.Index(outputs, st.Output)
				t := pieces[i][j]
				shape := t.Shape
				if b.cfg.MaxBatchSize > 0 && len(shape) > 0 {
					shape = shape[1:]
				}
				s.state[k] = tensor.Tensor{Name: st.Input, DataType: t.DataType, Shape: slices.Clone(shape), Data: bytes.Clone(t.Data)}
			}
		}
		if s.ended && len(s.queue) == 0 {
			b.releaseLocked(s, reasonEnded)
		} else if len(s.queue) > 0 && s.inst != nil {
			s.inst.notify()
		}
	}
	b.mu.Unlock()

	exec := t3.Sub(t0)
	for i, r := range bt.rows {
		if r.p == nil {
			continue
		}
		res := outcome{
			err: err, queue: bt.start.Sub(r.p.enqueued),
			input: t1.Sub(t0), infer: t2.Sub(t1), output: t3.Sub(t2),
			compute:  exec / time.Duration(bt.real),
			requests: bt.real, rows: len(bt.rows),
		}
		if err == nil {
			res.outputs = pieces[i][:len(asked)]
		} else {
			res.reason = scheduler.FailureBackend
		}
		r.p.done <- res // buffered and sent once: never blocks
	}
}

// batchInputs builds the execution's inputs: the requests' inputs (zeros in
// padding rows), then the controls, then the states.
func (b *Batcher) batchInputs(bt *batch, first *scheduler.Request, firstSeq *seq) ([]tensor.Tensor, error) {
	batched := b.cfg.MaxBatchSize > 0
	n := len(bt.rows)
	out := make([]tensor.Tensor, 0, len(first.Inputs)+len(b.cfg.Controls)+len(b.cfg.States))
	if n == 1 {
		out = append(out, first.Inputs...)
	} else {
		parts := make([]tensor.Tensor, n)
		for _, in := range first.Inputs {
			for j, r := range bt.rows {
				if r.p == nil {
					parts[j] = zeros(in)
					continue
				}
				k := slices.IndexFunc(r.p.req.Inputs, func(t tensor.Tensor) bool { return t.Name == in.Name })
				if k < 0 {
					return nil, infer.Errorf(infer.CodeInternal, "batched request lacks input '%s'", in.Name)
				}
				parts[j] = r.p.req.Inputs[k]
			}
			t, err := tensor.Concat(parts)
			if err != nil {
				return nil, infer.Errorf(infer.CodeInternal, "batching input '%s': %w", in.Name, err)
			}
			out = append(out, t)
		}
	}
	for _, c := range b.cfg.Controls {
		t := tensor.Tensor{Name: c.Input, DataType: c.DataType, Shape: withBatch([]int64{1}, n, batched)}
		for _, r := range bt.rows {
			var v []byte
			switch {
			case c.Kind == ControlCorrID && r.p != nil:
				v, _ = corridValue(c.DataType, r.p.req.Sequence.ID) // checked at admission
			case c.Kind == ControlCorrID:
				v = corridZero(c.DataType)
			case r.p == nil:
				v = c.False
			case c.Kind == ControlReady,
				c.Kind == ControlStart && r.p.req.Sequence.Start,
				c.Kind == ControlEnd && r.p.req.Sequence.End:
				v = c.True
			default:
				v = c.False
			}
			t.Data = append(t.Data, v...)
		}
		out = append(out, t)
	}
	for k, st := range b.cfg.States {
		like := firstSeq.state[k]
		t := tensor.Tensor{Name: st.Input, DataType: like.DataType, Shape: withBatch(like.Shape, n, batched)}
		for _, r := range bt.rows {
			if r.p == nil {
				t.Data = append(t.Data, zeros(like).Data...)
			} else {
				t.Data = append(t.Data, r.s.state[k].Data...)
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// call runs Execute, turning a panic into an error so that a backend bug
// fails one batch rather than the worker.
func (b *Batcher) call(inst backend.Instance, inputs []tensor.Tensor, outputs []string) (outs []tensor.Tensor, err error) {
	defer func() {
		if v := recover(); v != nil {
			b.log.Error("instance panicked", "panic", v, "stack", string(debug.Stack()))
			outs, err = nil, infer.Errorf(infer.CodeInternal, "instance panicked: %v", v)
		}
	}()
	return inst.Execute(b.execCtx, inputs, outputs)
}

func closeInstance(b *Batcher, inst backend.Instance) (err error) {
	defer func() {
		if v := recover(); v != nil {
			b.log.Error("instance panicked while closing", "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("instance panicked while closing: %v", v)
		}
	}()
	return inst.Close()
}

// split checks the instance's outputs and cuts them per row.
func (b *Batcher) split(outs []tensor.Tensor, rows, asked int) ([][]tensor.Tensor, error) {
	if len(outs) != asked {
		return nil, infer.Errorf(infer.CodeInternal, "instance returned %d outputs, %d were requested", len(outs), asked)
	}
	if b.cfg.MaxBatchSize == 0 {
		return [][]tensor.Tensor{outs}, nil
	}
	sizes := make([]int64, rows)
	for i := range sizes {
		sizes[i] = 1
	}
	return scheduler.SplitOutputs(outs, sizes)
}

// reap releases sequences idle for longer than the idle timeout, until the
// batcher closes.
func (b *Batcher) reap() {
	t := time.NewTimer(b.cfg.IdleTimeout)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-b.reaperC:
		}
		b.mu.Lock()
		if b.closing {
			b.mu.Unlock()
			return
		}
		next := b.reapLocked(time.Now())
		b.mu.Unlock()
		t.Reset(next)
	}
}

// reapLocked releases the idle sequences and returns when the next one may
// become idle.
func (b *Batcher) reapLocked(now time.Time) time.Duration {
	idle := b.cfg.IdleTimeout
	next := idle
	check := func(s *seq) {
		if s == nil || len(s.queue) > 0 || s.running {
			return
		}
		if left := idle - now.Sub(s.last); left > 0 {
			next = min(next, left)
			return
		}
		b.log.Debug("releasing an idle sequence", "sequence", s.id.String())
		b.releaseLocked(s, reasonIdle)
	}
	for _, in := range b.insts {
		for i := range in.slots {
			check(in.slots[i])
		}
	}
	for _, s := range slices.Clone(b.backlog) {
		check(s)
	}
	return max(next, time.Millisecond)
}
