package credentials_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/credentials"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
)

// fakeKeyStore is an in-memory credentials.APIKeyStore for unit tests of
// the cache; the Postgres store has its own tests.
type fakeKeyStore struct {
	mu      sync.Mutex
	keys    map[string]store.APIKey // by prefix
	clients map[string]store.Client
	// keyErr, clientErr, recordErr: returned instead of an answer.
	keyErr, clientErr, recordErr error
	// recordFail: prefixes whose RecordAPIKeyUse fails with recordErr.
	recordFail map[string]bool
	// onGetKey runs inside GetAPIKeyByPrefix, after the key was read.
	onGetKey func(prefix string)

	keyCalls, clientCalls int
	uses                  map[string]int64
	usedAt                map[string]time.Time
}

func newFakeKeyStore() *fakeKeyStore {
	return &fakeKeyStore{
		keys: map[string]store.APIKey{}, clients: map[string]store.Client{},
		recordFail: map[string]bool{}, uses: map[string]int64{}, usedAt: map[string]time.Time{},
	}
}

func (f *fakeKeyStore) GetAPIKeyByPrefix(_ context.Context, prefix string) (*store.APIKey, error) {
	f.mu.Lock()
	f.keyCalls++
	k, ok := f.keys[prefix]
	err := f.keyErr
	hook := f.onGetKey
	f.mu.Unlock()
	if hook != nil {
		hook(prefix)
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("fake: api key: %w", store.ErrNotFound)
	}
	k.Scopes = slices.Clone(k.Scopes)
	return &k, nil
}

func (f *fakeKeyStore) GetClient(_ context.Context, id string) (*store.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clientCalls++
	if f.clientErr != nil {
		return nil, f.clientErr
	}
	c, ok := f.clients[id]
	if !ok {
		return nil, fmt.Errorf("fake: client: %w", store.ErrNotFound)
	}
	c.Models = slices.Clone(c.Models)
	return &c, nil
}

func (f *fakeKeyStore) RecordAPIKeyUse(_ context.Context, prefix string, at time.Time, n int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.recordFail[prefix] || f.recordErr != nil {
		if f.recordErr != nil {
			return f.recordErr
		}
		return fmt.Errorf("fake: %w", store.ErrUnavailable)
	}
	if _, ok := f.keys[prefix]; !ok {
		return fmt.Errorf("fake: %w", store.ErrNotFound)
	}
	f.uses[prefix] += n
	f.usedAt[prefix] = at
	return nil
}

func (f *fakeKeyStore) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keyCalls + f.clientCalls
}

