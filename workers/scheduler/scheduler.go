// Package scheduler queues inference requests for one model version and runs
// them on the version's backend instances with Triton's semantics: a bounded
// queue with timeouts, the dynamic batcher (preferred batch sizes, maximum
// queue delay, preserved ordering) and one execution at a time per instance.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// DefaultMaxQueueSize bounds the queue when Config.MaxQueueSize is 0.
const DefaultMaxQueueSize = 1024

// ErrConfig is wrapped by New's errors about a bad Config.
var ErrConfig = errors.New("invalid scheduler config")

// TimeoutAction is what happens to a request whose queue timeout expires
// (Triton's ModelQueuePolicy.TimeoutAction).
type TimeoutAction int

const (
	// Reject fails the request with CodeDeadlineExceeded.
	Reject TimeoutAction = iota
	// Delay moves the request behind every request that has not timed out.
	Delay
)

// Config describes how one model version is scheduled.
type Config struct {
	// Model and Version name the model in errors and logs.
	Model   string
	Version int64
	// MaxBatchSize is the largest batch an instance accepts; 0 means the
	// model does not batch and its inputs have no batch dimension.
	MaxBatchSize int
	// Dynamic turns on the dynamic batcher; nil runs each request on its own.
	Dynamic *DynamicBatching
	// MaxQueueSize bounds the queued requests; 0 means DefaultMaxQueueSize.
	MaxQueueSize int
	// DefaultTimeout bounds a request's time in the queue; 0 means no bound.
	DefaultTimeout time.Duration
	// AllowTimeoutOverride lets Request.Timeout shorten DefaultTimeout.
	AllowTimeoutOverride bool
	TimeoutAction        TimeoutAction
	// Instances run the batches; the Scheduler owns them once New succeeds
	// and closes them in Close.
	Instances []backend.Instance
	// Observer may be nil.
	Observer Observer
	// Logger may be nil (slog.Default).
	Logger *slog.Logger
}

// DynamicBatching is Triton's dynamic_batching configuration.
type DynamicBatching struct {
	// PreferredBatchSizes are sizes worth running at once; empty means
	// MaxBatchSize.
	PreferredBatchSizes []int
	// MaxQueueDelay is how long the oldest queued request may wait for a
	// batch to fill up.
	MaxQueueDelay time.Duration
	// PreserveOrdering returns results in the order requests arrived.
	PreserveOrdering bool
}

// Request is one inference request as the scheduler sees it.
type Request struct {
	// Inputs carry the batch dimension first when the model batches.
	Inputs []tensor.Tensor
	// Outputs names the outputs to compute, in the order returned.
	Outputs []string
	// Timeout, when positive, is the request's queue timeout; it applies
	// only where Config.AllowTimeoutOverride is set.
	Timeout time.Duration
	// Sequence is the request's sequence (zero outside one). The dynamic
	// batcher ignores it; workers/sequence schedules by it.
	Sequence infer.Sequence
	// Send, when set, makes the request decoupled: it runs alone on an
	// instance that implements backend.DecoupledInstance, each response's
	// outputs go to Send as they are produced, and Do returns no outputs.
	Send func(outputs []tensor.Tensor) error
	// Usage is filled by Do, for the usage ledger.
	Usage Usage
}

// Usage is what one request used, as the usage ledger counts it.
type Usage struct {
	// Rows is the request's batch size (1 for a model that does not batch)
	// when it succeeded, 0 when it failed.
	Rows int
	// Compute is the request's share of its execution's time (input
	// batching, Execute and output splitting): the execution's time x the
	// request's rows / the batch's rows. It is set when the request was
	// executed, even if the execution failed; 0 when it never ran.
	Compute time.Duration
}

