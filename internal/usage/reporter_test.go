package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

// fakeLedger is a Sink that applies a batch once per (reporter, seq), as
// helix-authz's store does, and can fail in the ways a network does.
type fakeLedger struct {
	mu       sync.Mutex
	sent     []*usagev1.RecordRequest // every call, cloned
	applied  map[string]bool
	requests map[string]uint64 // client/model -> requests counted
	refuse   int               // next calls fail before applying
	lose     int               // next calls apply, then fail (the answer is lost)
	reject   int               // next calls fail with InvalidArgument
}

func newFakeLedger() *fakeLedger {
	return &fakeLedger{applied: map[string]bool{}, requests: map[string]uint64{}}
}

func (f *fakeLedger) Record(_ context.Context, req *usagev1.RecordRequest) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, proto.Clone(req).(*usagev1.RecordRequest))
	switch {
	case f.refuse > 0:
		f.refuse--
		return false, status.Error(codes.Unavailable, "connection refused")
	case f.reject > 0:
		f.reject--
		return false, status.Error(codes.InvalidArgument, "row 0: bad model")
	}
	id := fmt.Sprintf("%s#%d", req.Reporter, req.Seq)
	dup := f.applied[id]
	if !dup {
		f.applied[id] = true
		for _, r := range req.Rows {
			f.requests[r.ClientId+"/"+r.Model] += r.Requests
		}
	}
	if f.lose > 0 {
		f.lose--
		return false, context.DeadlineExceeded
	}
	return dup, nil
}

func (f *fakeLedger) counted(client, model string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[client+"/"+model]
}

func (f *fakeLedger) calls() []*usagev1.RecordRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*usagev1.RecordRequest(nil), f.sent...)
}

func newTestReporter(t *testing.T, sink Sink, reg prometheus.Registerer) (*Reporter, *Aggregator) {
	t.Helper()
	a := NewAggregator(100)
	r, err := NewReporter(ReporterConfig{ID: "worker/w1/boot", Aggregator: a, Sink: sink, Interval: time.Hour,
		Logger: slog.New(slog.DiscardHandler), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return r, a
}

func add(a *Aggregator, client string, n int) {
	for range n {
		a.AddRequest(t0, client, "simple", 1, false, time.Millisecond, time.Millisecond)
	}
}

// TestReporterResendsUnchangedUntilAcknowledged is the exactly-once
// contract: a batch that failed is sent again unchanged, counts added
// meanwhile wait for the next batch, and a batch whose answer was lost is
// counted once.
func TestReporterResendsUnchangedUntilAcknowledged(t *testing.T) {
	ledger := newFakeLedger()
	reg := prometheus.NewRegistry()
	r, a := newTestReporter(t, ledger, reg)
	ctx := t.Context()

	add(a, "acme", 3)
	ledger.refuse = 2
	if err := r.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded, the ledger refused")
	}
	add(a, "acme", 2) // after batch 1 was cut: belongs to batch 2
	if err := r.Flush(ctx); err == nil {
		t.Fatal("second Flush succeeded, the ledger refused twice")
	}
	if got := testutil.ToFloat64(r.pendRow); got != 1 {
		t.Errorf("pending rows = %v, want 1", got)
	}
	ledger.lose = 1 // applied, but the answer never comes back
	if err := r.Flush(ctx); err == nil {
		t.Fatal("third Flush succeeded, its answer was lost")
	}
	if err := r.Flush(ctx); err != nil { // resend (duplicate), then batch 2
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil { // nothing left: no call
		t.Fatal(err)
	}

	calls := ledger.calls()
	var seqs []uint64
	for _, c := range calls {
		seqs = append(seqs, c.Seq)
		if c.Reporter != "worker/w1/boot" {
			t.Errorf("reporter = %q", c.Reporter)
		}
	}
	if want := []uint64{1, 1, 1, 1, 2}; fmt.Sprint(seqs) != fmt.Sprint(want) {
		t.Fatalf("seqs sent = %v, want %v", seqs, want)
	}
	for i := 1; i < 4; i++ {
		if !proto.Equal(calls[i], calls[0]) {
			t.Errorf("resend %d differs from the first send:\n%v\n%v", i, calls[i], calls[0])
		}
	}
	if got := calls[0].Rows[0].Requests; got != 3 {
		t.Errorf("batch 1 has %d requests, want 3", got)
	}
	if got := calls[4].Rows[0].Requests; got != 2 {
		t.Errorf("batch 2 has %d requests, want 2", got)
	}
	if got := ledger.counted("acme", "simple"); got != 5 {
		t.Errorf("ledger counted %d requests, want 5 (each once)", got)
	}
	for res, want := range map[string]float64{"ok": 1, "duplicate": 1, "error": 3, "rejected": 0} {
		if got := testutil.ToFloat64(r.batches.WithLabelValues(res)); got != want {
			t.Errorf("helix_usage_batches_total{result=%q} = %v, want %v", res, got, want)
		}
	}
	if got := testutil.ToFloat64(r.pendRow); got != 0 {
		t.Errorf("pending rows = %v, want 0", got)
	}
	if n, err := testutil.GatherAndCount(reg, "helix_usage_batches_total", "helix_usage_dropped_total", "helix_usage_pending_rows"); err != nil || n != 6 {
		t.Errorf("registered series = %d (%v), want 6", n, err)
	}
}

// TestReporterDropsARejectedBatch: a batch the ledger refuses as invalid
// can never be accepted; it is dropped so later batches still flow.
func TestReporterDropsARejectedBatch(t *testing.T) {
	ledger := newFakeLedger()
	r, a := newTestReporter(t, ledger, nil)
	add(a, "acme", 1)
	ledger.reject = 1
	if err := r.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v, want the rejected batch dropped", err)
	}
	add(a, "beta", 1)
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	calls := ledger.calls()
	if len(calls) != 2 || calls[1].Seq != 2 || calls[1].Rows[0].ClientId != "beta" {
		t.Fatalf("calls = %v", calls)
	}
	if got := testutil.ToFloat64(r.batches.WithLabelValues("rejected")); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}
	if !rejected(rejectedErr{}) || rejected(status.Error(codes.PermissionDenied, "no")) || rejected(errors.New("x")) {
		t.Error("rejected() misclassifies")
	}
}

