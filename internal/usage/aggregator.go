package usage

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/helixflow/helixflow/internal/wire"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

// MaxClientIDBytes bounds a row's client id (helix-authz refuses longer).
const MaxClientIDBytes = 200

// MaxModelBytes bounds a row's model name (the ledger's column), tighter
// than wire.MaxModelNameBytes.
const MaxModelBytes = 200

// DefaultMaxKeys is a sensible bound on an Aggregator's keys: rows per
// batch, and so memory and message size while the ledger is unreachable.
const DefaultMaxKeys = 10000

// ErrClientID says a client id cannot be a ledger row's.
var ErrClientID = errors.New("bad client id")

// CheckClientID reports whether s can be a UsageRow's client_id: not
// empty, at most MaxClientIDBytes, valid UTF-8 without control characters.
// The Aggregator drops (and counts) what fails it, so one bad row can
// never make helix-authz refuse a whole batch forever.
func CheckClientID(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrClientID)
	case len(s) > MaxClientIDBytes:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrClientID, len(s), MaxClientIDBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not valid UTF-8", ErrClientID)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: contains a control character", ErrClientID)
		}
	}
	return nil
}

// numShards spreads concurrent adds over locks; a power of two.
const numShards = 16

type key struct {
	hour   int64
	client string
	model  string
}

type counts struct {
	requests, inferences, errors, throttled, computeNS uint64
	buckets                                            []uint64 // nil until a request is timed
}

type shard struct {
	mu sync.Mutex
	m  map[key]*counts
	_  [40]byte // keep shards' locks on separate cache lines
}

// Aggregator sums usage per (hour, client, model) in memory until a
// Reporter drains it. It is safe for concurrent use. It holds at most
// maxKeys keys: an add for a new key past that bound, or with a client or
// model name the ledger would refuse, is dropped and counted (Dropped).
// Adding to an existing key does not allocate.
type Aggregator struct {
	maxKeys int64
	keys    atomic.Int64
	dropped atomic.Uint64
	seed    maphash.Seed
	shards  [numShards]shard
}

// NewAggregator returns an empty Aggregator holding at most maxKeys keys
// (DefaultMaxKeys when maxKeys <= 0).
func NewAggregator(maxKeys int) *Aggregator {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	a := &Aggregator{maxKeys: int64(maxKeys), seed: maphash.MakeSeed()}
	for i := range a.shards {
		a.shards[i].m = make(map[key]*counts)
	}
	return a
}

// AddRequest counts one request of client on model that ended at now:
// rows inference rows, failed if it was answered with an error, compute
// its share of execution time, latency its time at the worker (0: not
// timed, e.g. refused before queueing).
func (a *Aggregator) AddRequest(now time.Time, client, model string, rows int, failed bool, compute, latency time.Duration) {
	c, s := a.lock(now, client, model)
	if c == nil {
		return
	}
	c.requests++
	if rows > 0 {
		c.inferences += uint64(rows)
	}
	if failed {
		c.errors++
	}
	if compute > 0 {
		c.computeNS += uint64(compute)
	}
	if latency > 0 {
		if c.buckets == nil {
			c.buckets = make([]uint64, NumBuckets)
		}
		c.buckets[BucketOf(latency)]++
	}
	s.mu.Unlock()
}

// AddThrottled counts one request of client on model refused over the
// client's plan limit at now.
func (a *Aggregator) AddThrottled(now time.Time, client, model string) {
	c, s := a.lock(now, client, model)
	if c == nil {
		return
	}
	c.throttled++
	s.mu.Unlock()
}

// Dropped is the number of adds not counted since the Aggregator was
// made: over the key bound, or with a name the ledger would refuse.
func (a *Aggregator) Dropped() uint64 { return a.dropped.Load() }

// Keys is the number of keys held now (rows the next Drain returns).
func (a *Aggregator) Keys() int { return int(a.keys.Load()) }

// lock returns the key's counts with its shard locked, or nil (nothing
// locked) when the add is dropped.
func (a *Aggregator) lock(now time.Time, client, model string) (*counts, *shard) {
	k := key{hour: HourOf(now), client: client, model: model}
	h := maphash.String(a.seed, client) ^ maphash.String(a.seed, model)*31
	s := &a.shards[h&(numShards-1)]
	s.mu.Lock()
	if c, ok := s.m[k]; ok {
		return c, s
	}
	// A new key: checked once here, not on every add.
	if CheckClientID(client) != nil || len(model) > MaxModelBytes || wire.CheckModelName(model) != nil {
		s.mu.Unlock()
		a.dropped.Add(1)
		return nil, nil
	}
	if a.keys.Add(1) > a.maxKeys {
		a.keys.Add(-1)
		s.mu.Unlock()
		a.dropped.Add(1)
		return nil, nil
	}
	c := &counts{}
	s.m[k] = c
	return c, s
}

// Drain returns the counts summed since the last Drain as rows, sorted by
// (hour, client, model) so that writers of the same keys take row locks
// in one order, and empties the Aggregator.
func (a *Aggregator) Drain() []*usagev1.UsageRow {
	var rows []*usagev1.UsageRow
	for i := range a.shards {
		s := &a.shards[i]
		s.mu.Lock()
		if len(s.m) == 0 {
			s.mu.Unlock()
			continue
		}
		m := s.m
		s.m = make(map[key]*counts, len(m))
		s.mu.Unlock()
		a.keys.Add(-int64(len(m)))
		for k, c := range m {
			rows = append(rows, &usagev1.UsageRow{
				HourUnix:       k.hour,
				ClientId:       k.client,
				Model:          k.model,
				Requests:       c.requests,
				Inferences:     c.inferences,
				Errors:         c.errors,
				Throttled:      c.throttled,
				ComputeNs:      c.computeNS,
				LatencyBuckets: c.buckets,
			})
		}
	}
	slices.SortFunc(rows, func(x, y *usagev1.UsageRow) int {
		return cmp.Or(cmp.Compare(x.HourUnix, y.HourUnix),
			cmp.Compare(x.ClientId, y.ClientId),
			cmp.Compare(x.Model, y.Model))
	})
	return rows
}