// Scheduler queues requests of one model version and runs them on its
// instances. It is safe for concurrent use.
type Scheduler struct {
	cfg      Config
	log      *slog.Logger
	obs      Observer
	maxQueue int
	batching bool         // dynamic batching with MaxBatchSize > 0
	maxPref  int          // largest preferred batch size
	pref     map[int]bool // preferred batch sizes

	// execCtx is passed to Execute; it is cancelled only when Close gives up
	// waiting for executions to finish.
	execCtx    context.Context
	cancelExec context.CancelFunc

	mu        sync.Mutex
	queue     []*pending    // FIFO of requests waiting for a batch
	delayed   []*pending    // requests whose timeout expired under Delay
	wake      chan struct{} // closed to wake instance goroutines waiting for work
	timing    bool          // an instance goroutine waits out a max queue delay
	alarm     *alarm        // ends that wait; nil without a max queue delay
	closing   bool
	live      int // instance goroutines still running
	closeErrs []error
	stopped   chan struct{} // closed when the last instance goroutine ends
	nextSeq   uint64        // sequence number of the next batch

	order ordering
}

// pending is a queued or running request.
type pending struct {
	req      *Request
	ctx      context.Context // the caller's, for a decoupled request (Send set)
	size     int             // batch size
	key      string          // requests batch together only when keys are equal
	enqueued time.Time
	state    pendingState // guarded by Scheduler.mu
	done     chan outcome // buffered: sending never blocks
}

type pendingState int

const (
	queued pendingState = iota
	delayed
	dispatched
	withdrawn
)

// outcome is what an execution hands back to the request's Do call.
type outcome struct {
	outputs []tensor.Tensor
	err     error
	reason  string // failure reason when err is set
	queue   time.Duration
	input   time.Duration
	infer   time.Duration
	output  time.Duration
	compute time.Duration // the request's share of the execution time
	// For the request's trace: the requests in its batch and their rows
	// (int32 keeps the done channel's allocation in a small size class).
	requests, rows int32
}

// New starts a Scheduler with one goroutine per instance. On error the
// caller still owns cfg.Instances.
func New(cfg Config) (*Scheduler, error) {
	if err := validate(&cfg); err != nil {
		return nil, fmt.Errorf("model '%s' version %d: %w", cfg.Model, cfg.Version, err)
	}
	s := &Scheduler{
		cfg:      cfg,
		obs:      cfg.Observer,
		maxQueue: cfg.MaxQueueSize,
		live:     len(cfg.Instances),
		stopped:  make(chan struct{}),
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	if s.maxQueue == 0 {
		s.maxQueue = DefaultMaxQueueSize
	}
	s.log = cfg.Logger
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("model", cfg.Model, "version", cfg.Version)
	if cfg.Dynamic != nil && cfg.MaxBatchSize > 0 {
		s.batching = true
		s.maxPref = cfg.MaxBatchSize
		if len(cfg.Dynamic.PreferredBatchSizes) > 0 {
			s.maxPref = slices.Max(cfg.Dynamic.PreferredBatchSizes)
		}
		s.pref = make(map[int]bool, len(cfg.Dynamic.PreferredBatchSizes))
		for _, n := range cfg.Dynamic.PreferredBatchSizes {
			s.pref[n] = true
		}
		if cfg.Dynamic.MaxQueueDelay > 0 {
			s.alarm = newAlarm(s.log)
		}
	}
	if cfg.Dynamic != nil && cfg.Dynamic.PreserveOrdering {
		s.order.enabled = true
		s.order.ready = make(map[uint64][]delivery)
	}
	s.execCtx, s.cancelExec = context.WithCancel(context.Background())
	for _, inst := range cfg.Instances {
		go s.serve(inst)
	}
	return s, nil
}

func validate(cfg *Config) error {
	switch {
	case len(cfg.Instances) == 0:
		return fmt.Errorf("%w: no instances", ErrConfig)
	case slices.Contains(cfg.Instances, nil):
		return fmt.Errorf("%w: nil instance", ErrConfig)
	case cfg.MaxBatchSize < 0:
		return fmt.Errorf("%w: max_batch_size %d is negative", ErrConfig, cfg.MaxBatchSize)
	case cfg.MaxQueueSize < 0:
		return fmt.Errorf("%w: max_queue_size %d is negative", ErrConfig, cfg.MaxQueueSize)
	case cfg.DefaultTimeout < 0:
		return fmt.Errorf("%w: default timeout %v is negative", ErrConfig, cfg.DefaultTimeout)
	case cfg.TimeoutAction != Reject && cfg.TimeoutAction != Delay:
		return fmt.Errorf("%w: unknown timeout action %d", ErrConfig, cfg.TimeoutAction)
	}
	if d := cfg.Dynamic; d != nil {
		if d.MaxQueueDelay < 0 {
			return fmt.Errorf("%w: max queue delay %v is negative", ErrConfig, d.MaxQueueDelay)
		}
		for _, n := range d.PreferredBatchSizes {
			if n <= 0 || n > cfg.MaxBatchSize {
				return fmt.Errorf("%w: preferred batch size %d must be in [1, max_batch_size %d]", ErrConfig, n, cfg.MaxBatchSize)
			}
		}
	}
	return nil
}

// Do queues r, waits for its execution and returns its outputs, in the
// order r.Outputs names them, and fills r.Usage (so concurrent calls must
// not share r). Errors are *infer.Error.
func (s *Scheduler) Do(ctx context.Context, r *Request) ([]tensor.Tensor, error) {
	start := time.Now()
	r.Usage = Usage{}
	p, err := s.admit(ctx, r)
	if err != nil {
		reason := FailureRejected
		switch infer.CodeOf(err) {
		case infer.CodeInvalidArgument:
			reason = FailureOther
		case infer.CodeCancelled, infer.CodeDeadlineExceeded:
			reason = FailureCanceled
		}
		s.obs.RequestDone(RequestStats{FailureReason: reason, BatchSize: max(p.size, 1), Total: time.Since(start)})
		return nil, err
	}
	res, reason := s.wait(ctx, p)
	r.Usage = Usage{Compute: res.compute}
	if res.err == nil {
		r.Usage.Rows = p.size
	}
	st := RequestStats{
		Success:       res.err == nil,
		FailureReason: reason,
		BatchSize:     p.size,
		Queue:         res.queue,
		ComputeInput:  res.input,
		ComputeInfer:  res.infer,
		ComputeOutput: res.output,
		Total:         time.Since(start),
	}
	// One context lookup; the spans cost nothing unless sampled.
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		s.traceRequest(ctx, p, &res)
		if sc := span.SpanContext(); sc.IsSampled() {
			st.Trace = sc.TraceID()
		}
	}
	s.obs.RequestDone(st)
	return res.outputs, res.err
}

