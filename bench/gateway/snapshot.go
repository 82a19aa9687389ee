package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/helixflow/helixflow/xds/ir"
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
		logf("snapshot %d models x %d workers (%d per model): translate median %v, publish median %v",
			snapModels, snapWorkers, perModel, median(r.translate).Round(100*time.Microsecond), median(r.publish).Round(100*time.Microsecond))
		out = append(out, r)
	}
	return out, nil
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
