// Package sequence is Triton's sequence batcher: it runs the requests of
// stateful models, grouped into sequences by a correlation id, so that all
// requests of one sequence go to the same model instance, one at a time and
// in arrival order, with the control inputs (START, END, READY, CORRID) and
// the implicit state (sequence_batching.state) the model expects.
//
// Two strategies, as in Triton. Direct: a sequence owns a batch slot of one
// instance until it ends; a batch holds one request per occupied slot, up
// to the highest occupied slot, and slots with nothing to run are filled
// with READY=0 rows of zeros. Oldest: a sequence is a candidate of one
// instance, and a batch holds the oldest requests of up to max_batch_size
// different candidates. Sequences that find no free slot wait in a bounded
// backlog. A sequence with nothing queued for longer than the idle timeout
// is released.
package sequence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/internal/telemetry"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/tensor"
)

// DefaultIdleTimeout is Triton's default max_sequence_idle_microseconds.
const DefaultIdleTimeout = time.Second

// DefaultMaxBacklog bounds the sequences waiting for a slot when
// Config.MaxBacklog is 0.
const DefaultMaxBacklog = 1024

// DefaultMaxQueueSize bounds the queued requests when Config.MaxQueueSize
// is 0.
const DefaultMaxQueueSize = scheduler.DefaultMaxQueueSize

// ErrConfig is wrapped by New's errors about a bad Config.
var ErrConfig = errors.New("invalid sequence batcher config")

// Strategy is how sequences share an instance's batches.
type Strategy int

const (
	// Direct gives each sequence a batch slot of its own.
	Direct Strategy = iota
	// Oldest batches the oldest requests of the candidate sequences.
	Oldest
)

// ControlKind is the kind of a control input.
type ControlKind int

// The control kinds, as Triton's ModelSequenceBatching.Control.Kind.
const (
	ControlStart ControlKind = iota
	ControlReady
	ControlEnd
	ControlCorrID
)

func (k ControlKind) String() string {
	switch k {
	case ControlStart:
		return "START"
	case ControlReady:
		return "READY"
	case ControlEnd:
		return "END"
	case ControlCorrID:
		return "CORRID"
	}
	return fmt.Sprintf("ControlKind(%d)", int(k))
}

// Control is a control input the batcher fills for every batch row.
type Control struct {
	// Input is the model input's name.
	Input string
	Kind  ControlKind
	// DataType is the tensor's type: INT32, FP32 or BOOL for the boolean
	// kinds; for CORRID UINT64, INT64, UINT32, INT32 or BYTES (a string).
	DataType tensor.DataType
	// False and True are one element each, encoded as DataType (boolean
	// kinds only).
	False, True []byte
}

// State is an implicit state: the batcher feeds the sequence's state as
// Input and keeps what the model returns as Output for the next request.
type State struct {
	Input, Output string
	DataType      tensor.DataType
	// Initial is the state of one row at the start of a sequence: shape
	// without the batch dimension, and data (zeros when Data is nil).
	Shape []int64
	Data  []byte
}

// Config describes the sequence batcher of one model version.
type Config struct {
	// Model and Version name the model in errors and logs.
	Model   string
	Version int64
	// MaxBatchSize is the model's max_batch_size; 0: it does not batch and
	// its inputs have no batch dimension.
	MaxBatchSize int
	Strategy     Strategy
	// MaxQueueDelay: Direct waits up to this long for MinSlotUtilization of
	// the slots to have a request; Oldest waits up to this long for a
	// preferred (or full) batch.
	MaxQueueDelay      time.Duration
	MinSlotUtilization float64
	// PreferredBatchSizes (Oldest) are batch sizes worth running at once.
	PreferredBatchSizes []int
	// MaxCandidates (Oldest) is the number of sequences per instance that
	// may be batched; 0 means max(1, MaxBatchSize).
	MaxCandidates int
	// IdleTimeout releases a sequence with nothing queued or running for
	// this long; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxBacklog bounds the sequences waiting for a slot; 0 means
	// DefaultMaxBacklog.
	MaxBacklog int
	// MaxQueueSize bounds the queued requests; 0 means DefaultMaxQueueSize.
	MaxQueueSize int
	Controls     []Control
	States       []State
	// Instances run the batches; the Batcher owns them once New succeeds
	// and closes them in Close.
	Instances []backend.Instance
	// Observer may be nil.
	Observer scheduler.Observer
	// Logger may be nil (slog.Default).
	Logger *slog.Logger
}

