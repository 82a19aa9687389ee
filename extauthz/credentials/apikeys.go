// Package credentials answers the Check service's and the OAuth2 server's
// questions about clients, API keys and revoked tokens from memory: complete
// copies, kept current by the store's change notifications, so that a Check
// or a client lookup costs no database round trip (an unknown key or client
// id neither), and tokens and keys keep validating while Postgres is down.
// While a copy cannot be trusted (not loaded yet, notifications lost), what
// it would answer is looked up, and a failed lookup denies (never fails
// open).
package credentials

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
)

// APIKeyStore is what API-key checks read and write.
type APIKeyStore interface {
	ListAPIKeys(ctx context.Context, clientID string) ([]store.APIKey, error)
	GetAPIKeyByPrefix(ctx context.Context, prefix string) (*store.APIKey, error)
	RecordAPIKeyUse(ctx context.Context, prefix string, at time.Time, n int64) error
}

// APIKeys implements check.APIKeyChecker from a directory of every API key
// not revoked, in memory like the clients' (see Clients), so that a key
// with an unknown prefix costs no database query: a flood of made-up keys,
// each new, would defeat a cache of misses. Its memory is bounded by the
// keys that admins created (a few hundred bytes each), not by what callers
// send. A key's client is read from the client directory at every check,
// so that the key answers with its client's current state.
type APIKeys struct {
	keys    *directory[store.APIKey]
	clients *Clients
	store   APIKeyStore
	hasher  *secret.Hasher
	log     *slog.Logger
	now     func() time.Time

	mu   sync.Mutex
	uses map[string]int64 // prefix -> uses not yet recorded
}

var _ check.APIKeyChecker = (*APIKeys)(nil)

// APIKeysConfig configures APIKeys.
type APIKeysConfig struct {
	Store APIKeyStore
	// Clients is the directory the keys' clients are read from.
	Clients *Clients
	Hasher  *secret.Hasher
	Logger  *slog.Logger
	Now     func() time.Time
	// Lookups (optional) counts the database lookups that checks needed.
	Lookups prometheus.Counter
}

// NewAPIKeys returns an API-key checker whose directory is not yet loaded.
func NewAPIKeys(cfg APIKeysConfig) *APIKeys {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &APIKeys{
		keys: newDirectory(dirConfig[store.APIKey]{
			what: "api key",
			list: func(ctx context.Context) ([]store.APIKey, error) { return cfg.Store.ListAPIKeys(ctx, "") },
			get:  cfg.Store.GetAPIKeyByPrefix,
			id:   func(k *store.APIKey) string { return k.Prefix },
			// A revoked key never comes back: it is answered as unknown.
			keep: func(k *store.APIKey) bool { return k.RevokedAt == nil },
			log:  cfg.Logger, lookups: cfg.Lookups,
		}),
		clients: cfg.Clients, store: cfg.Store, hasher: cfg.Hasher, log: cfg.Logger, now: cfg.Now,
		uses: make(map[string]int64),
	}
}

// Load replaces the directory with the keys as they are now.
func (a *APIKeys) Load(ctx context.Context) error { return a.keys.Load(ctx) }

// CheckAPIKey implements check.APIKeyChecker. The key's scopes are its own
// intersected with its client's current scopes, and its models its
// client's current models: narrowing a client narrows its keys at once.
func (a *APIKeys) CheckAPIKey(ctx context.Context, presented string) (*check.Principal, error) {
	prefix, ok := secret.ParseAPIKey(presented)
	if !ok {
		return nil, check.ErrInvalidKey
	}
	k, err := a.keys.Get(ctx, prefix)
	if errors.Is(err, store.ErrNotFound) {
		return nil, check.ErrInvalidKey
	}
	if err != nil {
		return nil, err
	}
	// The hash check comes before any other answer, so that the answers
	// about a key (expired, its client) are given only to its holder.
	if !a.hasher.Verify(k.Hash, presented) {
		return nil, check.ErrInvalidKey
	}
	if k.ExpiresAt != nil && !k.ExpiresAt.After(a.now()) {
		return nil, check.ErrInvalidKey
	}
	c, err := a.clients.GetClient(ctx, k.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, check.ErrInvalidKey
	}
	if err != nil {
		return nil, fmt.Errorf("API key's client: %w", err)
	}
	if !c.Enabled {
		return nil, check.ErrInvalidKey
	}
	a.mu.Lock()
	a.uses[prefix]++
	a.mu.Unlock()
	p := &check.Principal{ClientID: c.ID, Plan: c.Plan, Scopes: intersect(k.Scopes, c.Scopes), Models: c.Models}
	if k.ExpiresAt != nil {
		// A stream opened with the key ends then (wire.HeaderExpires).
		p.Expires = *k.ExpiresAt
	}
	return p, nil
}

// Key returns the key with prefix while it is not revoked (a revoked or
// unknown key is an error wrapping store.ErrNotFound), without its secret:
// for helix-authz's Limits, which re-checks a stream's key by its prefix
// (the gateway authenticated the secret when the stream opened). Callers
// check ExpiresAt and ClientID; the record is shared and read-only.
func (a *APIKeys) Key(ctx context.Context, prefix string) (*store.APIKey, error) {
	return a.keys.Get(ctx, prefix)
}

// intersect returns the scopes of key that client's scopes grant (key
// itself, shared, when they grant them all: the usual case costs no
// allocation). A key's "models:m:infer" survives under a client's
// "models:infer"; a key's "models:infer" does not survive its client's
// narrowing to "models:m:infer" (the key never had less than all models).
func intersect(key, client []string) []string {
	n := 0
	for _, s := range key {
		if check.ScopeGranted(s, client) {
			n++
		}
	}
	if n == len(key) {
		return key
	}
	out := make([]string, 0, n)
	for _, s := range key {
		if check.ScopeGranted(s, client) {
			out = append(out, s)
		}
	}
	return out
}

// Changed applies a store notification: a changed key is read back. Client
// changes need nothing here: keys read their client at every check.
func (a *APIKeys) Changed(ctx context.Context, c store.Change) {
	switch c.Kind {
	case store.ChangeAPIKey:
		a.keys.changed(ctx, c.ID)
	case store.ChangeResync:
		a.keys.resync(ctx)
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