func (f *fakeKeyStore) update(fn func(f *fakeKeyStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type keyEnv struct {
	store  *fakeKeyStore
	hasher *secret.Hasher
	clock  *clock
	keys   *credentials.APIKeys
}

const ttl = time.Minute

func newKeyEnv(t *testing.T, maxEntries int) *keyEnv {
	t.Helper()
	e := &keyEnv{
		store:  newFakeKeyStore(),
		hasher: secret.NewHasher([]byte("pepper")),
		clock:  &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	e.store.clients["hxc_a"] = store.Client{ID: "hxc_a", Plan: "gold", Models: []string{"resnet", "bert"}, Enabled: true}
	e.store.clients["hxc_b"] = store.Client{ID: "hxc_b", Plan: "default", Models: []string{"*"}, Enabled: true}
	e.keys = credentials.NewAPIKeys(credentials.APIKeysConfig{
		Store: e.store, Hasher: e.hasher, MaxEntries: maxEntries, TTL: ttl, Now: e.clock.Now,
	})
	return e
}

// addKey stores a new key of client and returns the key and its prefix.
func (e *keyEnv) addKey(t *testing.T, client string, scopes ...string) (key, prefix string) {
	t.Helper()
	key, prefix, err := secret.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	e.store.update(func(f *fakeKeyStore) {
		f.keys[prefix] = store.APIKey{ID: prefix, Prefix: prefix, Hash: e.hasher.Hash(key), ClientID: client, Scopes: scopes}
	})
	return key, prefix
}

func (e *keyEnv) check(t *testing.T, key string) (*check.Principal, error) {
	t.Helper()
	return e.keys.CheckAPIKey(context.Background(), key)
}

func (e *keyEnv) mustAccept(t *testing.T, key string) *check.Principal {
	t.Helper()
	p, err := e.check(t, key)
	if err != nil || p == nil {
		t.Fatalf("CheckAPIKey: (%v, %v), want a principal", p, err)
	}
	return p
}

func (e *keyEnv) mustRefuse(t *testing.T, key string) {
	t.Helper()
	p, err := e.check(t, key)
	if !errors.Is(err, check.ErrInvalidKey) || p != nil {
		t.Fatalf("CheckAPIKey: (%v, %v), want ErrInvalidKey", p, err)
	}
}

func TestValidKey(t *testing.T) {
	e := newKeyEnv(t, 0)
	key, _ := e.addKey(t, "hxc_a", "models:resnet:infer")
	p := e.mustAccept(t, key)
	if p.ClientID != "hxc_a" || p.Plan != "gold" || !slices.Equal(p.Scopes, []string{"models:resnet:infer"}) ||
		!slices.Equal(p.Models, []string{"resnet", "bert"}) {
		t.Errorf("principal %+v", p)
	}
}

// otherSecret returns key with its secret part replaced: same prefix,
// well formed, wrong.
func otherSecret(t *testing.T, key string) string {
	t.Helper()
	other, _, err := secret.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	// "hx_" + prefix + "_": the secret may hold '_' too.
	n := len("hx_") + secret.APIKeyPrefixLen + 1
	forged := key[:n] + other[n:]
	if _, ok := secret.ParseAPIKey(forged); !ok || forged == key {
		t.Fatalf("forged key %q does not parse", forged)
	}
	return forged
}

func TestRefusedKeys(t *testing.T) {
	e := newKeyEnv(t, 0)
	key, prefix := e.addKey(t, "hxc_a", "models:infer")
	e.mustAccept(t, key)

	t.Run("wrong secret with a valid prefix", func(t *testing.T) {
		e.mustRefuse(t, otherSecret(t, key))
	})
	t.Run("wrong secret, not cached", func(t *testing.T) {
		e.keys.Changed(store.Change{Kind: store.ChangeResync})
		e.mustRefuse(t, otherSecret(t, key))
	})
	t.Run("unparsable", func(t *testing.T) {
		before := e.store.calls()
		for _, bad := range []string{
			"", "hx_", "Bearer " + key, key + "x", key[:len(key)-1], " " + key,
			strings.ToUpper(key[:3]) + key[3:],
			"hx_" + strings.ToUpper(prefix) + key[3+len(prefix):],
			"hx_" + prefix + "-" + key[len("hx_")+len(prefix)+1:],
			key[:len(key)-1] + "=",
			"hx_" + prefix + "_" + strings.Repeat("!", 43),
			strings.Repeat("a", 4096),
		} {
			e.mustRefuse(t, bad)
		}
		if e.store.calls() != before {
			t.Error("unparsable keys reached the store")
		}
	})
	t.Run("unknown prefix", func(t *testing.T) {
		other, _, _ := secret.NewAPIKey()
		e.mustRefuse(t, other)
	})
}

func TestKeyStates(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fakeKeyStore, prefix string, now time.Time)
	}{
		{"revoked", func(f *fakeKeyStore, p string, now time.Time) {
			k := f.keys[p]
			at := now.Add(-time.Hour)
			k.RevokedAt = &at
			f.keys[p] = k
		}},
		{"expired", func(f *fakeKeyStore, p string, now time.Time) {
			k := f.keys[p]
			at := now.Add(-time.Second)
			k.ExpiresAt = &at
			f.keys[p] = k
		}},
		{"expiring now", func(f *fakeKeyStore, p string, now time.Time) {
			k := f.keys[p]
			k.ExpiresAt = &now
			f.keys[p] = k
		}},
		{"client disabled", func(f *fakeKeyStore, p string, now time.Time) {
			c := f.clients["hxc_a"]
			c.Enabled = false
			f.clients["hxc_a"] = c
		}},
		{"client missing", func(f *fakeKeyStore, p string, now time.Time) {
			delete(f.clients, "hxc_a")
		}},
		{"key missing", func(f *fakeKeyStore, p string, now time.Time) {
			delete(f.keys, p)
		}},
		{"key invalid in the store", func(f *fakeKeyStore, p string, now time.Time) {
			f.keyErr = fmt.Errorf("fake: %w", store.ErrInvalid)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newKeyEnv(t, 0)
			key, prefix := e.addKey(t, "hxc_a", "models:infer")
			e.store.update(func(f *fakeKeyStore) { tt.setup(f, prefix, e.clock.Now()) })
			e.mustRefuse(t, key)
			if err := e.keys.FlushUses(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := e.store.uses[prefix]; n != 0 {
				t.Errorf("a refused key counted %d uses", n)
			}
		})
	}

	// A key expiring later is accepted until then, from the cache too.
	e := newKeyEnv(t, 0)
	key, prefix := e.addKey(t, "hxc_a", "models:infer")
	e.store.update(func(f *fakeKeyStore) {
		k := f.keys[prefix]
		at := e.clock.Now().Add(30 * time.Second)
		k.ExpiresAt = &at
		f.keys[prefix] = k
	})
	e.mustAccept(t, key)
	e.clock.Add(30 * time.Second)
	calls := e.store.calls()
	e.mustRefuse(t, key)
	if e.store.calls() != calls {
		t.Error("the expiry check needed the store")
	}
}

func TestStoreUnavailable(t *testing.T) {
	down := fmt.Errorf("fake: %w", store.ErrUnavailable)
	for _, tt := range []struct {
		name string
		set  func(f *fakeKeyStore)
	}{
		{"key lookup", func(f *fakeKeyStore) { f.keyErr = down }},
		{"client lookup", func(f *fakeKeyStore) { f.clientErr = down }},
		{"key lookup, context ended", func(f *fakeKeyStore) { f.keyErr = context.DeadlineExceeded }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newKeyEnv(t, 0)
			key, _ := e.addKey(t, "hxc_a", "models:infer")
			e.store.update(tt.set)
			for range 2 { // a failed lookup is not cached
				p, err := e.check(t, key)
				if err == nil || p != nil || errors.Is(err, check.ErrInvalidKey) {
					t.Fatalf("CheckAPIKey: (%v, %v), want an error that is not ErrInvalidKey", p, err)
				}
			}
			// Back up: the key works at once.
			e.store.update(func(f *fakeKeyStore) { f.keyErr, f.clientErr = nil, nil })
			e.mustAccept(t, key)
		})
	}

	// A key already cached keeps working while the store is down.
	e := newKeyEnv(t, 0)
	key, _ := e.addKey(t, "hxc_a", "models:infer")
	e.mustAccept(t, key)
	e.store.update(func(f *fakeKeyStore) { f.keyErr, f.clientErr = down, down })
	e.mustAccept(t, key)
	e.mustRefuse(t, otherSecret(t, key))
	// Once stale, it is looked up and the outage denies (503, not 401).
	e.clock.Add(ttl)
	if p, err := e.check(t, key); p != nil || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("stale entry with the store down: (%v, %v)", p, err)
	}
}