// Batcher runs the requests of one sequence model version. It is safe for
// concurrent use.
type Batcher struct {
	cfg        Config
	log        *slog.Logger
	obs        scheduler.Observer
	slots      int // per instance
	maxBatch   int // rows per execution
	maxPref    int // Oldest: batch size worth running at once
	pref       map[int]bool
	corrid     *Control
	maxBacklog int
	maxQueue   int

	execCtx    context.Context
	cancelExec context.CancelFunc

	mu        sync.Mutex
	insts     []*instance
	active    map[infer.CorrelationID]*seq // sequences that take requests
	backlog   []*seq                       // sequences waiting for a slot, FIFO
	released  released
	queued    int
	closing   bool
	live      int
	closeErrs []error
	stopped   chan struct{} // closed when the last instance goroutine ends
	reaperC   chan struct{} // wakes the reaper (buffered 1)
}

// seq is one sequence: its queue, its place and its state.
type seq struct {
	id      infer.CorrelationID
	inst    *instance // nil while in the backlog or released
	slot    int
	queue   []*pending
	running bool // a request of it is executing
	ended   bool // its END request was admitted: it takes no more requests
	gone    bool // released
	last    time.Time
	state   []tensor.Tensor // per Config.States, one row, nil until started
}

// pending is a queued or running request.
type pending struct {
	req      *scheduler.Request
	seq      *seq
	key      string // requests batch together only when keys are equal
	enqueued time.Time
	state    pendingState // guarded by Batcher.mu
	done     chan outcome // buffered: sending never blocks
}

type pendingState int

const (
	queued pendingState = iota
	dispatched
	withdrawn
)

// outcome is what an execution hands back to the request's Do call.
type outcome struct {
	outputs              []tensor.Tensor
	err                  error
	reason               string
	queue                time.Duration
	input, infer, output time.Duration
	compute              time.Duration
	requests, rows       int
}

