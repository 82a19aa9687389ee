package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/helixflow/helixflow/xds/builder"
	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/registry"
	xdsserver "github.com/helixflow/helixflow/xds/server"
	"github.com/helixflow/helixflow/xds/translate"
	"github.com/helixflow/helixflow/xds/translate/translatetest"
)

// Snapshot size the issue names.
const (
	snapModels  = 1000
	snapWorkers = 100
)

// snapshotResult is one gateway size: per build, the translation
// (translate.Translate: validate, sort, build, ValidateAll) and the
// publishing into xds/server (hash, consistency check, set the caches).
type snapshotResult struct {
	perModel           int // workers per model
	resources          int // Envoy resources in one snapshot
	translate, publish []time.Duration
	// first* are the first build's, into an empty server (not in the
	// slices: lazy initialisation makes it slower).
	firstTranslate, firstPublish time.Duration
	// change is one worker's change published: from the source's signal
	// to Publish's return, through xds/builder (measureWorkerChange).
	change []time.Duration
}

func (r *snapshotResult) total() []time.Duration {
	out := make([]time.Duration, len(r.translate))
	for i := range out {
		out[i] = r.translate[i] + r.publish[i]
	}
	return out
}

// snapshotGateway is translatetest's gateway (models models on workers
// workers, each model on perModel of them) with the bench's plans. shift renames the models
// (model-{shift}..): alternating shifts changes every pool, so each
// publish replaces routes, clusters and endpoints.
func snapshotGateway(models, workers, perModel, shift int) *ir.Gateway {
	g := translatetest.Gateway(models, workers, perModel)
	g.RateLimit.DefaultPlan = "free"
	g.RateLimit.Plans = []ir.Plan{
		{Name: benchPlan, RequestsPerSecond: benchPlanRPS},
		{Name: "free", RequestsPerSecond: 5},
		{Name: "standard", RequestsPerSecond: 1000},
	}
	for i := range g.Pools {
		g.Pools[i].Model = fmt.Sprintf("model-%04d", i+shift)
	}
	return g
}

