// Package credentials answers the Check service's questions about API keys
// and revoked tokens from memory, kept current by the store's change
// notifications, so that a Check costs no database round trip and tokens
// keep validating while Postgres is down. Caches are bounded; what is not
// cached is looked up, and a failed lookup denies (never fails open).
package credentials

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
)

// APIKeyStore is what API-key checks read and write.
type APIKeyStore interface {
	GetAPIKeyByPrefix(ctx context.Context, prefix string) (*store.APIKey, error)
	GetClient(ctx context.Context, id string) (*store.Client, error)
	RecordAPIKeyUse(ctx context.Context, prefix string, at time.Time, n int64) error
}

// APIKeys implements check.APIKeyChecker.
type APIKeys struct {
	store  APIKeyStore
	hasher *secret.Hasher
	log    *slog.Logger
	now    func() time.Time
	ttl    time.Duration

	mu    sync.Mutex
	max   int
	lru   *list.List               // of *entry, most recent first
	byKey map[string]*list.Element // prefix -> element
	uses  map[string]int64         // prefix -> uses not yet recorded
	// gen counts evicting notifications. A load that a notification
	// overlapped may hold what the notification said is gone, so it is
	// not cached.
	gen uint64
}

type entry struct {
	prefix string
	key    store.APIKey
	client store.Client
	loaded time.Time
}

var _ check.APIKeyChecker = (*APIKeys)(nil)

// APIKeysConfig configures APIKeys.
type APIKeysConfig struct {
	Store  APIKeyStore
	Hasher *secret.Hasher
	// MaxEntries bounds the cache (default 100000).
	MaxEntries int
	// TTL bounds how long an entry is trusted without a notification
	// (default 1m); notifications evict at once.
	TTL    time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// NewAPIKeys returns an API-key checker.
func NewAPIKeys(cfg APIKeysConfig) *APIKeys {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &APIKeys{
		store: cfg.Store, hasher: cfg.Hasher, log: cfg.Logger, now: cfg.Now, ttl: cfg.TTL,
		max: cfg.MaxEntries, lru: list.New(), byKey: make(map[string]*list.Element), uses: make(map[string]int64),
	}
}

// CheckAPIKey implements check.APIKeyChecker.
func (a *APIKeys) CheckAPIKey(ctx context.Context, presented string) (*check.Principal, error) {
	prefix, ok := secret.ParseAPIKey(presented)
	if !ok {
		return nil, check.ErrInvalidKey
	}
	e, err := a.entry(ctx, prefix)
	if err != nil {
		return nil, err
	}
	now := a.now()
	// The hash check comes before any other answer, so that the answers
	// about a key (revoked, expired) are given only to its holder.
	if !a.hasher.Verify(e.key.Hash, presented) {
		return nil, check.ErrInvalidKey
	}
	if e.key.RevokedAt != nil || (e.key.ExpiresAt != nil && !e.key.ExpiresAt.After(now)) || !e.client.Enabled {
		return nil, check.ErrInvalidKey
	}
	a.mu.Lock()
	a.uses[prefix]++
	a.mu.Unlock()
	return &check.Principal{ClientID: e.client.ID, Plan: e.client.Plan, Scopes: e.key.Scopes, Models: e.client.Models}, nil
}

// entry returns the cached key and client for prefix, loading them on a
// miss or when stale.
func (a *APIKeys) entry(ctx context.Context, prefix string) (*entry, error) {
	now := a.now()
	a.mu.Lock()
	gen := a.gen
	if el, ok := a.byKey[prefix]; ok {
		e := el.Value.(*entry)
		if now.Sub(e.loaded) < a.ttl {
			a.lru.MoveToFront(el)
			a.mu.Unlock()
			return e, nil
		}
	}
	a.mu.Unlock()

	k, err := a.store.GetAPIKeyByPrefix(ctx, prefix)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return nil, check.ErrInvalidKey
	}
	if err != nil {
		return nil, fmt.Errorf("look up API key: %w", err)
	}
	c, err := a.store.GetClient(ctx, k.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, check.ErrInvalidKey
	}
	if err != nil {
		return nil, fmt.Errorf("look up API key's client: %w", err)
	}
	e := &entry{prefix: prefix, key: *k, client: *c, loaded: now}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen != gen {
		// Answer this request from the load (as if it had come just before
		// the change) but keep it out of the cache.
		return e, nil
	}
	if el, ok := a.byKey[prefix]; ok {
		a.lru.Remove(el)
	}
	a.byKey[prefix] = a.lru.PushFront(e)
	for a.lru.Len() > a.max {
		old := a.lru.Remove(a.lru.Back()).(*entry)
		delete(a.byKey, old.prefix)
	}
	return e, nil
}

// Changed evicts what a store notification says changed.
func (a *APIKeys) Changed(c store.Change) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch c.Kind {
	case store.ChangeAPIKey, store.ChangeClient, store.ChangeResync:
		a.gen++
	}
	switch c.Kind {
	case store.ChangeAPIKey:
		if el, ok := a.byKey[c.ID]; ok {
			a.lru.Remove(el)
			delete(a.byKey, c.ID)
		}
	case store.ChangeClient:
		for el := a.lru.Front(); el != nil; {
			next := el.Next()
			if e := el.Value.(*entry); e.client.ID == c.ID {
				a.lru.Remove(el)
				delete(a.byKey, e.prefix)
			}
			el = next
		}
	case store.ChangeResync:
		a.lru.Init()
		clear(a.byKey)
	}
}

// FlushUses records the uses counted since the last flush; failed writes
// are kept for the next flush.
func (a *APIKeys) FlushUses(ctx context.Context) error {
	a.mu.Lock()
	pending := a.uses
	a.uses = make(map[string]int64, len(pending))
	a.mu.Unlock()
	now := a.now()
	var errs []error
	for prefix, n := range pending {
		if err := a.store.RecordAPIKeyUse(ctx, prefix, now, n); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			errs = append(errs, err)
			a.mu.Lock()
			a.uses[prefix] += n
			a.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// RunFlusher flushes uses every interval until ctx ends, then once more.
func (a *APIKeys) RunFlusher(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := a.FlushUses(final); err != nil {
				a.log.Warn("record API key use", "error", err)
			}
			return
		case <-t.C:
			if err := a.FlushUses(ctx); err != nil {
				a.log.Warn("record API key use", "error", err)
			}
		}
	}
}
