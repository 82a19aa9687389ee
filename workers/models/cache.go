package models

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/helixflow/helixflow/workers/cache"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// cacheOwners numbers loaded versions for the response cache: a reload of
// the same version (a new model file) never sees the old one's answers.
var cacheOwners atomic.Uint64

// useCache gives v the worker's response cache when its config enables
// response_cache. The repository refuses the setting where caching cannot
// apply (decoupled, sequence and ensemble models).
func (m *Manager) useCache(v *version) {
	if !v.config.GetResponseCache().GetEnable() {
		return
	}
	if m.cfg.ResponseCache == nil {
		m.log.Warn("model enables response_cache but this worker has no response cache (--response-cache-bytes 0): its requests are not cached",
			"model", v.config.Name, "version", v.number)
		return
	}
	v.cache = m.cfg.ResponseCache
	v.cacheOwner = cacheOwners.Add(1)
}

// dropCache removes the version's answers from the cache once it stops.
func (v *version) dropCache() {
	if v.cache != nil {
		v.cache.Drop(v.cacheOwner)
	}
}

// cacheLookup is one request's use of the response cache.
type cacheLookup struct {
	v      *version
	key    cache.Key
	start  time.Time
	lookup time.Duration
}

// lookupCache hashes what determines the request's answer: the model
// version, the inputs (names, datatypes, shapes, bytes) and the outputs
// asked for with their classification counts. It returns nil where the
// model does not cache.
func (v *version) lookupCache(inputs []tensor.Tensor, outputs []string, classes map[string]uint64) *cacheLookup {
	if v.cache == nil {
		return nil
	}
	start := time.Now()
	b := cache.NewKey(v.config.Name, v.number, v.cacheOwner)
	for _, in := range inputs {
		b.Input(in)
	}
	for _, o := range outputs {
		b.Output(o, classes[o])
	}
	return &cacheLookup{v: v, key: b.Sum(), start: start}
}

// hit returns the cached answer to req, or nil on a miss (or when l is
// nil). A hit skips the scheduler.
func (l *cacheLookup) hit(req *infer.Request, inputs []tensor.Tensor) *infer.Response {
	if l == nil {
		return nil
	}
	outputs, ok := l.v.cache.Get(l.key)
	l.lookup = time.Since(l.start)
	if !ok {
		return nil
	}
	l.v.stats.CacheHit(l.lookup, l.lookup)
	rows := 1
	if l.v.config.MaxBatchSize > 0 && len(inputs) > 0 && len(inputs[0].Shape) > 0 {
		rows = int(inputs[0].Shape[0])
	}
	req.Usage = infer.Usage{Rows: rows}
	return &infer.Response{Model: req.Model, Version: fmt.Sprint(l.v.number), ID: req.ID, Outputs: outputs}
}

// store keeps a computed answer (a miss) for the next identical request.
func (l *cacheLookup) store(outputs []tensor.Tensor) {
	if l == nil {
		return
	}
	start := time.Now()
	l.v.cache.Put(l.key, l.v.cacheOwner, outputs)
	l.v.stats.CacheMiss(l.lookup + time.Since(start))
}
