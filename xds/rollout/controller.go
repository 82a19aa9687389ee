package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/internal/rolloutspec"
	"github.com/helixflow/helixflow/xds/ir"
)

// Defaults for Config's zero values.
const (
	DefaultPoll         = time.Second
	DefaultMinWindow    = 10 * time.Second
	DefaultHoldRetry    = 5 * time.Second
	DefaultQueryTimeout = 10 * time.Second
)

// Publisher takes the override policies: (*builder.Builder).
// SetTrafficOverrides. An override replaces the gateway config's policy of
// its model; an empty map clears them all.
type Publisher interface {
	SetTrafficOverrides(map[string]*ir.Traffic)
}

// Auditor records the controller's decisions (audit.Store).
type Auditor interface {
	Record(ctx context.Context, e audit.Event) error
}

// Config configures New.
type Config struct {
	// Pool is the database helix-authz migrated (00008_rollouts or later).
	Pool      *pgxpool.Pool
	Publisher Publisher
	// Evaluator measures canaries; nil (no --prometheus-url): a due step
	// holds, saying so.
	Evaluator Evaluator
	// Auditor records advance, rollback and complete (optional).
	Auditor Auditor
	// Poll is how often the table is read (default 1 s).
	Poll time.Duration
	// MinWindow is the shortest window Prometheus is asked about (default
	// 10 s): a window must span a few of its scrapes to see an increase.
	// Windows are the rollout's interval otherwise.
	MinWindow time.Duration
	// HoldRetry is how soon a held evaluation is tried again (default 5 s,
	// or the interval when shorter).
	HoldRetry time.Duration
	// QueryTimeout bounds one evaluation (default 10 s).
	QueryTimeout time.Duration
	// Registerer receives the helix_rollout_* metrics (optional).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Controller runs the rollouts of the table. Run it once.
type Controller struct {
	cfg   Config
	store store
	log   *slog.Logger

	percent     *prometheus.GaugeVec
	events      *prometheus.CounterVec
	evaluations *prometheus.CounterVec

	// Only Run's goroutine touches these.
	published map[string]*ir.Traffic // nil until the first publication
	seen      map[int64]string       // rollout id → state at the last poll
	retryAt   map[int64]time.Time    // a held rollout's next evaluation
	lastErr   string                 // the last poll error logged
	badLogged map[int64]bool         // invalid rows already logged
}

// New returns a Controller over cfg.
func New(cfg Config) (*Controller, error) {
	if cfg.Pool == nil {
		return nil, errors.New("rollout: a database pool is required")
	}
	if cfg.Publisher == nil {
		return nil, errors.New("rollout: a publisher is required")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.MinWindow <= 0 {
		cfg.MinWindow = DefaultMinWindow
	}
	if cfg.HoldRetry <= 0 {
		cfg.HoldRetry = DefaultHoldRetry
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := newController(cfg)
	c.store = store{pool: cfg.Pool}
	if cfg.Registerer != nil {
		for _, m := range []prometheus.Collector{c.percent, c.events, c.evaluations} {
			if err := cfg.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("rollout: register metrics: %w", err)
			}
		}
	}
	return c, nil
}

// newController is New without the database and registration.
func newController(cfg Config) *Controller {
	return &Controller{
		cfg: cfg, log: cfg.Logger,
		percent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "helix_rollout_canary_percent",
			Help: "The canary's share of a model's requests that name no version, in percent, while a rollout pins the model (100 once completed, 0 once rolled back or aborted).",
		}, []string{"model"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_rollout_events_total",
			Help: "Rollout events by model and event: start, advance, hold, rollback, complete (the controller's), pause, resume, abort (the operator's, as seen by the controller).",
		}, []string{"model", "event"}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_rollout_evaluations_total",
			Help: "SLO evaluations of rollouts' canaries by model and result: pass, fail, no_data (no requests or latency samples in the window), prometheus_error (unreachable or erroring; the rollout holds).",
		}, []string{"model", "result"}),
		seen: map[int64]string{}, retryAt: map[int64]time.Time{}, badLogged: map[int64]bool{},
	}
}

