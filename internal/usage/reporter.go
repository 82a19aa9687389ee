package usage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

// Sink takes a batch into the ledger. duplicate reports that the batch
// had been applied before (a resend) and was not counted again. An error
// leaves the batch unacknowledged: the Reporter sends it again, unchanged.
type Sink interface {
	Record(ctx context.Context, req *usagev1.RecordRequest) (duplicate bool, err error)
}

type grpcSink struct{ c usagev1.LedgerClient }

// NewGRPCSink is a Sink calling the Ledger service on conn (helix-authz's
// mTLS gRPC listener).
func NewGRPCSink(conn grpc.ClientConnInterface) Sink {
	return grpcSink{c: usagev1.NewLedgerClient(conn)}
}

func (s grpcSink) Record(ctx context.Context, req *usagev1.RecordRequest) (bool, error) {
	resp, err := s.c.Record(ctx, req)
	if err != nil {
		return false, err
	}
	return resp.GetDuplicate(), nil
}

// NewReporterID returns a reporter id unique per process run:
// kind/name/<random boot id>, at most 268 bytes. A restarted process numbers its batches
// from 1 again under a new id.
func NewReporterID(kind, name string) string {
	// The ledger keeps at most 300 bytes; cut a long name at a rune.
	for len(kind)+len(name) > 250 {
		_, n := utf8.DecodeLastRuneInString(name)
		if n == 0 {
			break
		}
		name = name[:len(name)-n]
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return kind + "/" + name + "/" + hex.EncodeToString(b[:])
}

// ReporterConfig configures a Reporter.
type ReporterConfig struct {
	// ID names the reporter in the ledger (NewReporterID).
	ID         string
	Aggregator *Aggregator
	Sink       Sink
	// Interval between flushes (default 10s).
	Interval time.Duration
	Logger   *slog.Logger
	// Registerer takes the reporter's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// DefaultInterval is the flush interval when ReporterConfig.Interval is 0.
const DefaultInterval = 10 * time.Second

// shutdownFlush bounds the last flush when Run's context ends.
const shutdownFlush = 5 * time.Second

// sendTimeout bounds one Record call.
const sendTimeout = 10 * time.Second

// Reporter drains an Aggregator into numbered batches and sends them to a
// Sink, each until acknowledged, in order, never changing one once sent.
type Reporter struct {
	cfg ReporterConfig

	mu      sync.Mutex // serializes flushes
	seq     uint64     // the last batch numbered
	pending *usagev1.RecordRequest

	batches *prometheus.CounterVec
	pendRow prometheus.Gauge
}

// NewReporter checks cfg and returns a Reporter.
func NewReporter(cfg ReporterConfig) (*Reporter, error) {
	switch {
	case cfg.ID == "":
		return nil, errors.New("usage: reporter id is empty")
	case cfg.Aggregator == nil:
		return nil, errors.New("usage: no aggregator")
	case cfg.Sink == nil:
		return nil, errors.New("usage: no sink")
	case cfg.Interval < 0:
		return nil, fmt.Errorf("usage: flush interval %v is negative", cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Reporter{
		cfg: cfg,
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_usage_batches_total",
			Help: "Usage batches sent to the ledger, by result: ok, duplicate (applied before, not counted again), error (to be resent), rejected (refused as invalid, dropped).",
		}, []string{"result"}),
		pendRow: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "helix_usage_pending_rows",
			Help: "Usage rows in the batch sent but not yet acknowledged.",
		}),
	}
	for _, res := range []string{"ok", "duplicate", "error", "rejected"} {
		r.batches.WithLabelValues(res)
	}
	if cfg.Registerer != nil {
		dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "helix_usage_dropped_total",
			Help: "Usage adds not counted: over the aggregator's key bound, or a client or model name the ledger would refuse.",
		}, func() float64 { return float64(cfg.Aggregator.Dropped()) })
		for _, c := range []prometheus.Collector{r.batches, r.pendRow, dropped} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("usage: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// ID is the reporter's id.
func (r *Reporter) ID() string { return r.cfg.ID }

// Run flushes every Interval until ctx ends, then flushes once more
// (bounded 5s) and returns nil. A failed flush is retried with backoff
// (from 500ms, doubling, at most Interval) while counts keep summing.
func (r *Reporter) Run(ctx context.Context) error {
	const minBackoff = 500 * time.Millisecond
	backoff := minBackoff
	wait := r.cfg.Interval
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownFlush)
			err := r.Flush(fctx)
			cancel()
			if err != nil {
				r.cfg.Logger.Warn("usage: last flush failed; its counts are lost", "reporter", r.cfg.ID, "err", err)
			}
			return nil
		case <-t.C:
		}
		if err := r.Flush(ctx); err != nil {
			if ctx.Err() == nil {
				r.cfg.Logger.Warn("usage: flush failed; will resend", "reporter", r.cfg.ID, "seq", r.seqNow(), "retry_in", backoff, "err", err)
			}
			wait = backoff
			backoff = min(backoff*2, r.cfg.Interval)
		} else {
			wait = r.cfg.Interval
			backoff = minBackoff
		}
		t.Reset(wait)
	}
}

func (r *Reporter) seqNow() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Flush sends the unacknowledged batch, if any, then drains the
// Aggregator into a new batch and sends it. It returns the first send's
// error; the batch stays pending, to be sent again unchanged by the next
// Flush, and nothing new is drained meanwhile.
func (r *Reporter) Flush(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending != nil {
		if err := r.send(ctx); err != nil {
			return err
		}
	}
	rows := r.cfg.Aggregator.Drain()
	if len(rows) == 0 {
		return nil
	}
	r.seq++
	r.pending = &usagev1.RecordRequest{Reporter: r.cfg.ID, Seq: r.seq, Rows: rows}
	r.pendRow.Set(float64(len(rows)))
	return r.send(ctx)
}

// send sends r.pending once; r.mu is held.
func (r *Reporter) send(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	dup, err := r.cfg.Sink.Record(sctx, r.pending)
	switch {
	case err == nil:
		res := "ok"
		if dup {
			res = "duplicate"
		}
		r.batches.WithLabelValues(res).Inc()
	case rejected(err):
		// Sending it again cannot succeed and would hold back every
		// later batch: drop it, loudly.
		r.batches.WithLabelValues("rejected").Inc()
		r.cfg.Logger.Error("usage: ledger refused a batch; dropped", "reporter", r.cfg.ID, "seq", r.pending.Seq, "rows", len(r.pending.Rows), "err", err)
	default:
		r.batches.WithLabelValues("error").Inc()
		return fmt.Errorf("usage: send batch %d: %w", r.pending.Seq, err)
	}
	r.pending = nil
	r.pendRow.Set(0)
	return nil
}

// rejected reports whether the ledger refused a batch for what it holds,
// so that sending it again is useless. A refusal of the caller
// (PERMISSION_DENIED, UNAUTHENTICATED) is not: configuration can be fixed.
func rejected(err error) bool {
	var inv interface{ Rejected() bool }
	if errors.As(err, &inv) {
		return inv.Rejected()
	}
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.InvalidArgument
}