// admit checks r and queues it.
func (s *Scheduler) admit(ctx context.Context, r *Request) (*pending, error) {
	p := &pending{req: r}
	if r.Send != nil {
		p.ctx = ctx
	}
	if err := ctx.Err(); err != nil {
		return p, s.ctxError(err)
	}
	size, err := s.batchSize(r)
	if err != nil {
		return p, err
	}
	p.size = size
	if s.batching && r.Send == nil {
		p.key = batchKey(r)
	}
	p.done = make(chan outcome, 1)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return p, infer.Errorf(infer.CodeUnavailable, "model '%s' is unloading", s.cfg.Model)
	}
	if s.queuedLocked() >= s.maxQueue {
		return p, infer.Errorf(infer.CodeResourceExhausted, "model '%s' queue is full (max_queue_size %d)", s.cfg.Model, s.maxQueue)
	}
	p.enqueued = time.Now()
	s.queue = append(s.queue, p)
	s.pendingChangedLocked()
	s.broadcastLocked()
	return p, nil
}

// timeout is the queue timeout that applies to r, 0 for none. As in
// Triton, a request may only shorten the default.
func (s *Scheduler) timeout(r *Request) time.Duration {
	t := s.cfg.DefaultTimeout
	if s.cfg.AllowTimeoutOverride && r.Timeout > 0 && (t == 0 || r.Timeout < t) {
		t = r.Timeout
	}
	return t
}