// New starts a Batcher with one goroutine per instance and one that
// releases idle sequences. On error the caller still owns cfg.Instances.
func New(cfg Config) (*Batcher, error) {
	if err := validate(&cfg); err != nil {
		return nil, fmt.Errorf("model '%s' version %d: %w", cfg.Model, cfg.Version, err)
	}
	b := &Batcher{
		cfg: cfg, obs: cfg.Observer, log: cfg.Logger,
		maxBatch: max(1, cfg.MaxBatchSize), maxBacklog: cfg.MaxBacklog, maxQueue: cfg.MaxQueueSize,
		active:  make(map[infer.CorrelationID]*seq),
		live:    len(cfg.Instances),
		stopped: make(chan struct{}),
		reaperC: make(chan struct{}, 1),
	}
	if b.obs == nil {
		b.obs = nopObserver{}
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.log = b.log.With("model", cfg.Model, "version", cfg.Version)
	if b.cfg.IdleTimeout == 0 {
		b.cfg.IdleTimeout = DefaultIdleTimeout
	}
	if b.maxBacklog == 0 {
		b.maxBacklog = DefaultMaxBacklog
	}
	if b.maxQueue == 0 {
		b.maxQueue = DefaultMaxQueueSize
	}
	b.slots = b.maxBatch
	if cfg.Strategy == Oldest {
		b.slots = cfg.MaxCandidates
		if b.slots == 0 {
			b.slots = b.maxBatch
		}
		b.maxPref = b.maxBatch
		if len(cfg.PreferredBatchSizes) > 0 {
			b.maxPref = slices.Max(cfg.PreferredBatchSizes)
		}
		b.pref = make(map[int]bool)
		for _, n := range cfg.PreferredBatchSizes {
			b.pref[n] = true
		}
	}
	for i := range cfg.Controls {
		if cfg.Controls[i].Kind == ControlCorrID {
			b.corrid = &b.cfg.Controls[i]
		}
	}
	b.execCtx, b.cancelExec = context.WithCancel(context.Background())
	for _, inst := range cfg.Instances {
		in := &instance{b: b, inst: inst, slots: make([]*seq, b.slots), wake: make(chan struct{}, 1)}
		b.insts = append(b.insts, in)
	}
	for _, in := range b.insts {
		go in.serve()
	}
	go b.reap()
	return b, nil
}

func validate(cfg *Config) error {
	switch {
	case len(cfg.Instances) == 0:
		return fmt.Errorf("%w: no instances", ErrConfig)
	case slices.Contains(cfg.Instances, nil):
		return fmt.Errorf("%w: nil instance", ErrConfig)
	case cfg.MaxBatchSize < 0:
		return fmt.Errorf("%w: max_batch_size %d is negative", ErrConfig, cfg.MaxBatchSize)
	case cfg.Strategy != Direct && cfg.Strategy != Oldest:
		return fmt.Errorf("%w: unknown strategy %d", ErrConfig, cfg.Strategy)
	case cfg.MaxQueueDelay < 0, cfg.IdleTimeout < 0:
		return fmt.Errorf("%w: negative delay or idle timeout", ErrConfig)
	case cfg.MinSlotUtilization < 0 || cfg.MinSlotUtilization > 1:
		return fmt.Errorf("%w: minimum_slot_utilization %v is not in [0, 1]", ErrConfig, cfg.MinSlotUtilization)
	case cfg.MaxCandidates < 0, cfg.MaxBacklog < 0, cfg.MaxQueueSize < 0:
		return fmt.Errorf("%w: negative max_candidate_sequences, backlog or queue size", ErrConfig)
	}
	for _, n := range cfg.PreferredBatchSizes {
		if n <= 0 || n > max(1, cfg.MaxBatchSize) {
			return fmt.Errorf("%w: preferred batch size %d must be in [1, max_batch_size %d]", ErrConfig, n, cfg.MaxBatchSize)
		}
	}
	kinds := map[ControlKind]bool{}
	for _, c := range cfg.Controls {
		if kinds[c.Kind] {
			return fmt.Errorf("%w: more than one %s control", ErrConfig, c.Kind)
		}
		kinds[c.Kind] = true
		if c.Kind == ControlCorrID {
			switch c.DataType {
			case tensor.Uint64, tensor.Int64, tensor.Uint32, tensor.Int32, tensor.Bytes:
			default:
				return fmt.Errorf("%w: CORRID control %q has data type %s", ErrConfig, c.Input, c.DataType)
			}
			continue
		}
		size := c.DataType.ElementSize()
		if size == 0 || len(c.False) != size || len(c.True) != size {
			return fmt.Errorf("%w: %s control %q: false/true values must be one %s element each", ErrConfig, c.Kind, c.Input, c.DataType)
		}
	}
	for _, s := range cfg.States {
		init := tensor.Tensor{Name: s.Input, DataType: s.DataType, Shape: s.Shape, Data: s.Data}
		if init.Data == nil {
			init = zeros(init)
		}
		if err := init.Validate(); err != nil {
			return fmt.Errorf("%w: initial state of %q: %v", ErrConfig, s.Input, err)
		}
	}
	return nil
}

// Do queues r in its sequence (r.Sequence), waits for its execution and
// returns its outputs in the order r.Outputs names them; it fills r.Usage.
// Errors are *infer.Error.
func (b *Batcher) Do(ctx context.Context, r *scheduler.Request) ([]tensor.Tensor, error) {
	start := time.Now()
	r.Usage = scheduler.Usage{}
	p, err := b.admit(ctx, r)
	if err != nil {
		reason := scheduler.FailureRejected
		switch infer.CodeOf(err) {
		case infer.CodeInvalidArgument:
			reason = scheduler.FailureOther
		case infer.CodeCancelled, infer.CodeDeadlineExceeded:
			reason = scheduler.FailureCanceled
		}
		b.obs.RequestDone(scheduler.RequestStats{FailureReason: reason, BatchSize: 1, Total: time.Since(start)})
		return nil, err
	}
	var res outcome
	select {
	case res = <-p.done:
	case <-ctx.Done():
		if b.withdraw(p) {
			res = outcome{err: b.ctxError(ctx.Err()), reason: scheduler.FailureCanceled}
		} else {
			// Already running: its outcome comes soon and keeps the
			// sequence's state right; the caller gets its cancellation.
			res = <-p.done
			res.outputs, res.err, res.reason = nil, b.ctxError(ctx.Err()), scheduler.FailureCanceled
		}
	}
	r.Usage = scheduler.Usage{Compute: res.compute}
	if res.err == nil {
		r.Usage.Rows = 1
	}
	st := scheduler.RequestStats{
		Success: res.err == nil, FailureReason: res.reason, BatchSize: 1,
		Queue: res.queue, ComputeInput: res.input, ComputeInfer: res.infer, ComputeOutput: res.output,
		Total: time.Since(start),
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		if res.requests > 0 {
			scheduler.TraceExecution(ctx, p.enqueued, res.queue, res.input, res.infer+res.output, res.requests, res.rows, res.err)
		} else {
			// Never executed (cancelled, dropped at unload): the queue span
			// covers the wait until then.
			infer.ChildSpan(ctx, telemetry.SpanQueue, p.enqueued, time.Now(), res.err)
		}
		if sc := span.SpanContext(); sc.IsSampled() {
			st.Trace = sc.TraceID()
		}
	}
	b.obs.RequestDone(st)
	return res.outputs, res.err
}

func (b *Batcher) ctxError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return infer.Errorf(infer.CodeDeadlineExceeded, "request for model '%s' exceeded its deadline: %w", b.cfg.Model, err)
	}
	return infer.Errorf(infer.CodeCancelled, "request for model '%s' was cancelled: %w", b.cfg.Model, err)
}

