// Package throttle slows down repeated failures per key (a source address,
// an account, both) with exponential backoff: after the n-th failure in a
// row the key may try again only after min(Base·2^(n-1), Max). A success
// forgets the key, and so does a quiet period (Forget) without failures.
//
// Keys live in a bounded LRU (hashicorp/golang-lru/v2): when MaxKeys is
// reached the least recently touched key is forgotten and starts afresh.
// An attacker who fails from more distinct keys than MaxKeys within the
// forget period can therefore churn keys out; size MaxKeys well above the
// keys active at once.
//
// State is per process: N replicas give an attacker N times the attempts.
// This is a brake on guessing, not an account lock, so that one attacker
// cannot lock a victim out for longer than Max.
package throttle

import (
	"fmt"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// DefaultMaxKeys bounds the keys remembered when Config.MaxKeys is 0.
const DefaultMaxKeys = 100_000

// Config configures a Throttle.
type Config struct {
	// Base is the wait after the first failure (> 0).
	Base time.Duration
	// Max caps the wait (>= Base).
	Max time.Duration
	// Forget is how long a key must go without a failure to be forgotten
	// (>= Max, so that a wait always ends before its key is forgotten);
	// 2×Max when 0.
	Forget time.Duration
	// MaxKeys bounds the keys remembered (DefaultMaxKeys when 0).
	MaxKeys int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Throttle remembers failures per key. It is safe for concurrent use.
type Throttle struct {
	base, max, forget time.Duration
	now               func() time.Time

	// mu makes read-modify-write of an entry one step; the LRU locks
	// itself only per call.
	mu   sync.Mutex
	keys *lru.Cache[string, entry]
}

type entry struct {
	failures int       // failures in a row
	last     time.Time // the latest failure
	next     time.Time // allowed again from then on
}

// Validate says what is wrong with cfg, or nil.
func (cfg Config) Validate() error {
	switch {
	case cfg.Base <= 0:
		return fmt.Errorf("throttle: base %v must be positive", cfg.Base)
	case cfg.Max < cfg.Base:
		return fmt.Errorf("throttle: max %v is less than base %v", cfg.Max, cfg.Base)
	case cfg.Forget != 0 && cfg.Forget < cfg.Max:
		return fmt.Errorf("throttle: forget %v is less than max %v", cfg.Forget, cfg.Max)
	case cfg.MaxKeys < 0:
		return fmt.Errorf("throttle: max keys %d is negative", cfg.MaxKeys)
	}
	return nil
}

// New checks cfg and returns a Throttle.
func New(cfg Config) (*Throttle, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Forget == 0 {
		cfg.Forget = 2 * cfg.Max
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	keys, err := lru.New[string, entry](cfg.MaxKeys)
	if err != nil {
		return nil, fmt.Errorf("throttle: %w", err)
	}
	return &Throttle{base: cfg.Base, max: cfg.Max, forget: cfg.Forget, now: cfg.Now, keys: keys}, nil
}

// Wait is how long key must still wait before its next attempt; 0 means
// it may try now.
func (t *Throttle) Wait(key string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.live(key, now)
	if !ok {
		return 0
	}
	return max(e.next.Sub(now), 0)
}

// Failure counts a failure of key: its next attempt is allowed after
// min(Base·2^(n-1), Max), n being its failures in a row.
func (t *Throttle) Failure(key string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, _ := t.live(key, now)
	e.failures++
	e.last = now
	e.next = now.Add(t.delay(e.failures))
	t.keys.Add(key, e)
}

// Success forgets key: its next failure waits Base again.
func (t *Throttle) Success(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keys.Remove(key)
}

// live is key's entry unless it has been quiet for Forget (then it is
// removed). Called with mu held.
func (t *Throttle) live(key string, now time.Time) (entry, bool) {
	e, ok := t.keys.Get(key)
	if !ok {
		return entry{}, false
	}
	if now.Sub(e.last) >= t.forget {
		t.keys.Remove(key)
		return entry{}, false
	}
	return e, true
}

// delay is min(Base·2^(n-1), Max) without overflowing.
func (t *Throttle) delay(n int) time.Duration {
	d := t.base
	for i := 1; i < n && d < t.max; i++ {
		d *= 2
	}
	return min(d, t.max)
}