// measureSnapshots times runs builds of each size into one xds/server.
func measureSnapshots(ctx context.Context, runs int) ([]*snapshotResult, error) {
	var out []*snapshotResult
	for _, perModel := range []int{10, 100} {
		gs := [2]*ir.Gateway{snapshotGateway(snapModels, snapWorkers, perModel, 0), snapshotGateway(snapModels, snapWorkers, perModel, 1)}
		srv, err := xdsserver.New(ctx, xdsserver.Options{})
		if err != nil {
			return nil, err
		}
		r := &snapshotResult{perModel: perModel}
		for i := range runs + 1 {
			runtime.GC() // each build starts without the last one's garbage
			t0 := time.Now()
			res, err := translate.Translate(gs[i%2])
			if err != nil {
				return nil, fmt.Errorf("translate %d models x %d workers: %w", snapModels, snapWorkers, err)
			}
			t1 := time.Now()
			if err := srv.Publish(ctx, res); err != nil {
				return nil, fmt.Errorf("publish %d models x %d workers: %w", snapModels, snapWorkers, err)
			}
			t2 := time.Now()
			if i == 0 {
				r.firstTranslate, r.firstPublish = t1.Sub(t0), t2.Sub(t1)
				r.resources = len(res.Listeners) + len(res.Routes) + len(res.Clusters) + len(res.Endpoints) + len(res.Secrets)
				continue
			}
			r.translate = append(r.translate, t1.Sub(t0))
			r.publish = append(r.publish, t2.Sub(t1))
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if r.change, err = measureWorkerChange(ctx, perModel, runs); err != nil {
			return nil, err
		}
		logf("snapshot %d models x %d workers (%d per model): translate median %v, publish median %v; one worker's change median %v",
			snapModels, snapWorkers, perModel, median(r.translate).Round(100*time.Microsecond), median(r.publish).Round(100*time.Microsecond),
			median(r.change).Round(100*time.Microsecond))
		out = append(out, r)
	}
	return out, nil
}

// changeGatewayYAML is the gateway config of measureWorkerChange: its
// workers are on loopback, so plaintext to them passes.
const changeGatewayYAML = "listener: {address: 127.0.0.1, port: 8443}\nauthz: {address: '127.0.0.1:9001'}\n"

// changeGap separates the changes: each is then rebuilt at once, within
// the debouncer's rate (its wait is the convergence trials' business).
const changeGap = 150 * time.Millisecond

// measureWorkerChange times runs changes of one worker published into a
// gateway of snapModels models on snapWorkers workers, perModel workers
// per model, as helix-xds publishes them: xds/builder reads the source's
// table (translatetest.Workers, as the registry's Snapshot gives it),
// patches the pools of the changed worker and publishes into xds/server
// (no Envoy connected). worker-000 turns not ready and ready again in
// turn: the assignments of every pool it is in change, the pools do not.
func measureWorkerChange(ctx context.Context, perModel, runs int) ([]time.Duration, error) {
	dir, err := os.MkdirTemp("", "bench-gateway-change-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfgPath, []byte(changeGatewayYAML), 0o600); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv, err := xdsserver.New(ctx, xdsserver.Options{})
	if err != nil {
		return nil, err
	}
	src := &changeSource{table: translatetest.Workers(snapModels, snapWorkers, perModel), changed: make(chan struct{}, 1)}
	pub := &timedPublisher{srv: srv, done: make(chan time.Time, 1)}
	b, err := builder.New(ctx, builder.Config{ConfigPath: cfgPath, Workers: src, Publisher: pub})
	if err != nil {
		return nil, fmt.Errorf("one worker's change: %w", err)
	}
	published := func() (time.Time, error) {
		select {
		case at := <-pub.done:
			return at, nil
		case <-time.After(10 * time.Second):
			return time.Time{}, errors.New("one worker's change: nothing published within 10s")
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
	if _, err := published(); err != nil { // New's first build
		return nil, err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(ctx) }()
	defer func() { cancel(); <-runErr }()
	// Run's first rebuilds (its start, the config watch's first load):
	// wait until none has come for a while.
	for quiet := false; !quiet; {
		select {
		case <-pub.done:
		case <-time.After(3 * changeGap):
			quiet = true
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var out []time.Duration
	for i := range runs {
		if err := sleepCtx(ctx, changeGap); err != nil {
			return nil, err
		}
		select { // a rebuild nobody asked for (the config watch) is not this change's
		case <-pub.done:
		default:
		}
		src.flip(0, i%2 == 1)
		start := time.Now()
		src.changed <- struct{}{}
		at, err := published()
		if err != nil {
			return nil, err
		}
		out = append(out, at.Sub(start))
	}
	return out, nil
}

// changeSource is a worker source whose table the bench replaces, as the
// registry's Snapshot gives a new table after a change.
type changeSource struct {
	mu      sync.Mutex
	table   []registry.Worker
	changed chan struct{}
}

func (s *changeSource) Snapshot() []registry.Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.table
}

func (s *changeSource) Subscribe(context.Context) <-chan struct{} { return s.changed }

// flip sets worker i's readiness in a new table.
func (s *changeSource) flip(i int, ready bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := slices.Clone(s.table)
	t[i].Ready = ready
	s.table = t
}

// timedPublisher publishes into srv and notes when each Publish returned.
type timedPublisher struct {
	srv  *xdsserver.Server
	done chan time.Time
}

func (p *timedPublisher) Publish(ctx context.Context, res *translate.Resources) error {
	err := p.srv.Publish(ctx, res)
	select {
	case p.done <- time.Now():
	default:
	}
	return err
}

// quantile is the q-quantile (nearest rank) of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1 // ceil(q*n) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func median(ds []time.Duration) time.Duration { return quantile(ds, 0.5) }