// admit checks r and queues it in its sequence.
func (b *Batcher) admit(ctx context.Context, r *scheduler.Request) (*pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, b.ctxError(err)
	}
	if err := b.check(r); err != nil {
		return nil, err
	}
	p := &pending{req: r, key: requestKey(r.Inputs, r.Outputs, b.cfg.MaxBatchSize > 0), done: make(chan outcome, 1)}
	id := r.Sequence.ID

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return nil, infer.Errorf(infer.CodeUnavailable, "model '%s' is unloading", b.cfg.Model)
	}
	if b.queued >= b.maxQueue {
		return nil, infer.Errorf(infer.CodeResourceExhausted, "model '%s' queue is full (%d requests)", b.cfg.Model, b.maxQueue)
	}
	s := b.active[id]
	if s == nil && !r.Sequence.Start {
		return nil, infer.Errorf(infer.CodeInvalidArgument,
			"inference request for sequence %s to model '%s' must specify the START flag on the first request of the sequence; %s",
			id, b.cfg.Model, b.released.explain(id, b.cfg.IdleTimeout))
	}
	now := time.Now()
	if s == nil {
		s = &seq{id: id, slot: -1, last: now}
		if !b.placeLocked(s) {
			if len(b.backlog) >= b.maxBacklog {
				return nil, infer.Errorf(infer.CodeResourceExhausted,
					"model '%s' has no free sequence slot and %d sequences already wait for one", b.cfg.Model, len(b.backlog))
			}
			b.backlog = append(b.backlog, s)
		}
		b.active[id] = s
		b.released.forget(id)
	} else if r.Sequence.Start {
		// Triton: the running sequence ends early; its queued requests
		// run first, then the START request resets the state.
		b.log.Warn("a sequence was started again before it ended; it restarts", "sequence", id.String())
	}
	if r.Sequence.End {
		s.ended = true
		delete(b.active, id)
		b.released.add(id, reasonEnded)
	}
	p.seq = s
	p.enqueued = now
	s.queue = append(s.queue, p)
	s.last = now
	b.queued++
	b.obs.PendingChanged(b.queued)
	if s.inst != nil {
		s.inst.notify()
	}
	return p, nil
}

