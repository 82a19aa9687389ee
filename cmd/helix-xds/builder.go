package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/xds/config"
	"github.com/helixflow/helixflow/xds/server"
	"github.com/helixflow/helixflow/xds/translate"
)

// builder turns the inputs (last good gateway config, registered workers)
// into Envoy resources and publishes them.
type builder struct {
	log     *slog.Logger
	ads     *server.Server
	workers workerSource

	mu  sync.Mutex
	cfg *config.Config
	// holding: translate (to check the inputs) but do not publish yet; see
	// holdForWorkers.
	holding bool

	rebuilds *prometheus.CounterVec
	duration prometheus.Histogram
}

func newBuilder(ads *server.Server, workers workerSource, reg prometheus.Registerer, log *slog.Logger) (*builder, error) {
	b := &builder{
		log: log, ads: ads, workers: workers,
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
	for _, c := range []prometheus.Collector{b.rebuilds, b.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// watchConfig loads the config file (an error here stops the start) and
// keeps watching it; the channel signals each new good config. A bad file
// later is logged and the last good config stays in force.
func (b *builder) watchConfig(ctx context.Context, path string) (<-chan struct{}, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	b.setConfig(cfg)
	changed := make(chan struct{}, 1)
	go func() {
		defer close(changed)
		_ = config.Watch(ctx, path, func(c *config.Config) {
			b.setConfig(c)
			select {
			case changed <- struct{}{}:
			default:
			}
		}, func(err error) {
			b.log.Error("gateway config rejected; the last good config stays in force", "path", path, "error", err)
		})
	}()
	return changed, nil
}

func (b *builder) setConfig(c *config.Config) {
	b.mu.Lock()
	b.cfg = c
	b.mu.Unlock()
}

// rebuild publishes the current inputs; the ADS server skips what did not
// change.
func (b *builder) rebuild(ctx context.Context) error {
	start := time.Now()
	b.mu.Lock()
	cfg := b.cfg
	holding := b.holding
	b.mu.Unlock()
	g := cfg.Gateway()
	addWorkers(g, b.workers.Snapshot(), b.log)
	res, err := translate.Translate(g)
	if err == nil && !holding {
		err = b.ads.Publish(ctx, res)
	}
	b.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		b.rebuilds.WithLabelValues("error").Inc()
		return err
	}
	b.rebuilds.WithLabelValues("ok").Inc()
	b.log.Debug("rebuilt", "pools", len(g.Pools), "workers", len(g.DefaultPool.Endpoints), "took", time.Since(start))
	return nil
}

// holdForWorkers keeps the first snapshot back for grace after a start,
// so that a restarted helix-xds does not hand Envoy an empty or partial
// worker set (Envoy keeps its last config until it gets one). Workers whose
// renewals failed while helix-xds was down retry with a backoff of up to 5
// s, so the grace must outlast that; how many workers to wait for cannot be
// known after a restart, so there is no early release. Then it calls
// release (which triggers a rebuild).
func (b *builder) holdForWorkers(ctx context.Context, grace time.Duration, release func()) {
	if grace <= 0 {
		return
	}
	b.mu.Lock()
	b.holding = true
	b.mu.Unlock()
	go func() {
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
		b.log.Info("startup grace over; publishing", "workers", len(b.workers.Snapshot()))
		release()
	}()
}