// Run polls the table until ctx ends. A poll that fails keeps the last
// published overrides (the last good behaviour) and is logged.
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	for {
		c.Tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick is one poll: read, decide, write, publish. Run calls it; tests
// call it to step the controller.
func (c *Controller) Tick(ctx context.Context) {
	rows, err := c.store.current(ctx)
	if err != nil {
		if ctx.Err() == nil && err.Error() != c.lastErr {
			c.log.ErrorContext(ctx, "rollouts not read; the last published overrides stay", "error", err)
		}
		c.lastErr = err.Error()
		return
	}
	if c.lastErr != "" {
		c.log.InfoContext(ctx, "rollouts read again")
		c.lastErr = ""
	}
	overrides := make(map[string]*ir.Traffic, len(rows))
	seen := make(map[int64]string, len(rows))
	for i := range rows {
		r := &rows[i]
		c.observe(r)
		if err := r.check(); err != nil {
			if !c.badLogged[r.ID] { // once, not every poll
				c.log.ErrorContext(ctx, "rollout not run: its row is invalid; its weights stay as they are", "model", r.Model, "id", r.ID, "error", err)
				c.badLogged[r.ID] = true
			}
		} else if r.State == rolloutspec.StateRunning {
			*r = c.advance(ctx, *r)
		}
		seen[r.ID] = r.State
		if t := r.Traffic(); t != nil {
			overrides[r.Model] = t
		}
	}
	c.seen = seen
	for id := range c.retryAt {
		if seen[id] != rolloutspec.StateRunning {
			delete(c.retryAt, id)
		}
	}
	c.publish(overrides)
}

// allEvents and allResults are the label values each model's series start
// with.
var (
	allEvents  = []string{EventStart, EventAdvance, EventHold, EventRollback, EventComplete, EventPause, EventResume, EventAbort}
	allResults = []string{ResultPass, ResultFail, ResultNoData, ResultPrometheusError}
)

// observe counts the operator's changes since the last poll. A rollout
// seen for the first time gets its model's counters at 0: a counter born
// at 1 shows no increase() in Prometheus, and HelixRolloutRolledBack would
// miss a model's first rollback.
func (c *Controller) observe(r *Rollout) {
	was, ok := c.seen[r.ID]
	if !ok {
		for _, e := range allEvents {
			c.events.WithLabelValues(r.Model, e)
		}
		for _, res := range allResults {
			c.evaluations.WithLabelValues(r.Model, res)
		}
	}
	if !ok || was == r.State {
		return
	}
	switch {
	case r.State == rolloutspec.StatePaused:
		c.events.WithLabelValues(r.Model, EventPause).Inc()
	case was == rolloutspec.StatePaused && r.State == rolloutspec.StateRunning:
		c.events.WithLabelValues(r.Model, EventResume).Inc()
	case r.State == rolloutspec.StateAborted:
		c.events.WithLabelValues(r.Model, EventAbort).Inc()
	}
}

// advance starts r, or evaluates it when its step is due, and saves the
// decision. It returns the row as it now stands.
func (c *Controller) advance(ctx context.Context, r Rollout) Rollout {
	now := c.cfg.Now().Truncate(time.Microsecond) // what Postgres keeps
	next, events, result := c.decide(ctx, r, now)
	if len(events) == 0 {
		return r
	}
	if events[0] == EventHold {
		c.retryAt[r.ID] = now.Add(min(c.cfg.HoldRetry, r.Interval))
		if next.Reason == r.Reason {
			c.events.WithLabelValues(r.Model, EventHold).Inc()
			return r // said so already
		}
	}
	return c.save(ctx, r, next, events, result)
}

// decide is what should become of running r at now: the next row, its
// events (none: nothing to do yet) and the evaluation's result ("" when
// none ran).
func (c *Controller) decide(ctx context.Context, r Rollout, now time.Time) (next Rollout, events []string, result string) {
	if !r.started() {
		next, events = begin(r, now)
		return next, events, ""
	}
	if !r.due(now) || now.Before(c.retryAt[r.ID]) {
		return r, nil, ""
	}
	window := max(r.Interval, c.cfg.MinWindow)
	var (
		m   Measurement
		err error
	)
	if c.cfg.Evaluator == nil {
		err = errors.New("helix-xds has no --prometheus-url")
	} else {
		qctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
		m, err = c.cfg.Evaluator.Measure(qctx, r.Model, window)
		cancel()
	}
	if ctx.Err() != nil {
		return r, nil, "" // stopping: not Prometheus's fault
	}
	result, reason := judge(r.SLO, window, m, err)
	c.evaluations.WithLabelValues(r.Model, result).Inc()
	next, events = conclude(r, result, reason, now)
	return next, events, result
}

// save writes next over was and, when the row was still was, counts,
// logs and audits events; it returns the row as it now stands (was, when
// someone else changed it first: the next poll reads theirs).
func (c *Controller) save(ctx context.Context, was, next Rollout, events []string, result string) Rollout {
	ok, err := c.store.save(ctx, was, next)
	if err != nil {
		c.log.ErrorContext(ctx, "rollout decision not saved; tried again next poll", "model", was.Model, "id", was.ID, "error", err)
		return was
	}
	if !ok {
		c.log.InfoContext(ctx, "rollout changed while being decided; its new state wins", "model", was.Model, "id", was.ID)
		return was
	}
	for _, e := range events {
		c.events.WithLabelValues(next.Model, e).Inc()
	}
	level := slog.LevelInfo
	if next.State == rolloutspec.StateRolledBack || events[0] == EventHold {
		level = slog.LevelWarn
	}
	c.log.Log(ctx, level, "rollout "+events[len(events)-1], "model", next.Model, "id", next.ID, "state", next.State,
		"step", next.Step+1, "steps", len(next.Steps), "canary_percent", next.Weight, "reason", next.Reason)
	for _, e := range events {
		action := map[string]string{EventAdvance: "rollout.advance", EventRollback: "rollout.rollback", EventComplete: "rollout.complete"}[e]
		if action == "" || c.cfg.Auditor == nil {
			continue
		}
		// A failed record is logged and counted by the auditor; the
		// decision stands (it is in the table).
		_ = c.cfg.Auditor.Record(ctx, audit.Event{
			Actor: "system", Action: action, Target: "rollout:" + strconv.FormatInt(next.ID, 10), Result: audit.ResultSuccess,
			Detail: map[string]string{
				"model": next.Model, "state": next.State, "step": strconv.Itoa(next.Step + 1), "canary_percent": strconv.Itoa(next.Weight),
				"evaluation": result, "reason": next.Reason,
			},
		})
	}
	return next
}

// publish hands the builder the overrides when they changed (always the
// first time, so that a restarted helix-xds pins what the table says) and
// sets the canary gauge.
func (c *Controller) publish(overrides map[string]*ir.Traffic) {
	for m, t := range overrides {
		c.percent.WithLabelValues(m).Set(float64(t.Variants[1].Weight))
	}
	for m := range c.published {
		if overrides[m] == nil {
			c.percent.DeleteLabelValues(m)
		}
	}
	if c.published != nil && reflect.DeepEqual(overrides, c.published) {
		return
	}
	c.cfg.Publisher.SetTrafficOverrides(overrides)
	c.published = overrides
}
