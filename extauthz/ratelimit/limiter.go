// Package ratelimit is helix-authz's plan limiter: the rate-limit decision
// Check takes after authorizing a request, so that Envoy makes one side
// call per request instead of two (ext_authz, then a ratelimit service).
//
// A plan (gateway config `plans`) allows requests per second and/or per
// minute per client and model. Each window is a fixed-window counter in
// Redis, one key per (client, model, window start), which every request
// counts in; a request is over the limit when any of its counters passes
// the plan's limit. Counters live in Redis so that every replica counts
// against the same limit; a key carries the client in a hash tag, and an
// increment and the key's expiry are one Lua script (atomic: a counter
// never outlives its window).
//
// Redis is asked only where its answer can change the decision: a counter
// well below its limit (syncMargin) counts in memory and reaches Redis in
// batches every 10 ms (local.go), while the first request of a window and
// those near the limit wait for Redis's count. A counter known to be over
// its limit is remembered until its window ends, so a client hammering past
// its limit costs no Redis call either.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/xds/ir"
)

// ErrUnavailable: the counters could not be read in time (Redis down,
// slow or not yet connected). The caller's failure mode decides.
var ErrUnavailable = errors.New("ratelimit: counters unavailable")

// unavailableLogEvery spaces the warnings of an outage.
const unavailableLogEvery = 10 * time.Second

// Increment is a count for one fixed-window counter: one request's, or
// those counted in memory since the last flush.
type Increment struct {
	Key string
	By  int64
	TTL int64 // seconds: the counter's window, its expiry when it is new
}

// Counter adds increments to counters, giving a new counter its expiry,
// and returns the counts, all in one round trip. Redis implements it
// (NewRedis).
type Counter interface {
	IncrBy(ctx context.Context, incs []Increment) ([]int64, error)
}

// Window is one limit of a plan.
type Window struct {
	Limit  uint32
	Length time.Duration // time.Second or time.Minute
}

// Decision is the outcome of Take.
type Decision struct {
	Allowed bool
	// Limit, Remaining and Reset describe the window closest to its limit
	// (the one over it when not Allowed); zero when the plan has no limit.
	Limit     uint32
	Remaining uint32
	Reset     time.Duration
	// Key is the counter of that window (its Redis key: domain, client,
	// model, window and its start), for traces; empty when none was read.
	Key string
	// Windows are all the plan's limits, for the x-ratelimit-limit header.
	Windows []Window
}

// Limiter decides whether a request fits its client's plan.
type Limiter struct {
	counter Counter
	log     *slog.Logger
	now     func() time.Time
	limits  atomic.Pointer[limits]
	metrics *metrics
	// lastLogged is when logUnavailable last logged (unix nanoseconds).
	lastLogged atomic.Int64
	// local holds the counts of counters far from their limits (local.go);
	// healthy is false after Redis failed, until it answers again: then
	// every request asks Redis, so the failure mode decides.
	local   *localCounters
	healthy atomic.Bool
	stop    context.CancelFunc
	flushed chan struct{}
}

// limits are the plans of one gateway config, swapped whole on reload.
type limits struct {
	domain   string
	timeout  time.Duration
	failOpen bool
	plans    map[string][]Window
	def      []Window
}

// Options configure a Limiter.
type Options struct {
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Now is the clock (time.Now when nil); tests move it.
	Now func() time.Time
}

// New returns a Limiter over counter with the plans of rl.
func New(counter Counter, rl *ir.RateLimit, o Options) (*Limiter, error) {
	l := &Limiter{counter: counter, log: o.Logger, now: o.Now, metrics: newMetrics(o.Metrics),
		local: newLocalCounters(), flushed: make(chan struct{})}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.now == nil {
		l.now = time.Now
	}
	if err := l.SetPlans(rl); err != nil {
		return nil, err
	}
	l.healthy.Store(true)
	ctx, stop := context.WithCancel(context.Background())
	l.stop = stop
	go func() { defer close(l.flushed); l.runFlusher(ctx) }()
	return l, nil
}

// Close sends the counts still held in memory and stops the flushes.
func (l *Limiter) Close() {
	l.stop()
	<-l.flushed
}

// SetPlans replaces the plans (a reloaded gateway config). rl must have
// been validated (ir.Validate): its default plan is one of its plans.
func (l *Limiter) SetPlans(rl *ir.RateLimit) error {
	if rl == nil {
		return errors.New("ratelimit: the gateway config has no ratelimit section")
	}
	next := &limits{domain: rl.Domain, timeout: rl.Timeout, failOpen: !rl.FailureModeDeny, plans: make(map[string][]Window, len(rl.Plans))}
	for _, p := range rl.Plans {
		next.plans[p.Name] = planWindows(p)
	}
	def, ok := next.plans[rl.DefaultPlan]
	if !ok {
		return fmt.Errorf("ratelimit: default plan %q is not a plan", rl.DefaultPlan)
	}
	next.def = def
	l.limits.Store(next)
	return nil
}

func planWindows(p ir.Plan) []Window {
	var w []Window
	if p.RequestsPerSecond > 0 {
		w = append(w, Window{Limit: p.RequestsPerSecond, Length: time.Second})
	}
	if p.RequestsPerMinute > 0 {
		w = append(w, Window{Limit: p.RequestsPerMinute, Length: time.Minute})
	}
	return w
}

