// Package builder keeps Envoy's configuration current: it merges the last
// good gateway config file with the workers of a Source (the gRPC worker
// registry or Kubernetes), turning the workers into one pool per model
// (pools.go), translates the result into Envoy resources and publishes
// them, again on every change (debounced; a change to workers' endpoints
// alone rebuilds only the assignments of the pools it touched,
// incremental.go). Each model's traffic policy, the config's or a
// rollout's, goes on its pool when it can apply (traffic.go).
//
//	config file ─┐
//	             ├─► ir.Gateway + pools ─► translate ─► Publisher (xds/server)
//	Source ──────┘
//
// A bad config file later keeps the last good one; a failed rebuild keeps
// the last published resources. Only the first load and the first rebuild
// stop the start.
package builder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/xds/config"
	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/server"
	"github.com/helixflow/helixflow/xds/translate"
)

// Source is where the builder reads the workers from: *registry.Registry
// (workers register over gRPC) or *kube.Source (EndpointSlices).
type Source interface {
	// Snapshot is the workers now; their Models are read-only (the
	// registry shares them between snapshots).
	Snapshot() []registry.Worker
	// Subscribe signals (coalesced) after the workers changed, until ctx
	// ends; the channel need not be closed then.
	Subscribe(ctx context.Context) <-chan struct{}
}

// Publisher takes the translated resources; *server.Server (ADS) in
// helix-xds. It skips what did not change.
type Publisher interface {
	Publish(ctx context.Context, res *translate.Resources) error
}

// Config configures a Builder.
type Config struct {
	// ConfigPath is the gateway config file, watched for changes.
	ConfigPath string
	Workers    Source
	Publisher  Publisher
	// StartupGrace holds the first publication back after a start, so that
	// a restarted helix-xds does not hand Envoy an empty or partial worker
	// set (Envoy keeps its last config meanwhile). Workers whose renewals
	// failed while helix-xds was down retry with a backoff of up to 5 s, so
	// the grace must outlast that; how many workers to wait for cannot be
	// known after a restart, so there is no early release. 0: publish at
	// once (a Kubernetes source is complete when it has started).
	StartupGrace time.Duration
	// OnConfig, when set, is called with every good config file, the first
	// included, before the rebuild it causes (helix-xds hands the
	// registry its worker_identities).
	OnConfig func(*config.Config)
	// Registerer, when set, receives the rebuild metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Builder rebuilds and publishes Envoy's resources; see the package doc.
type Builder struct {
	c   Config
	log *slog.Logger

	mu  sync.Mutex
	cfg *config.Config
	// holding: translate (to check the inputs) but do not publish yet.
	holding bool
	// overrides are the rollouts' traffic policies (SetTrafficOverrides).
	overrides *overrides
	// trigger asks Run's debouncer for a rebuild; nil before Run.
	trigger func()
	// traffic is the last translation's traffic policies (TrafficStatus).
	traffic []server.TrafficPolicy
	// last is the last translation (rebuild's goroutine only: New, then
	// Run's debouncer).
	last *lastBuild
	// report logs and counts inactive traffic policies (rebuild's
	// goroutine only).
	report *trafficReport

	rebuilds *prometheus.CounterVec
	duration prometheus.Histogram
}

// New loads the config file and runs the first rebuild, which checks the
// inputs (and publishes them unless StartupGrace holds them back); an
// error in either stops the start.
func New(ctx context.Context, c Config) (*Builder, error) {
	if c.ConfigPath == "" || c.Workers == nil || c.Publisher == nil {
		return nil, errors.New("builder: ConfigPath, Workers and Publisher are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Builder{
		c: c, log: c.Logger, holding: c.StartupGrace > 0, report: newTrafficReport(c.Logger),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_xds_rebuilds_total",
			Help: "Rebuilds of the Envoy resources from config and workers, by result (ok, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "helix_xds_rebuild_duration_seconds",
			Help:    "Time to translate the gateway model and publish it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if c.Registerer != nil {
		for _, m := range []prometheus.Collector{b.rebuilds, b.duration, b.report.gauge} {
			if err := c.Registerer.Register(m); err != nil {
				return nil, err
			}
		}
	}
	cfg, err := config.Load(c.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	b.setConfig(cfg)
	if err := b.rebuild(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// Run watches the config file and the workers and rebuilds on each change
// (debounced by server.Debouncer: at once while rebuilds stay within its
// rate; beyond it server.DefaultHoldoff after the last change, at most
// server.DefaultMaxWait after the first), and publishes for the first time
// when the startup grace is over. It returns ctx.Err() when ctx ends.
func (b *Builder) Run(ctx context.Context) error {
	deb := server.NewDebouncer(server.DefaultHoldoff, server.DefaultMaxWait, func(ctx context.Context) {
		if err := b.rebuild(ctx); err != nil {
			b.log.Error("rebuild failed; Envoy keeps the last published config", "error", err)
		}
	})
	b.mu.Lock()
	b.trigger = deb.Trigger
	b.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		_ = config.Watch(ctx, b.c.ConfigPath, func(c *config.Config) {
			b.setConfig(c)
			deb.Trigger()
		}, func(err error) {
			b.log.Error("gateway config rejected; the last good config stays in force", "path", b.c.ConfigPath, "error", err)
		})
	})
	wg.Go(func() {
		// A source need not close its channel when ctx ends (the registry
		// does not): wait on ctx too, or a stop would hang here.
		changed := b.c.Workers.Subscribe(ctx)
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				deb.Trigger()
			}
		}
	})
	if b.c.StartupGrace > 0 {
		wg.Go(func() { b.release(ctx, b.c.StartupGrace, deb.Trigger) })
	}
	deb.Trigger() // changes between New and Run
	deb.Run(ctx)
	return ctx.Err()
}

// release ends the startup grace after grace and triggers a rebuild, which
// publishes.
func (b *Builder) release(ctx context.Context, grace time.Duration, trigger func()) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	b.mu.Lock()
	b.holding = false
	b.mu.Unlock()
	b.log.Info("startup grace over; publishing", "workers", len(b.c.Workers.Snapshot()))
	trigger()
}

func (b *Builder) setConfig(c *config.Config) {
	if b.c.OnConfig != nil {
		b.c.OnConfig(c)
	}
	b.mu.Lock()
	b.cfg = c
	b.mu.Unlock()
}

// rebuild translates the current inputs and publishes them unless held.
func (b *Builder) rebuild(ctx context.Context) error {
	start := time.Now()
	b.mu.Lock()
	cfg, ov, holding := b.cfg, b.overrides, b.holding
	b.mu.Unlock()
	next, err := translateWorkers(b.last, cfg, ov, b.c.Workers.Snapshot(), b.log)
	// Even when the publish fails: next is a correct translation of the
	// inputs, and every Publish takes the whole set. A failed translation
	// may have patched last: the next rebuild starts afresh.
	b.last = next
	if next != nil {
		b.report.update(next.traffic)
		b.mu.Lock()
		b.traffic = next.traffic
		b.mu.Unlock()
	}
	if err == nil && !holding {
		err = b.c.Publisher.Publish(ctx, next.res)
	}
	b.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		b.rebuilds.WithLabelValues("error").Inc()
		return err
	}
	b.rebuilds.WithLabelValues("ok").Inc()
	b.log.Debug("rebuilt", "pools", len(next.g.Pools), "workers", len(next.g.DefaultPool.Endpoints), "published", !holding, "took", time.Since(start))
	return nil
}