// check validates r's inputs and sequence on their own.
func (b *Batcher) check(r *scheduler.Request) error {
	if r.Send != nil {
		return infer.Errorf(infer.CodeInvalidArgument, "model '%s': decoupled requests are not supported by the sequence batcher", b.cfg.Model)
	}
	if r.Sequence.ID.IsZero() {
		return infer.Errorf(infer.CodeInvalidArgument, "inference request to model '%s' must specify a non-zero or non-empty correlation ID", b.cfg.Model)
	}
	if c := b.corrid; c != nil {
		if _, err := corridValue(c.DataType, r.Sequence.ID); err != nil {
			return infer.Errorf(infer.CodeInvalidArgument, "model '%s' sequence %s: %v", b.cfg.Model, r.Sequence.ID, err)
		}
	}
	if len(b.cfg.States) > 0 && len(r.Outputs) == 0 {
		return infer.Errorf(infer.CodeInternal, "model '%s': a model with implicit state needs the outputs named", b.cfg.Model)
	}
	for i := range r.Inputs {
		in := &r.Inputs[i]
		if slices.ContainsFunc(r.Inputs[:i], func(t tensor.Tensor) bool { return t.Name == in.Name }) {
			return infer.Errorf(infer.CodeInvalidArgument, "input '%s' is given more than once for '%s'", in.Name, b.cfg.Model)
		}
		if b.isControlOrState(in.Name) {
			return infer.Errorf(infer.CodeInvalidArgument, "input '%s' of model '%s' is filled by the sequence batcher; do not send it", in.Name, b.cfg.Model)
		}
		if err := in.Validate(); err != nil {
			return infer.Errorf(infer.CodeInvalidArgument, "model '%s': %w", b.cfg.Model, err)
		}
		if b.cfg.MaxBatchSize > 0 && (len(in.Shape) == 0 || in.Shape[0] != 1) {
			return infer.Errorf(infer.CodeInvalidArgument,
				"inference request to model '%s' must specify batch-size 1 due to requirements of sequence batcher (input '%s' has shape %v)",
				b.cfg.Model, in.Name, in.Shape)
		}
	}
	if b.cfg.MaxBatchSize > 0 && len(r.Inputs) == 0 {
		return infer.Errorf(infer.CodeInvalidArgument, "request has no inputs but model '%s' requires a batch dimension", b.cfg.Model)
	}
	return nil
}

func (b *Batcher) isControlOrState(name string) bool {
	for _, c := range b.cfg.Controls {
		if c.Input == name {
			return true
		}
	}
	for _, s := range b.cfg.States {
		if s.Input == name {
			return true
		}
	}
	return false
}

// placeLocked gives s a free slot, on the instance with the fewest
// sequences, and reports whether there was one.
func (b *Batcher) placeLocked(s *seq) bool {
	var best *instance
	bestSlot, bestUsed := -1, 0
	for _, in := range b.insts {
		used, free := 0, -1
		for i, o := range in.slots {
			if o != nil {
				used++
			} else if free < 0 {
				free = i
			}
		}
		if free >= 0 && (best == nil || used < bestUsed) {
			best, bestSlot, bestUsed = in, free, used
		}
	}
	if best == nil {
		return false
	}
	best.slots[bestSlot] = s
	s.inst, s.slot = best, bestSlot
	return true
}