// windows are the limits of plan: a client whose plan is not listed (none,
// or one removed from the config since) gets the default plan's, never
// none.
func (lm *limits) windows(plan string) []Window {
	if w, ok := lm.plans[plan]; ok {
		return w
	}
	return lm.def
}

// Take counts one request of client on model ("" for requests that name
// no model: one counter per client) against plan. When the counters cannot
// be read within the config's ratelimit timeout it returns ErrUnavailable
// with the failure mode's decision: allowed unless ratelimit.failure_mode
// is closed.
func (l *Limiter) Take(ctx context.Context, plan, client, model string) (Decision, error) {
	lm := l.limits.Load()
	windows := lm.windows(plan)
	if len(windows) == 0 {
		l.metrics.decisions(resultAllowed)
		return Decision{Allowed: true}, nil
	}
	now := l.now()
	var (
		keysBuf   [2]string
		ttlBuf    [2]int64
		countsBuf [2]int64
		ends      [2]time.Time
	)
	keys, ttls := keysBuf[:0], ttlBuf[:0]
	for i, w := range windows {
		start := now.Truncate(w.Length)
		ends[i] = start.Add(w.Length)
		key := counterKey(lm.domain, client, model, w.Length, start)
		if until, ok := l.local.overLimit(key, w.Limit, now); ok {
			l.metrics.decisions(resultOverLimit)
			return Decision{Limit: w.Limit, Reset: until.Sub(now), Key: key, Windows: windows}, nil
		}
		keys = append(keys, key)
		ttls = append(ttls, int64(w.Length/time.Second))
	}
	counts := countsBuf[:len(keys)]
	if l.healthy.Load() && l.local.reserve(keys, windows, counts) {
		return l.decide(windows, keys, counts, ends[:], now), nil
	}

	// Redis decides, counting with this request what was held here.
	incs := l.local.beginSync(keys, ttls, ends[:])
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, lm.timeout)
	defer cancel()
	began := time.Now()
	counts, err := l.counter.IncrBy(ctx, incs)
	l.metrics.redisSeconds.Observe(time.Since(began).Seconds())
	if err == nil && len(counts) != len(keys) {
		err = fmt.Errorf("%d counts for %d keys", len(counts), len(keys))
	}
	l.local.settle(incs, counts, err, 1)
	l.healthy.Store(err == nil)
	if err != nil {
		// A caller that went away (Envoy closed the stream) is no failure
		// of the counters: neither counted nor logged as one.
		if parent.Err() == nil {
			l.metrics.decisions(resultError)
			l.logUnavailable(parent, err, lm.failOpen)
		}
		return Decision{Allowed: lm.failOpen}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return l.decide(windows, keys, counts, ends[:], now), nil
}

// decide turns the counts with a request into its decision.
func (l *Limiter) decide(windows []Window, keys []string, counts []int64, ends []time.Time, now time.Time) Decision {
	// Reported: over the limit, the over window that ends last (the
	// client must wait for it); otherwise the one with the least left.
	d := Decision{Allowed: true, Windows: windows}
	pick := -1
	var left [2]int64
	for i, w := range windows {
		left[i] = max(0, int64(w.Limit)-counts[i])
		if counts[i] > int64(w.Limit) {
			if d.Allowed || ends[i].After(ends[pick]) {
				pick = i
			}
			d.Allowed = false
		} else if d.Allowed && (pick < 0 || left[i] < left[pick]) {
			pick = i
		}
	}
	d.Limit, d.Remaining, d.Reset, d.Key = windows[pick].Limit, uint32(left[pick]), ends[pick].Sub(now), keys[pick]
	if d.Allowed {
		l.metrics.decisions(resultAllowed)
	} else {
		l.metrics.decisions(resultOverLimit)
	}
	return d
}

// logUnavailable logs a failure to reach the counters at most once per
// unavailableLogEvery: an outage under load would otherwise log every
// request. The metric counts each one.
func (l *Limiter) logUnavailable(ctx context.Context, err error, failOpen bool) {
	now := time.Now().UnixNano()
	last := l.lastLogged.Load()
	if now-last < int64(unavailableLogEvery) || !l.lastLogged.CompareAndSwap(last, now) {
		return
	}
	mode := "closed: requests refused"
	if failOpen {
		mode = "open: requests pass"
	}
	l.log.WarnContext(ctx, "ratelimit: counters unavailable", "failure_mode", mode, "error", err)
}

// counterKey is "<domain>:{<client>}:<model length>:<model>:<s|m>:<window
// start, unix seconds>". The model's length keeps any model name (they may
// hold ':') from running into the fields after it.
func counterKey(domain, client, model string, window time.Duration, start time.Time) string {
	unit := "s"
	if window == time.Minute {
		unit = "m"
	}
	b := make([]byte, 0, len(domain)+len(client)+len(model)+32)
	b = append(b, domain...)
	b = append(b, ":{"...)
	b = append(b, client...)
	b = append(b, "}:"...)
	b = strconv.AppendInt(b, int64(len(model)), 10)
	b = append(b, ':')
	b = append(b, model...)
	b = append(b, ':')
	b = append(b, unit...)
	b = append(b, ':')
	b = strconv.AppendInt(b, start.Unix(), 10)
	return string(b)
}
