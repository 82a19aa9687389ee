package check

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/internal/telemetry"
)

// Label limits of helix_authz_client_requests_total. Client ids come from
// helix-authz's own client table and model names from requests, so both
// are bounded only by who sends what: past the limit a new value is
// counted as labelOther.
const (
	DefaultMaxClientLabels = 1000
	DefaultMaxModelLabels  = 200
)

// Label values that no client id takes (helix-authz makes them "hxc_...");
// a model literally named "_other" or "_none" would share their series.
const (
	labelOther = "_other" // past the label limit
	labelNone  = "_none"  // not authenticated, or no model in the request
)

// Request kinds of helix_authz_client_requests_total.
const (
	kindInfer   = "infer"
	kindRead    = "read"
	kindUnknown = "unknown" // refused before the route was read
)

// metrics of Check. A nil *metrics records nothing.
type metrics struct {
	checks   *prometheus.CounterVec
	duration prometheus.Histogram
	// requests is the per-client, per-model business counter.
	requests        *prometheus.CounterVec
	clients, models *boundedLabel
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger, maxClients, maxModels int) *metrics {
	if reg == nil {
		return nil
	}
	if maxClients <= 0 {
		maxClients = DefaultMaxClientLabels
	}
	if maxModels <= 0 {
		maxModels = DefaultMaxModelLabels
	}
	m := &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_authz_checks_total",
			Help: "Envoy authorization checks by result (ok, denied, rate_limited, unavailable) and reason.",
		}, []string{"result", "reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "helix_authz_check_duration_seconds",
			Help:    "Time to answer an Envoy authorization check.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_authz_client_requests_total",
			Help: "Gateway requests by client, model, kind (infer, read, unknown) and result (ok, denied, rate_limited: over the plan's limit, unavailable). " +
				"client is _none before authentication; client and model values past the label limits count as _other.",
		}, []string{"client", "model", "kind", "result"}),
		clients: newBoundedLabel("client", maxClients, log),
		models:  newBoundedLabel("model", maxModels, log),
	}
	m.checks = register(reg, m.checks, log)
	m.duration = register(reg, m.duration, log)
	m.requests = register(reg, m.requests, log)
	// Series that alerts take a rate of exist from the start, so the first
	// failure after a restart is not lost to a missing earlier sample.
	m.checks.WithLabelValues(resultOK, "ok")
	for _, reason := range []string{"token_backend_unavailable", "revocation_unavailable", "client_unavailable", "apikey_backend_unavailable"} {
		m.checks.WithLabelValues(resultUnavailable, reason)
	}
	return m
}

// register registers c, or returns the collector already registered under
// its name (a second Service on the same registry shares it).
func register[C prometheus.Collector](reg prometheus.Registerer, c C, log *slog.Logger) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	log.Error("authz: registering metrics", "err", err)
	return c
}

// decision is what Check decided, for the metrics.
type decision struct {
	result, reason string
	// principal is nil when the request was not authenticated.
	principal *Principal
	// target is valid when routed is true.
	target target
	routed bool
}

// observe counts a decision; the duration carries the trace id of ctx's
// span as an exemplar when the request is sampled.
func (m *metrics) observe(ctx context.Context, d decision, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.checks.WithLabelValues(d.result, d.reason).Inc()
	telemetry.Observe(ctx, m.duration, elapsed.Seconds())

	client, model, kind := labelNone, labelNone, kindUnknown
	if d.principal != nil {
		client = m.clients.value(d.principal.ClientID)
	}
	if d.routed {
		kind = kindRead
		if d.target.action == actionInfer {
			kind = kindInfer
		}
		// Only authenticated callers name label values: anyone else could
		// use up the model limit with made-up names.
		if d.target.model != "" && d.principal != nil {
			model = m.models.value(d.target.model)
		}
	}
	m.requests.WithLabelValues(client, model, kind, d.result).Inc()
}

// boundedLabel hands out at most max distinct values of a label, first
// come first served; later values become labelOther.
type boundedLabel struct {
	name string
	max  int
	log  *slog.Logger

	mu     sync.Mutex
	seen   map[string]struct{}
	warned bool
}

func newBoundedLabel(name string, max int, log *slog.Logger) *boundedLabel {
	return &boundedLabel{name: name, max: max, log: log, seen: make(map[string]struct{})}
}

func (b *boundedLabel) value(v string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return v
	}
	if len(b.seen) < b.max {
		b.seen[v] = struct{}{}
		return v
	}
	if !b.warned {
		b.warned = true
		b.log.Warn("authz: metric label limit reached; further values are counted as "+labelOther,
			"label", b.name, "limit", b.max)
	}
	return labelOther
}
