package mail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of a QueueConfig's zero fields.
const (
	DefaultQueueSize  = 1000
	DefaultWorkers    = 2
	DefaultMaxElapsed = 15 * time.Minute
)

// Results counted by helix_authz_mail_sent_total.
const (
	ResultSent    = "sent"    // the server accepted it
	ResultFailed  = "failed"  // refused for good, or retried until MaxElapsed
	ResultDropped = "dropped" // not queued (queue full) or still queued at shutdown
	ResultInvalid = "invalid" // refused by Enqueue: not a valid message
)

// ErrQueueFull is Enqueue's error when the queue holds Size messages.
var ErrQueueFull = errors.New("mail: the send queue is full")

// QueueConfig configures a Queue.
type QueueConfig struct {
	// Sender delivers (an *SMTP; required).
	Sender Sender
	// Size bounds the messages waiting (DefaultQueueSize when 0).
	Size int
	// Workers deliver at once (DefaultWorkers when 0), so one slow
	// delivery does not hold up the others.
	Workers int
	// MaxElapsed is how long a message is retried before it counts as
	// failed (DefaultMaxElapsed when 0).
	MaxElapsed time.Duration
	// BackOff makes the retry intervals (exponential, 500 ms doubling up
	// to 1 min, randomized, when nil); a test may make them short.
	BackOff func() backoff.BackOff
	// Registerer receives helix_authz_mail_sent_total (optional).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Queue delivers messages in the background: callers never wait on SMTP.
// It is a Sender whose Send only queues. Run starts the workers.
type Queue struct {
	cfg     QueueConfig
	pending chan Message
	sent    *prometheus.CounterVec
	log     *slog.Logger
	once    sync.Once
}

// NewQueue checks cfg and returns a Queue.
func NewQueue(cfg QueueConfig) (*Queue, error) {
	switch {
	case cfg.Sender == nil:
		return nil, errors.New("mail: queue: a sender is required")
	case cfg.Size < 0, cfg.Workers < 0, cfg.MaxElapsed < 0:
		return nil, fmt.Errorf("mail: queue: size %d, workers %d and max elapsed %v may not be negative", cfg.Size, cfg.Workers, cfg.MaxElapsed)
	}
	if cfg.Size == 0 {
		cfg.Size = DefaultQueueSize
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.MaxElapsed == 0 {
		cfg.MaxElapsed = DefaultMaxElapsed
	}
	if cfg.BackOff == nil {
		cfg.BackOff = func() backoff.BackOff {
			b := backoff.NewExponentialBackOff()
			b.InitialInterval = 500 * time.Millisecond
			b.MaxInterval = time.Minute
			return b
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	q := &Queue{
		cfg:     cfg,
		pending: make(chan Message, cfg.Size),
		log:     cfg.Logger,
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_authz_mail_sent_total",
			Help: "Mails by what became of them: sent (accepted by the SMTP server), failed (refused, or retried " +
				"until given up), dropped (queue full, or still queued at shutdown), invalid (refused when queued).",
		}, []string{"result"}),
	}
	for _, r := range []string{ResultSent, ResultFailed, ResultDropped, ResultInvalid} {
		q.sent.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(q.sent); err != nil {
			return nil, fmt.Errorf("mail: register metrics: %w", err)
		}
	}
	return q, nil
}

// Enqueue queues m for delivery and returns at once: an error when m is
// invalid (ErrInvalidMessage) or the queue is full (ErrQueueFull), both
// counted.
func (q *Queue) Enqueue(m Message) error {
	if err := m.Validate(); err != nil {
		q.sent.WithLabelValues(ResultInvalid).Inc()
		return err
	}
	select {
	case q.pending <- m:
		return nil
	default:
		q.sent.WithLabelValues(ResultDropped).Inc()
		q.log.Warn("mail queue full: a mail was dropped", "recipient_domain", domain(m.To), "size", q.cfg.Size)
		return ErrQueueFull
	}
}

// Send is Enqueue: it returns before delivery, so that callers never wait
// on SMTP. ctx is not used.
func (q *Queue) Send(_ context.Context, m Message) error { return q.Enqueue(m) }

// Run delivers queued messages until ctx ends, then returns once the
// workers have stopped; messages still queued then are dropped (counted,
// logged): a person asks again for a link that did not come. Run may be
// called once.
func (q *Queue) Run(ctx context.Context) {
	ran := false
	q.once.Do(func() { ran = true })
	if !ran {
		panic("mail: Queue.Run called twice")
	}
	var wg sync.WaitGroup
	for range q.cfg.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-q.pending:
					q.deliver(ctx, m)
				}
			}
		})
	}
	wg.Wait()
	if n := len(q.pending); n > 0 {
		q.sent.WithLabelValues(ResultDropped).Add(float64(n))
		q.log.Warn("mails still queued at shutdown were dropped", "count", n)
	}
}

// deliver sends m, retrying temporary failures.
func (q *Queue) deliver(ctx context.Context, m Message) {
	attempts := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempts++
		err := q.cfg.Sender.Send(ctx, m)
		var perm *PermanentError
		if errors.As(err, &perm) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(q.cfg.BackOff()), backoff.WithMaxElapsedTime(q.cfg.MaxElapsed),
		backoff.WithNotify(func(err error, next time.Duration) {
			q.log.Info("mail delivery failed; retrying", "recipient_domain", domain(m.To), "retry_in", next, "error", err)
		}))
	if err == nil {
		q.sent.WithLabelValues(ResultSent).Inc()
		return
	}
	if ctx.Err() != nil {
		q.sent.WithLabelValues(ResultDropped).Inc()
		q.log.Warn("mail delivery stopped by shutdown", "recipient_domain", domain(m.To), "attempts", attempts, "error", err)
		return
	}
	q.sent.WithLabelValues(ResultFailed).Inc()
	q.log.Error("mail not delivered", "recipient_domain", domain(m.To), "attempts", attempts, "error", err)
}