func TestCache(t *testing.T) {
	e := newKeyEnv(t, 0)
	key, prefix := e.addKey(t, "hxc_a", "models:infer")
	e.mustAccept(t, key)
	calls := e.store.calls()
	if calls != 2 {
		t.Fatalf("first check made %d store calls, want 2", calls)
	}
	for range 10 {
		e.mustAccept(t, key)
	}
	e.mustRefuse(t, otherSecret(t, key))
	if e.store.calls() != calls {
		t.Fatal("a cache hit called the store")
	}

	// A change the notification missed shows after the TTL.
	revoke := func() {
		e.store.update(func(f *fakeKeyStore) {
			k := f.keys[prefix]
			at := e.clock.Now()
			k.RevokedAt = &at
			f.keys[prefix] = k
		})
	}
	revoke()
	e.clock.Add(ttl - time.Second)
	e.mustAccept(t, key)
	e.clock.Add(time.Second)
	e.mustRefuse(t, key)
	if e.store.calls() != calls+2 {
		t.Errorf("TTL expiry made %d store calls, want 2", e.store.calls()-calls)
	}
}

func TestChangedEvicts(t *testing.T) {
	type keyOf struct{ key, prefix, client string }
	setup := func(t *testing.T) (*keyEnv, []keyOf) {
		e := newKeyEnv(t, 0)
		var ks []keyOf
		for _, c := range []string{"hxc_a", "hxc_a", "hxc_b"} {
			k, p := e.addKey(t, c, "models:infer")
			ks = append(ks, keyOf{k, p, c})
			e.mustAccept(t, k)
		}
		return e, ks
	}
	// reloaded reports, per key, whether a check called the store.
	reloaded := func(t *testing.T, e *keyEnv, ks []keyOf) []bool {
		var out []bool
		for _, k := range ks {
			before := e.store.calls()
			e.mustAccept(t, k.key)
			out = append(out, e.store.calls() != before)
		}
		return out
	}
	tests := []struct {
		name   string
		change func(ks []keyOf) store.Change
		want   []bool
	}{
		{"apikey", func(ks []keyOf) store.Change { return store.Change{Kind: store.ChangeAPIKey, ID: ks[0].prefix} }, []bool{true, false, false}},
		{"client", func(ks []keyOf) store.Change { return store.Change{Kind: store.ChangeClient, ID: "hxc_a"} }, []bool{true, true, false}},
		{"resync", func(ks []keyOf) store.Change { return store.Change{Kind: store.ChangeResync} }, []bool{true, true, true}},
		{"revoked token", func(ks []keyOf) store.Change { return store.Change{Kind: store.ChangeRevoked, ID: ks[0].prefix} }, []bool{false, false, false}},
		{"signing keys", func(ks []keyOf) store.Change { return store.Change{Kind: store.ChangeKeys} }, []bool{false, false, false}},
		{"unknown apikey", func(ks []keyOf) store.Change { return store.Change{Kind: store.ChangeAPIKey, ID: "zzzzzzzz"} }, []bool{false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ks := setup(t)
			e.keys.Changed(tt.change(ks))
			if got := reloaded(t, e, ks); !slices.Equal(got, tt.want) {
				t.Errorf("reloaded %v, want %v", got, tt.want)
			}
		})
	}

	// After an eviction the change is seen at once.
	e, ks := setup(t)
	e.store.update(func(f *fakeKeyStore) {
		c := f.clients["hxc_a"]
		c.Enabled = false
		f.clients["hxc_a"] = c
	})
	e.mustAccept(t, ks[0].key) // cached, no notification yet
	e.keys.Changed(store.Change{Kind: store.ChangeClient, ID: "hxc_a"})
	e.mustRefuse(t, ks[0].key)
	e.mustRefuse(t, ks[1].key)
	e.mustAccept(t, ks[2].key)
}