// wait blocks until p's outcome, its cancellation or its queue timeout, and
// returns the outcome with a failure reason for the Observer.
func (s *Scheduler) wait(ctx context.Context, p *pending) (outcome, string) {
	var expired <-chan time.Time
	if d := s.timeout(p.req); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		expired = t.C
	}
	for {
		select {
		case res := <-p.done:
			return res, res.reason
		case <-ctx.Done():
			// A request already running has its result discarded: done is
			// buffered, so the instance never waits for this caller.
			if !s.withdraw(p) && p.req.Send != nil {
				// A running decoupled request may still call Send: its
				// execution sees ctx end (see executeDecoupled), and Do
				// returns only after it, so Send is never called late.
				res := <-p.done
				if res.err == nil {
					res.err = s.ctxError(ctx.Err())
				}
				return res, FailureCanceled
			}
			return outcome{err: s.ctxError(ctx.Err())}, FailureCanceled
		case <-expired:
			expired = nil
			if s.expire(p) {
				return outcome{err: infer.Errorf(infer.CodeDeadlineExceeded,
					"request timeout expired for model '%s' after %v in queue", s.cfg.Model, s.timeout(p.req))}, FailureRejected
			}
		}
	}
}

func (s *Scheduler) ctxError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return infer.Errorf(infer.CodeDeadlineExceeded, "request for model '%s' exceeded its deadline: %w", s.cfg.Model, err)
	}
	return infer.Errorf(infer.CodeCancelled, "request for model '%s' was cancelled: %w", s.cfg.Model, err)
}

// withdraw takes p out of the queue if it has not been dispatched yet and
// reports whether it did (or p was already withdrawn).
func (s *Scheduler) withdraw(p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p.state {
	case queued:
		s.queue = remove(s.queue, p)
	case delayed:
		s.delayed = remove(s.delayed, p)
	case withdrawn:
		return true
	default:
		return false
	}
	p.state = withdrawn
	s.pendingChangedLocked()
	return true
}

// expire applies the timeout action to p and reports whether p was
// rejected. Requests already running are left alone.
func (s *Scheduler) expire(p *pending) (rejected bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.state != queued {
		return false
	}
	s.queue = remove(s.queue, p)
	if s.cfg.TimeoutAction == Delay {
		p.state = delayed
		s.delayed = append(s.delayed, p)
		return false
	}
	p.state = withdrawn
	s.pendingChangedLocked()
	return true
}

func remove(q []*pending, p *pending) []*pending {
	if i := slices.Index(q, p); i >= 0 {
		return slices.Delete(q, i, i+1)
	}
	return q
}

// Pending returns the number of queued requests, running ones excluded.
func (s *Scheduler) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queuedLocked()
}

func (s *Scheduler) queuedLocked() int { return len(s.queue) + len(s.delayed) }

func (s *Scheduler) pendingChangedLocked() { s.obs.PendingChanged(s.queuedLocked()) }

// broadcastLocked wakes every instance goroutine waiting in next.
func (s *Scheduler) broadcastLocked() {
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}

// Close stops accepting requests (Do then fails with CodeUnavailable), lets
// queued and running requests finish, and closes every instance after its
// last execution. If ctx ends first, requests still queued fail with
// CodeUnavailable, running executions see their context cancelled, their
// instances are closed in the background when they return, and Close
// returns ctx's error. Close may be called more than once.
func (s *Scheduler) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.broadcastLocked()
	s.mu.Unlock()

	select {
	case <-s.stopped:
		s.cancelExec()
		s.mu.Lock()
		defer s.mu.Unlock()
		return errors.Join(s.closeErrs...)
	case <-ctx.Done():
	}
	s.mu.Lock()
	dropped := append(s.queue, s.delayed...)
	s.queue, s.delayed = nil, nil
	for _, p := range dropped {
		p.state = withdrawn
		p.done <- outcome{err: infer.Errorf(infer.CodeUnavailable, "model '%s' is unloading", s.cfg.Model), reason: FailureRejected}
	}
	if len(dropped) > 0 {
		s.pendingChangedLocked()
	}
	s.mu.Unlock()
	s.cancelExec()
	s.log.Warn("unload did not wait for running executions", "dropped_requests", len(dropped), "error", ctx.Err())
	return fmt.Errorf("closing model '%s' version %d: %w", s.cfg.Model, s.cfg.Version, ctx.Err())
}
