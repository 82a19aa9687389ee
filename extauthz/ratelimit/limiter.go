// Package ratelimit is helix-authz's plan limiter: the rate-limit decision
// Check takes after authorizing a request, so that Envoy makes one side
// call per request instead of two (ext_authz, then a ratelimit service).
//
// A plan (gateway config `plans`) allows requests per second and/or per
// minute per client and model. Each window is a fixed-window counter in
// Redis, one key per (client, model, window start), incremented by every
// request that reaches it; a request is over the limit when any of its
// counters passes the plan's limit. Both counters travel in one Redis round
// trip (one Lua script, atomic: the increment and the key's expiry never
// come apart). Keys carry the client in a hash tag, so a Redis Cluster
// keeps a client's counters on one slot.
//
// Counters live in Redis, not in helix-authz, so that every replica counts
// against the same limit. A counter known to be over its limit is also
// remembered in memory until its window ends, so that a client hammering
// past its limit costs no Redis call.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/xds/ir"
)

// ErrUnavailable: the counters could not be read in time (Redis down,
// slow or not yet connected). The caller's failure mode decides.
var ErrUnavailable = errors.New("ratelimit: counters unavailable")

// overLimitEntries bounds the memory of counters known to be over their
// limit (about 100 bytes each).
const overLimitEntries = 100_000

// unavailableLogEvery spaces the warnings of an outage.
const unavailableLogEvery = 10 * time.Second

// Counter increments fixed-window counters: for each key, INCR and, on the
// window's first hit, an expiry of ttl seconds; it returns the counts.
// Redis implements it (NewRedis); unit tests of the decision may not.
type Counter interface {
	Incr(ctx context.Context, keys []string, ttlSeconds []int64) ([]int64, error)
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
	// Windows are all the plan's limits, for the x-ratelimit-limit header.
	Windows []Window
}

// Limiter decides whether a request fits its client's plan.
type Limiter struct {
	counter Counter
	log     *slog.Logger
	now     func() time.Time
	limits  atomic.Pointer[limits]
	over    *lru.Cache[string, time.Time] // key -> end of its window
	metrics *metrics
	// lastLogged is when logUnavailable last logged (unix nanoseconds).
	lastLogged atomic.Int64
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
	over, err := lru.New[string, time.Time](overLimitEntries)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	l := &Limiter{counter: counter, log: o.Logger, now: o.Now, over: over, metrics: newMetrics(o.Metrics)}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.now == nil {
		l.now = time.Now
	}
	if err := l.SetPlans(rl); err != nil {
		return nil, err
	}
	return l, nil
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
		keysBuf [2]string
		ttlBuf  [2]int64
		ends    [2]time.Time
	)
	keys, ttls := keysBuf[:0], ttlBuf[:0]
	for i, w := range windows {
		start := now.Truncate(w.Length)
		ends[i] = start.Add(w.Length)
		key := counterKey(lm.domain, client, model, w.Length, start)
		if until, ok := l.over.Get(key); ok && now.Before(until) {
			l.metrics.decisions(resultOverLimit)
			return Decision{Limit: w.Limit, Reset: until.Sub(now), Windows: windows}, nil
		}
		keys = append(keys, key)
		ttls = append(ttls, int64(w.Length/time.Second))
	}

	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, lm.timeout)
	defer cancel()
	began := time.Now()
	counts, err := l.counter.Incr(ctx, keys, ttls)
	l.metrics.redisSeconds.Observe(time.Since(began).Seconds())
	if err == nil && len(counts) != len(keys) {
		err = fmt.Errorf("%d counts for %d keys", len(counts), len(keys))
	}
	if err != nil {
		// A caller that went away (Envoy closed the stream) is no failure
		// of the counters: neither counted nor logged as one.
		if parent.Err() == nil {
			l.metrics.decisions(resultError)
			l.logUnavailable(err, lm.failOpen)
		}
		return Decision{Allowed: lm.failOpen}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}

	// Reported: over the limit, the over window that ends last (the
	// client must wait for it); otherwise the one with the least left.
	d := Decision{Allowed: true, Windows: windows}
	pick := -1
	var left [2]int64
	for i, w := range windows {
		left[i] = max(0, int64(w.Limit)-counts[i])
		if counts[i] > int64(w.Limit) {
			l.over.Add(keys[i], ends[i])
			if d.Allowed || ends[i].After(ends[pick]) {
				pick = i
			}
			d.Allowed = false
		} else if d.Allowed && (pick < 0 || left[i] < left[pick]) {
			pick = i
		}
	}
	d.Limit, d.Remaining, d.Reset = windows[pick].Limit, uint32(left[pick]), ends[pick].Sub(now)
	if d.Allowed {
		l.metrics.decisions(resultAllowed)
	} else {
		l.metrics.decisions(resultOverLimit)
	}
	return d, nil
}

// logUnavailable logs a failure to reach the counters at most once per
// unavailableLogEvery: an outage under load would otherwise log every
// request. The metric counts each one.
func (l *Limiter) logUnavailable(err error, failOpen bool) {
	now := time.Now().UnixNano()
	last := l.lastLogged.Load()
	if now-last < int64(unavailableLogEvery) || !l.lastLogged.CompareAndSwap(last, now) {
		return
	}
	mode := "closed: requests refused"
	if failOpen {
		mode = "open: requests pass"
	}
	l.log.Warn("ratelimit: counters unavailable", "failure_mode", mode, "error", err)
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