// TestChangeDuringLoad: a notification that arrives while a key is being
// loaded must not be undone by caching what was loaded before it.
func TestChangeDuringLoad(t *testing.T) {
	for _, kind := range []store.ChangeKind{store.ChangeAPIKey, store.ChangeClient, store.ChangeResync} {
		t.Run(string(kind), func(t *testing.T) {
			e := newKeyEnv(t, 0)
			key, prefix := e.addKey(t, "hxc_a", "models:infer")
			var once sync.Once
			e.store.onGetKey = func(p string) {
				once.Do(func() {
					// The key was read; now it is revoked and the
					// notification arrives before the load finishes.
					e.store.update(func(f *fakeKeyStore) {
						k := f.keys[prefix]
						at := e.clock.Now()
						k.RevokedAt = &at
						f.keys[prefix] = k
					})
					id := map[store.ChangeKind]string{store.ChangeAPIKey: prefix, store.ChangeClient: "hxc_a"}[kind]
					e.keys.Changed(store.Change{Kind: kind, ID: id})
				})
			}
			// The overlapping request may be answered from what it read...
			e.mustAccept(t, key)
			// ...but the next one must see the revocation.
			e.mustRefuse(t, key)
		})
	}
}

func TestLRUBound(t *testing.T) {
	e := newKeyEnv(t, 2)
	k1, _ := e.addKey(t, "hxc_a", "models:infer")
	k2, _ := e.addKey(t, "hxc_a", "models:infer")
	k3, _ := e.addKey(t, "hxc_b", "models:infer")
	hit := func(key string) bool {
		before := e.store.calls()
		e.mustAccept(t, key)
		return e.store.calls() == before
	}
	for _, k := range []string{k1, k2} {
		if hit(k) {
			t.Fatal("first check was a hit")
		}
	}
	if !hit(k1) { // k1 is now the most recent
		t.Fatal("k1 not cached")
	}
	if hit(k3) { // evicts k2, the least recent
		t.Fatal("k3 was cached")
	}
	if !hit(k1) || !hit(k3) {
		t.Error("k1 and k3 should be cached")
	}
	if hit(k2) {
		t.Error("k2 should have been evicted")
	}
	if hit(k1) { // k2 evicted k1 (k3 was more recent)
		t.Error("k1 should have been evicted by k2")
	}

	// Many distinct keys never grow the cache past its bound: with room
	// for 2, the first of 50 is gone.
	var keys []string
	for range 50 {
		k, _ := e.addKey(t, "hxc_b", "models:infer")
		keys = append(keys, k)
		e.mustAccept(t, k)
	}
	if hit(keys[0]) || hit(keys[47]) {
		t.Error("the cache holds more than MaxEntries")
	}
}

