package rollout

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/rolloutspec"
	"github.com/helixflow/helixflow/xds/ir"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// publisher records what the controller hands the builder.
type publisher struct {
	mu    sync.Mutex
	calls []map[string]*ir.Traffic
}

func (p *publisher) SetTrafficOverrides(m map[string]*ir.Traffic) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, m)
}

func (p *publisher) last(t *testing.T) map[string]*ir.Traffic {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.calls) == 0 {
		t.Fatal("nothing published")
	}
	return p.calls[len(p.calls)-1]
}

// canaryWeight is the canary's weight of model in overrides, -1 when
// the model has none.
func canaryWeight(o map[string]*ir.Traffic, model string) int {
	tr := o[model]
	if tr == nil {
		return -1
	}
	return int(tr.Variants[1].Weight)
}

// evaluator answers what the test sets (the Prometheus path has its own
// tests: decide_test.go, prometheus_test.go).
type evaluator struct {
	m   Measurement
	err error
}

func (e *evaluator) Measure(context.Context, string, time.Duration) (Measurement, error) {
	return e.m, e.err
}

type fixture struct {
	t     *testing.T
	ctx   context.Context
	pool  *pgxpool.Pool
	pub   *publisher
	eval  *evaluator
	audit *audit.Store
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	pool := pgtest.Pool(t, pgtest.Migrated(t))
	a, err := audit.New(audit.Config{Pool: pool, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, pool: pool, pub: &publisher{}, eval: &evaluator{}, audit: a,
		now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
}

// controller is a new helix-xds's controller on the fixture's table.
func (f *fixture) controller() (*Controller, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	c, err := New(Config{Pool: f.pool, Publisher: f.pub, Evaluator: f.eval, Auditor: f.audit, Registerer: reg, Logger: quiet,
		Now: func() time.Time { return f.now }})
	if err != nil {
		f.t.Fatal(err)
	}
	return c, reg
}

// insert adds a rollout as helix-authz's admin API does.
func (f *fixture) insert(model string, steps []int, interval time.Duration) int64 {
	var id int64
	err := f.pool.QueryRow(f.ctx, `INSERT INTO rollouts (model, from_version, to_version, steps, interval_ms, slo, sticky, state, created_by)
		VALUES ($1, '1', '2', $2, $3, '{"error_ratio": 0.01, "p99_ms": 200}', true, 'running', 'admin-token') RETURNING id`,
		model, steps, interval.Milliseconds()).Scan(&id)
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

func (f *fixture) exec(sql string, args ...any) {
	if _, err := f.pool.Exec(f.ctx, sql, args...); err != nil {
		f.t.Fatal(err)
	}
}

type row struct {
	state, reason  string
	step, weight   int
	started, ended *time.Time
}

func (f *fixture) row(id int64) row {
	f.t.Helper()
	var r row
	if err := f.pool.QueryRow(f.ctx, `SELECT state, reason, step, weight, step_started_at, ended_at FROM rollouts WHERE id = $1`, id).
		Scan(&r.state, &r.reason, &r.step, &r.weight, &r.started, &r.ended); err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) want(id int64, state string, step, weight int, reason string) row {
	f.t.Helper()
	r := f.row(id)
	if r.state != state || r.step != step || r.weight != weight || !strings.Contains(r.reason, reason) {
		f.t.Fatalf("rollout %d: %s step %d weight %d reason %q; want %s %d %d %q", id, r.state, r.step, r.weight, r.reason, state, step, weight, reason)
	}
	return r
}

func counter(t *testing.T, c prometheus.Collector, labels ...string) float64 {
	t.Helper()
	switch v := c.(type) {
	case *prometheus.CounterVec:
		return testutil.ToFloat64(v.WithLabelValues(labels...))
	case *prometheus.GaugeVec:
		return testutil.ToFloat64(v.WithLabelValues(labels...))
	}
	t.Fatalf("%T", c)
	return 0
}

// TestRolloutLifecycle walks one rollout through the table as helix-authz
// and the controller share it: start, advance, pause, resume, hold,
// rollback, a restart, and release.
func TestRolloutLifecycle(t *testing.T) {
	f := newFixture(t)
	c, _ := f.controller()
	healthy := Measurement{Requests: 1000, Errors: 1, P99Ms: 50}

	c.Tick(f.ctx) // an empty table: publish that nothing is pinned
	if got := f.pub.last(t); len(got) != 0 {
		t.Fatalf("published %v, want no overrides", got)
	}

	id := f.insert("simple", []int{1, 5, 50, 100}, time.Minute)
	c.Tick(f.ctx)
	r := f.want(id, rolloutspec.StateRunning, 0, 1, "started")
	if r.started == nil || !r.started.Equal(f.now) {
		t.Fatalf("step_started_at %v, want %v", r.started, f.now)
	}
	want := &ir.Traffic{Sticky: true, Variants: []ir.Variant{{Name: "stable", Version: "1", Weight: 99}, {Name: "canary", Version: "2", Weight: 1}}}
	if got := f.pub.last(t)["simple"]; got == nil || got.Sticky != want.Sticky || got.Variants[0] != want.Variants[0] || got.Variants[1] != want.Variants[1] {
		t.Fatalf("override %+v, want %+v", got, want)
	}
	if v := counter(t, c.percent, "simple"); v != 1 {
		t.Errorf("helix_rollout_canary_percent %v, want 1", v)
	}

	// Not due: nothing asked, nothing written.
	f.now = f.now.Add(59 * time.Second)
	f.eval.m = healthy
	c.Tick(f.ctx)
	f.want(id, rolloutspec.StateRunning, 0, 1, "started")

	f.now = f.now.Add(time.Second)
	c.Tick(f.ctx)
	f.want(id, rolloutspec.StateRunning, 1, 5, "canary 1% → 5%")
	if w := canaryWeight(f.pub.last(t), "simple"); w != 5 {
		t.Fatalf("canary weight %d, want 5", w)
	}

	// The operator pauses: a due step waits.
	f.exec(`UPDATE rollouts SET state = 'paused' WHERE id = $1`, id)
	f.now = f.now.Add(2 * time.Minute)
	c.Tick(f.ctx)
	f.want(id, rolloutspec.StatePaused, 1, 5, "")
	if w := canaryWeight(f.pub.last(t), "simple"); w != 5 {
		t.Fatalf("paused: canary weight %d, want 5", w)
	}

	// Prometheus fails after the resume: hold, say so, keep the weight.
	f.exec(`UPDATE rollouts SET state = 'running' WHERE id = $1`, id)
	f.eval.err = errors.New("dial tcp 10.0.0.9:9090: connection refused")
	c.Tick(f.ctx)
	f.want(id, rolloutspec.StateRunning, 1, 5, "Prometheus: dial tcp 10.0.0.9:9090: connection refused: holding at 5%")
	// Retried after HoldRetry, not at every poll.
	c.Tick(f.ctx)
	if v := counter(t, c.evaluations, "simple", ResultPrometheusError); v != 1 {
		t.Errorf("prometheus_error evaluations %v, want 1 (no retry within HoldRetry)", v)
	}
	f.now = f.now.Add(DefaultHoldRetry)
	c.Tick(f.ctx)
	if v := counter(t, c.evaluations, "simple", ResultPrometheusError); v != 2 {
		t.Errorf("prometheus_error evaluations %v, want 2", v)
	}

	// A restarted helix-xds republishes what the table says.
	c2, _ := f.controller()
	c2.Tick(f.ctx)
	if w := canaryWeight(f.pub.last(t), "simple"); w != 5 {
		t.Fatalf("after a restart: canary weight %d, want 5", w)
	}

	// The canary answers errors: rolled back at once, the canary at 0.
	f.eval.err, f.eval.m = nil, Measurement{Requests: 100, Errors: 30, P99Ms: 50}
	f.now = f.now.Add(time.Minute)
	c2.Tick(f.ctx)
	r = f.want(id, rolloutspec.StateRolledBack, 1, 0, "error ratio 30% (30 of 100 requests) is not below 1% over 1m0s: rolled back")
	if r.ended == nil || !r.ended.Equal(f.now) {
		t.Fatalf("ended_at %v, want %v", r.ended, f.now)
	}
	if w := canaryWeight(f.pub.last(t), "simple"); w != 0 {
		t.Fatalf("rolled back: canary weight %d, want 0 (stable pinned)", w)
	}

	for _, tc := range []struct {
		c            *Controller
		event, model string
		want         float64
	}{
		{c, EventStart, "simple", 1}, {c, EventAdvance, "simple", 1}, {c, EventPause, "simple", 1}, {c, EventResume, "simple", 1},
		{c, EventHold, "simple", 2}, {c2, EventRollback, "simple", 1},
	} {
		if v := counter(t, tc.c.events, tc.model, tc.event); v != tc.want {
			t.Errorf("helix_rollout_events_total{event=%q} %v, want %v", tc.event, v, tc.want)
		}
	}
	if v := counter(t, c2.evaluations, "simple", ResultFail); v != 1 {
		t.Errorf("fail evaluations %v, want 1", v)
	}

	rows, err := f.audit.List(f.ctx, audit.Filter{Actor: "system"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range rows {
		if r.Target != "rollout:"+itoa(id) || r.Detail["model"] != "simple" {
			t.Errorf("audit row %+v: want target rollout:%d and the model", r, id)
		}
		actions = append(actions, r.Action)
	}
	if strings.Join(actions, " ") != "rollout.rollback rollout.advance" { // newest first
		t.Errorf("audit actions %v, want rollout.advance then rollout.rollback", actions)
	}

	// Release: the model's pin ends, its gauge goes.
	f.exec(`UPDATE rollouts SET state = 'released' WHERE id = $1`, id)
	c2.Tick(f.ctx)
	if got := f.pub.last(t); len(got) != 0 {
		t.Fatalf("released: published %v, want no overrides", got)
	}
	if n := testutil.CollectAndCount(c2.percent); n != 0 {
		t.Errorf("%d canary gauges after the release, want 0", n)
	}
}

// TestCompletesAndLatestWins: a healthy canary reaches 100 and completes;
// a later rollout of the model replaces the earlier one's pin.
func TestCompletesAndLatestWins(t *testing.T) {
	f := newFixture(t)
	c, _ := f.controller()
	f.eval.m = Measurement{Requests: 1000, Errors: 0, P99Ms: 10}
	id := f.insert("mlp", []int{50, 100}, time.Second)
	c.Tick(f.ctx)
	f.now = f.now.Add(time.Second)
	c.Tick(f.ctx)
	f.want(id, rolloutspec.StateCompleted, 1, 100, "canary 50% → 100%")
	if w := canaryWeight(f.pub.last(t), "mlp"); w != 100 {
		t.Fatalf("completed: canary weight %d, want 100", w)
	}
	if v := counter(t, c.events, "mlp", EventComplete); v != 1 {
		t.Errorf("complete events %v, want 1", v)
	}
	// A completed rollout pins until released; the next one takes over.
	f.exec(`UPDATE rollouts SET state = 'released' WHERE id = $1`, id)
	id2 := f.insert("mlp", []int{10, 100}, time.Second)
	c.Tick(f.ctx)
	f.want(id2, rolloutspec.StateRunning, 0, 10, "started")
	if w := canaryWeight(f.pub.last(t), "mlp"); w != 10 {
		t.Fatalf("second rollout: canary weight %d, want 10", w)
	}
	// An abort pins the stable variant.
	f.exec(`UPDATE rollouts SET state = 'aborted', ended_at = now() WHERE id = $1`, id2)
	c.Tick(f.ctx)
	if w := canaryWeight(f.pub.last(t), "mlp"); w != 0 {
		t.Fatalf("aborted: canary weight %d, want 0", w)
	}
	if v := counter(t, c.events, "mlp", EventAbort); v != 1 {
		t.Errorf("abort events %v, want 1", v)
	}
}

// TestSaveLosesToAConcurrentChange: a decision made on a row that changed
// since it was read (the operator paused it, another replica advanced it)
// is not written.
func TestSaveLosesToAConcurrentChange(t *testing.T) {
	f := newFixture(t)
	c, _ := f.controller()
	id := f.insert("simple", []int{1, 100}, time.Minute)
	c.Tick(f.ctx)
	rows, err := c.store.current(f.ctx)
	if err != nil || len(rows) != 1 {
		t.Fatalf("current: %v %v", rows, err)
	}
	was := rows[0]
	next, _ := conclude(was, ResultPass, "held", f.now.Add(time.Minute))
	f.exec(`UPDATE rollouts SET state = 'paused' WHERE id = $1`, id)
	if ok, err := c.store.save(f.ctx, was, next); err != nil || ok {
		t.Fatalf("save over a paused row: %v %v, want false", ok, err)
	}
	f.want(id, rolloutspec.StatePaused, 0, 1, "started")
	f.exec(`UPDATE rollouts SET state = 'running' WHERE id = $1`, id)
	if ok, err := c.store.save(f.ctx, was, next); err != nil || !ok {
		t.Fatalf("save: %v %v, want true", ok, err)
	}
	// The same decision twice (a second replica): the second loses.
	if ok, err := c.store.save(f.ctx, was, next); err != nil || ok {
		t.Fatalf("second save: %v %v, want false", ok, err)
	}
}

// TestBadRowStopsOnlyItself: a row the controller cannot run is logged and
// left alone; the others run.
func TestBadRowStopsOnlyItself(t *testing.T) {
	f := newFixture(t)
	c, _ := f.controller()
	bad := f.insert("bad", []int{1, 100}, time.Minute)
	f.exec(`UPDATE rollouts SET slo = '{}' WHERE id = $1`, bad)
	good := f.insert("good", []int{1, 100}, time.Minute)
	c.Tick(f.ctx)
	f.want(bad, rolloutspec.StateRunning, -1, 0, "")
	f.want(good, rolloutspec.StateRunning, 0, 1, "started")
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// TestDatabaseDownKeepsOverrides: a poll that cannot read the table
// publishes nothing new, so the last policies stay in force.
func TestDatabaseDownKeepsOverrides(t *testing.T) {
	f := newFixture(t)
	pool, err := pgxpool.New(f.ctx, f.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Pool: pool, Publisher: f.pub, Logger: quiet, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.insert("simple", []int{10, 100}, time.Minute)
	c.Tick(f.ctx)
	if w := canaryWeight(f.pub.last(t), "simple"); w != 10 {
		t.Fatalf("canary weight %d, want 10", w)
	}
	calls := len(f.pub.calls)
	pool.Close()
	c.Tick(f.ctx)
	c.Tick(f.ctx)
	if len(f.pub.calls) != calls {
		t.Fatalf("published %v with the database down, want the last policies kept", f.pub.last(t))
	}
}
