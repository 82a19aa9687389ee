package token

import (
	"crypto"
	"crypto/sha256"
	"sync"
	"time"
)

// DefaultCacheSize is the number of verified tokens a Verifier remembers
// when VerifierConfig.CacheSize is zero.
const DefaultCacheSize = 10000

const cacheShards = 16

// verified is a token whose signature and claims were checked. A hit
// skips parsing and the signature check, never the key lookup: the kid
// must still resolve to the same key and alg, so removing or replacing a
// key stops its cached tokens at once.
type verified struct {
	claims *Claims
	kid    string
	alg    string
	key    crypto.PublicKey
	// until is exp plus leeway: the entry is useless after it.
	until time.Time
}

// tokenCache maps the SHA-256 of a raw token to its verification. It is
// bounded; when a shard is full it drops expired entries, then arbitrary
// ones.
type tokenCache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*verified
}

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	c := &tokenCache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*verified)
	}
	return c
}

func (c *tokenCache) shard(h *[sha256.Size]byte) *cacheShard {
	return &c.shards[h[0]%cacheShards]
}

func (c *tokenCache) get(h *[sha256.Size]byte) *verified {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[*h]
}

func (c *tokenCache) put(h *[sha256.Size]byte, v *verified, now time.Time) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		for k, e := range s.m {
			if !now.Before(e.until) {
				delete(s.m, k)
			}
		}
		// Map iteration starts at a random place: an arbitrary victim.
		for k := range s.m {
			if len(s.m) < c.perShard {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[*h] = v
}

func (c *tokenCache) remove(h *[sha256.Size]byte) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, *h)
}

func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// sameKey reports whether a and b are the same public key.
func sameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && k.Equal(b)
}