func TestFlushUses(t *testing.T) {
	e := newKeyEnv(t, 0)
	ctx := context.Background()
	k1, p1 := e.addKey(t, "hxc_a", "models:infer")
	k2, p2 := e.addKey(t, "hxc_b", "models:infer")
	for range 3 {
		e.mustAccept(t, k1)
	}
	e.mustAccept(t, k2)
	e.mustRefuse(t, otherSecret(t, k1))
	if err := e.keys.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	if e.store.uses[p1] != 3 || e.store.uses[p2] != 1 || !e.store.usedAt[p1].Equal(e.clock.Now()) {
		t.Fatalf("uses %v at %v", e.store.uses, e.store.usedAt)
	}
	// Nothing new: nothing recorded.
	if err := e.keys.FlushUses(ctx); err != nil || e.store.uses[p1] != 3 {
		t.Fatalf("second flush: %v %v", err, e.store.uses)
	}

	// A failed write keeps the count for the next flush.
	e.store.update(func(f *fakeKeyStore) { f.recordFail[p1] = true })
	e.mustAccept(t, k1)
	e.mustAccept(t, k1)
	e.mustAccept(t, k2)
	err := e.keys.FlushUses(ctx)
	if err == nil || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("flush with a failing store: %v", err)
	}
	if e.store.uses[p1] != 3 || e.store.uses[p2] != 2 {
		t.Fatalf("uses %v", e.store.uses)
	}
	e.mustAccept(t, k1)
	e.store.update(func(f *fakeKeyStore) { f.recordFail[p1] = false })
	e.clock.Add(time.Second)
	if err := e.keys.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	if e.store.uses[p1] != 6 || !e.store.usedAt[p1].Equal(e.clock.Now()) {
		t.Fatalf("after retry: uses %v", e.store.uses)
	}

	// A key deleted meanwhile is dropped, not retried forever.
	e.mustAccept(t, k2)
	e.store.update(func(f *fakeKeyStore) { delete(f.keys, p2) })
	if err := e.keys.FlushUses(ctx); err != nil {
		t.Fatalf("flush of a deleted key: %v", err)
	}
	e.store.update(func(f *fakeKeyStore) { f.keys[p2] = store.APIKey{Prefix: p2} })
	if err := e.keys.FlushUses(ctx); err != nil || e.store.uses[p2] != 2 {
		t.Fatalf("a deleted key's uses came back: %v %v", err, e.store.uses)
	}
}

func TestRunFlusherFlushesOnStop(t *testing.T) {
	e := newKeyEnv(t, 0)
	k, p := e.addKey(t, "hxc_a", "models:infer")
	e.mustAccept(t, k)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.keys.RunFlusher(ctx, time.Hour) }()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunFlusher did not stop")
	}
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	if e.store.uses[p] != 1 {
		t.Errorf("uses %v, want the final flush", e.store.uses)
	}
}

// TestConcurrent is for -race: checks, notifications and flushes at once.
func TestConcurrent(t *testing.T) {
	e := newKeyEnv(t, 8)
	var keys []string
	for i := range 16 {
		k, _ := e.addKey(t, []string{"hxc_a", "hxc_b"}[i%2], "models:infer")
		keys = append(keys, k)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				switch {
				case w == 0 && i%10 == 0:
					e.keys.Changed(store.Change{Kind: store.ChangeClient, ID: "hxc_a"})
				case w == 1 && i%10 == 0:
					if err := e.keys.FlushUses(context.Background()); err != nil {
						errs <- err
						return
					}
				}
				if p, err := e.keys.CheckAPIKey(context.Background(), keys[(w*7+i)%len(keys)]); err != nil || p == nil {
					errs <- fmt.Errorf("check: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := e.keys.FlushUses(context.Background()); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, n := range e.store.uses {
		total += n
	}
	if total != 8*200 {
		t.Errorf("recorded %d uses, want %d", total, 8*200)
	}
}