// releaseLocked frees s (it has nothing queued or running): its slot goes
// to the oldest sequence of the backlog.
func (b *Batcher) releaseLocked(s *seq, why reason) {
	if s.gone {
		return
	}
	s.gone = true
	if b.active[s.id] == s {
		delete(b.active, s.id)
		b.released.add(s.id, why)
	}
	if s.inst == nil {
		if i := slices.Index(b.backlog, s); i >= 0 {
			b.backlog = slices.Delete(b.backlog, i, i+1)
		}
		return
	}
	in, slot := s.inst, s.slot
	in.slots[slot] = nil
	s.inst = nil
	if len(b.backlog) > 0 {
		next := b.backlog[0]
		b.backlog = slices.Delete(b.backlog, 0, 1)
		in.slots[slot] = next
		next.inst, next.slot = in, slot
		in.notify()
	}
}

// withdraw takes p out of its sequence's queue if it has not been
// dispatched, and reports whether it did.
func (b *Batcher) withdraw(p *pending) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.state != queued {
		return false
	}
	s := p.seq
	if i := slices.Index(s.queue, p); i >= 0 {
		s.queue = slices.Delete(s.queue, i, i+1)
	}
	p.state = withdrawn
	b.queued--
	b.obs.PendingChanged(b.queued)
	if s.ended && len(s.queue) == 0 && !s.running {
		b.releaseLocked(s, reasonEnded)
	}
	return true
}

// Pending returns the number of queued requests, running ones excluded.
func (b *Batcher) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queued
}

// Sequences returns the number of sequences the batcher tracks (in a slot
// or in the backlog).
func (b *Batcher) Sequences() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.backlog)
	for _, in := range b.insts {
		for _, s := range in.slots {
			if s != nil {
				n++
			}
		}
	}
	return n
}

// Close stops accepting requests (Do then fails with CodeUnavailable),
// fails the requests of sequences still waiting for a slot, lets queued
// and running requests in slots finish, and closes every instance after
// its last execution. If ctx ends first, what is still queued fails with
// CodeUnavailable, running executions see their context cancelled and
// Close returns ctx's error. Close may be called more than once.
func (b *Batcher) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closing {
		b.closing = true
		for _, s := range b.backlog {
			b.dropLocked(s)
			s.gone = true
		}
		b.backlog = nil
		for _, in := range b.insts {
			in.notify()
		}
		select {
		case b.reaperC <- struct{}{}:
		default:
		}
	}
	b.mu.Unlock()

	select {
	case <-b.stopped:
		b.cancelExec()
		b.mu.Lock()
		defer b.mu.Unlock()
		return errors.Join(b.closeErrs...)
	case <-ctx.Done():
	}
	b.mu.Lock()
	dropped := 0
	for _, in := range b.insts {
		for _, s := range in.slots {
			if s != nil {
				dropped += b.dropLocked(s)
			}
		}
	}
	b.mu.Unlock()
	b.cancelExec()
	b.log.Warn("unload did not wait for running executions", "dropped_requests", dropped, "error", ctx.Err())
	return fmt.Errorf("closing model '%s' version %d: %w", b.cfg.Model, b.cfg.Version, ctx.Err())
}

// dropLocked fails s's queued requests UNAVAILABLE.
func (b *Batcher) dropLocked(s *seq) int {
	n := len(s.queue)
	for _, p := range s.queue {
		p.state = withdrawn
		p.done <- outcome{err: infer.Errorf(infer.CodeUnavailable, "model '%s' is unloading", b.cfg.Model), reason: scheduler.FailureRejected}
	}
	s.queue = nil
	if n > 0 {
		b.queued -= n
		b.obs.PendingChanged(b.queued)
	}
	return n
}

type nopObserver struct{}

func (nopObserver) RequestDone(scheduler.RequestStats)     {}
func (nopObserver) ExecutionDone(scheduler.ExecutionStats) {}
func (nopObserver) PendingChanged(int)                     {}