type rejectedErr struct{}

func (rejectedErr) Error() string  { return "bad row" }
func (rejectedErr) Rejected() bool { return true }

// TestReporterRun flushes on its interval, retries failures, and flushes
// what is left when its context ends.
func TestReporterRun(t *testing.T) {
	ledger := newFakeLedger()
	ledger.refuse = 1
	a := NewAggregator(100)
	r, err := NewReporter(ReporterConfig{ID: NewReporterID("worker", "w1"), Aggregator: a, Sink: ledger,
		Interval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	add(a, "acme", 2)
	deadline := time.Now().Add(5 * time.Second)
	for ledger.counted("acme", "simple") != 2 {
		if time.Now().After(deadline) {
			t.Fatal("counts never reached the ledger")
		}
		time.Sleep(5 * time.Millisecond)
	}
	add(a, "beta", 1)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if got := ledger.counted("beta", "simple"); got != 1 {
		t.Errorf("the last flush counted %d, want 1", got)
	}
}

func TestNewReporterRefusesBadConfig(t *testing.T) {
	a, s := NewAggregator(1), newFakeLedger()
	for _, cfg := range []ReporterConfig{
		{Aggregator: a, Sink: s},
		{ID: "x", Sink: s},
		{ID: "x", Aggregator: a},
		{ID: "x", Aggregator: a, Sink: s, Interval: -time.Second},
	} {
		if _, err := NewReporter(cfg); err == nil {
			t.Errorf("NewReporter(%+v) succeeded", cfg)
		}
	}
	r, err := NewReporter(ReporterConfig{ID: "x", Aggregator: a, Sink: s})
	if err != nil || r.cfg.Interval != DefaultInterval {
		t.Errorf("defaults: %v, interval %v", err, r.cfg.Interval)
	}
}

func TestNewReporterID(t *testing.T) {
	id1, id2 := NewReporterID("worker", "gpu-0"), NewReporterID("worker", "gpu-0")
	if !regexp.MustCompile(`^worker/gpu-0/[0-9a-f]{16}$`).MatchString(id1) {
		t.Errorf("id %q", id1)
	}
	if id1 == id2 {
		t.Error("two runs got the same reporter id")
	}
	if long := NewReporterID("worker", strings.Repeat("é", 300)); len(long) > 300 || !utf8.ValidString(long) {
		t.Errorf("a long name gives a %d-byte id (valid UTF-8: %v)", len(long), utf8.ValidString(long))
	}
}
