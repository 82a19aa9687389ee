package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Counting far from the limit: a request whose counters are all well below
// their limits (by syncMargin) is counted in this replica's memory and
// answered at once; the counts reach Redis in batches every flushEvery, and
// each batch's answers bring back what the other replicas counted. Close to
// a limit, or before this replica has read a counter in its window, the
// request waits for Redis as it must: the decision that can refuse is
// always Redis's. With one replica the counts are exact either way; with
// several, a replica sees the others' counts at most one flush late, which
// the margin absorbs.
const (
	flushEvery = 10 * time.Millisecond
	// maxLocalCounters bounds the counters held here (about 150 bytes
	// each); past it, new counters are counted and refused in Redis only.
	maxLocalCounters = 200_000
)

// syncMargin is how close to its limit a counter may come on local counts:
// at least 100 requests, which other replicas would have to add to one
// client's model within one flush (10,000 requests/s) to pass the limit
// unseen, or a tenth of the limit.
func syncMargin(limit uint32) int64 { return max(int64(limit)/10, 100) }

// localCounter is this replica's view of one Redis counter.
type localCounter struct {
	end      time.Time // its window's end
	ttl      int64
	known    bool  // Redis answered for it in this window
	redis    int64 // the largest count Redis answered
	inflight int64 // sent to Redis, not answered yet
	pending  int64 // counted here, not sent yet
}

func (c *localCounter) count() int64 { return c.redis + c.inflight + c.pending }

// localCounters are the counters of the windows under way; one mutex, held
// for a few map operations.
type localCounters struct {
	mu sync.Mutex
	m  map[string]*localCounter
}

func newLocalCounters() *localCounters {
	return &localCounters{m: make(map[string]*localCounter)}
}

// reserve counts one request on every key here when each stays syncMargin
// below its window's limit, and returns the counts with it; otherwise it
// counts nothing and returns false: Redis must decide.
func (lc *localCounters) reserve(keys []string, windows []Window, counts []int64) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for i, key := range keys {
		c := lc.m[key]
		if c == nil || !c.known || int64(windows[i].Limit)-(c.count()+1) < syncMargin(windows[i].Limit) {
			return false
		}
	}
	for i, key := range keys {
		c := lc.m[key]
		c.pending++
		counts[i] = c.count()
	}
	return true
}

// overLimit reports whether Redis's last count for key passed limit in a
// window still under way, and when that window ends: such a request is
// refused without asking Redis again.
func (lc *localCounters) overLimit(key string, limit uint32, now time.Time) (time.Time, bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	c := lc.m[key]
	if c == nil || !c.known || c.redis <= int64(limit) || !now.Before(c.end) {
		return time.Time{}, false
	}
	return c.end, true
}

// beginSync takes the counts held for keys, plus this request, to send to
// Redis now.
func (lc *localCounters) beginSync(keys []string, ttls []int64, ends []time.Time) []Increment {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	incs := make([]Increment, len(keys))
	for i, key := range keys {
		c := lc.m[key]
		if c == nil {
			if len(lc.m) >= maxLocalCounters {
				incs[i] = Increment{Key: key, By: 1, TTL: ttls[i]}
				continue
			}
			c = &localCounter{end: ends[i], ttl: ttls[i]}
			lc.m[key] = c
		}
		incs[i] = Increment{Key: key, By: c.pending + 1, TTL: ttls[i]}
		c.inflight += incs[i].By
		c.pending = 0
	}
	return incs
}

// settle records Redis's answers to incs. When Redis did not answer, the
// counts go back to pending, less lost per increment (the request a
// synchronous call was for is decided by the failure mode, uncounted).
func (lc *localCounters) settle(incs []Increment, counts []int64, err error, lost int64) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for i, inc := range incs {
		c := lc.m[inc.Key]
		if c == nil {
			continue // counted in Redis only (maxLocalCounters)
		}
		c.inflight -= inc.By
		if err != nil {
			c.pending += inc.By - lost
			continue
		}
		c.redis, c.known = max(c.redis, counts[i]), true
	}
}

// takePending takes every count held here for a flush, and forgets the
// counters whose window ended with nothing left to send.
func (lc *localCounters) takePending(now time.Time) []Increment {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var incs []Increment
	for key, c := range lc.m {
		switch {
		case c.pending > 0:
			incs = append(incs, Increment{Key: key, By: c.pending, TTL: c.ttl})
			c.inflight += c.pending
			c.pending = 0
		case c.inflight == 0 && now.After(c.end):
			delete(lc.m, key)
		}
	}
	return incs
}

// runFlusher sends the counts held here every flushEvery until ctx ends,
// then once more.
func (l *Limiter) runFlusher(ctx context.Context) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), time.Second)
			l.flush(final)
			cancel()
			return
		case <-t.C:
			l.flush(ctx)
		}
	}
}

// flush sends the counts held here. A failure keeps them for the next
// flush and sends the next requests to Redis, where the failure mode
// decides while Redis cannot answer.
func (l *Limiter) flush(ctx context.Context) {
	incs := l.local.takePending(l.now())
	if len(incs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, l.limits.Load().timeout)
	defer cancel()
	counts, err := l.counter.IncrBy(ctx, incs)
	l.local.settle(incs, counts, err, 0)
	l.healthy.Store(err == nil)
	if err != nil {
		l.logUnavailable(ctx, err, l.limits.Load().failOpen)
	}
}
