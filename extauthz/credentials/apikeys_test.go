package credentials_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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
	// onGetKey runs inside GetAPIKeyByPrefix, after the key was read;
	// onListKeys inside ListAPIKeys, after the keys were read.
	onGetKey, onListKeys func()

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
		hook()
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

func (f *fakeKeyStore) ListAPIKeys(_ context.Context, clientID string) ([]store.APIKey, error) {
	f.mu.Lock()
	f.keyCalls++
	var out []store.APIKey
	for _, k := range f.keys {
		if clientID == "" || k.ClientID == clientID {
			k.Scopes = slices.Clone(k.Scopes)
			out = append(out, k)
		}
	}
	err := f.keyErr
	hook := f.onListKeys
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (f *fakeKeyStore) ListClients(context.Context) ([]store.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clientCalls++
	if f.clientErr != nil {
		return nil, f.clientErr
	}
	var out []store.Client
	for _, c := range f.clients {
		c.Scopes, c.Models = slices.Clone(c.Scopes), slices.Clone(c.Models)
		out = append(out, c)
	}
	return out, nil
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
	c.Scopes, c.Models = slices.Clone(c.Scopes), slices.Clone(c.Models)
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
	store   *fakeKeyStore
	hasher  *secret.Hasher
	clock   *clock
	clients *credentials.Clients
	keys    *credentials.APIKeys
	// lookups counts the database lookups checks needed.
	lookups prometheus.Counter
}

// newKeyEnv returns API keys whose directories are not loaded yet, with
// clients hxc_a (two models, resnet and bert scopes) and hxc_b (every
// model, models:infer).
func newKeyEnv(t testing.TB) *keyEnv {
	t.Helper()
	e := &keyEnv{
		store:   newFakeKeyStore(),
		hasher:  secret.NewHasher([]byte("pepper")),
		clock:   &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		lookups: prometheus.NewCounter(prometheus.CounterOpts{Name: "lookups"}),
	}
	e.store.clients["hxc_a"] = store.Client{ID: "hxc_a", Plan: "gold", Models: []string{"resnet", "bert"},
		Scopes: []string{"models:infer", "models:resnet:infer", "models:bert:infer", "models:read"}, Enabled: true}
	e.store.clients["hxc_b"] = store.Client{ID: "hxc_b", Plan: "default", Models: []string{"*"},
		Scopes: []string{"models:infer"}, Enabled: true}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.clients = credentials.NewClients(e.store, log, e.lookups)
	e.keys = credentials.NewAPIKeys(credentials.APIKeysConfig{
		Store: e.store, Clients: e.clients, Hasher: e.hasher, Now: e.clock.Now, Logger: log, Lookups: e.lookups,
	})
	return e
}

// load loads both directories.
func (e *keyEnv) load(t *testing.T) {
	t.Helper()
	if err := e.clients.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// notify delivers a notification as the server does: clients first.
func (e *keyEnv) notify(c store.Change) {
	e.clients.Changed(context.Background(), c)
	e.keys.Changed(context.Background(), c)
}

// updateKey changes the stored key with prefix and announces it.
func (e *keyEnv) updateKey(prefix string, fn func(k *store.APIKey)) {
	e.store.update(func(f *fakeKeyStore) {
		k := f.keys[prefix]
		fn(&k)
		f.keys[prefix] = k
	})
	e.notify(store.Change{Kind: store.ChangeAPIKey, ID: prefix})
}

// updateClient changes the stored client id and announces it.
func (e *keyEnv) updateClient(id string, fn func(c *store.Client)) {
	e.store.update(func(f *fakeKeyStore) {
		c := f.clients[id]
		fn(&c)
		f.clients[id] = c
	})
	e.notify(store.Change{Kind: store.ChangeClient, ID: id})
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
	e.notify(store.Change{Kind: store.ChangeAPIKey, ID: prefix})
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
	for _, loaded := range []bool{false, true} {
		e := newKeyEnv(t)
		key, _ := e.addKey(t, "hxc_a", "models:resnet:infer")
		if loaded {
			e.load(t)
		}
		p := e.mustAccept(t, key)
		if p.ClientID != "hxc_a" || p.Plan != "gold" || !slices.Equal(p.Scopes, []string{"models:resnet:infer"}) ||
			!slices.Equal(p.Models, []string{"resnet", "bert"}) {
			t.Errorf("loaded %v: principal %+v", loaded, p)
		}
		if n := testutil.ToFloat64(e.lookups); (n == 0) == !loaded {
			t.Errorf("loaded %v: %v database lookups", loaded, n)
		}
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
	e := newKeyEnv(t)
	key, prefix := e.addKey(t, "hxc_a", "models:infer")
	e.load(t)
	e.mustAccept(t, key)
	calls := e.store.calls()

	t.Run("wrong secret with a valid prefix", func(t *testing.T) {
		e.mustRefuse(t, otherSecret(t, key))
	})
	t.Run("unparsable", func(t *testing.T) {
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
	})
	// A flood of made-up keys, each new, costs no database query: a cache
	// of misses would not stop this, the complete directory does.
	t.Run("unknown prefixes", func(t *testing.T) {
		for range 1000 {
			other, _, err := secret.NewAPIKey()
			if err != nil {
				t.Fatal(err)
			}
			e.mustRefuse(t, other)
		}
	})
	if e.store.calls() != calls || testutil.ToFloat64(e.lookups) != 0 {
		t.Errorf("refused keys made %d store calls, %v lookups; want none", e.store.calls()-calls, testutil.ToFloat64(e.lookups))
	}
}

func TestKeyStates(t *testing.T) {
	past := func(now time.Time) *time.Time { at := now.Add(-time.Second); return &at }
	tests := []struct {
		name  string
		setup func(f *fakeKeyStore, prefix string, now time.Time)
	}{
		{"revoked", func(f *fakeKeyStore, p string, now time.Time) {
			k := f.keys[p]
			k.RevokedAt = past(now)
			f.keys[p] = k
		}},
		{"expired", func(f *fakeKeyStore, p string, now time.Time) {
			k := f.keys[p]
			k.ExpiresAt = past(now)
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
	}
	for _, tt := range tests {
		// The same answer from the database (not loaded yet), from a
		// load, and after the change's notification.
		for _, when := range []string{"not loaded", "loaded after", "notified"} {
			t.Run(tt.name+"/"+when, func(t *testing.T) {
				e := newKeyEnv(t)
				key, prefix := e.addKey(t, "hxc_a", "models:infer")
				if when == "notified" {
					e.load(t)
					e.mustAccept(t, key)
				}
				e.store.update(func(f *fakeKeyStore) { tt.setup(f, prefix, e.clock.Now()) })
				switch when {
				case "loaded after":
					e.load(t)
				case "notified":
					e.notify(store.Change{Kind: store.ChangeAPIKey, ID: prefix})
					e.notify(store.Change{Kind: store.ChangeClient, ID: "hxc_a"})
				}
				e.mustRefuse(t, key)
				if err := e.keys.FlushUses(context.Background()); err != nil {
					t.Fatal(err)
				}
				accepted := int64(0)
				if when == "notified" {
					accepted = 1
				}
				if n := e.store.uses[prefix]; n > accepted {
					t.Errorf("a refused key counted %d uses", n-accepted)
				}
			})
		}
	}
	t.Run("key invalid in the store", func(t *testing.T) {
		e := newKeyEnv(t)
		key, _ := e.addKey(t, "hxc_a", "models:infer")
		e.store.update(func(f *fakeKeyStore) { f.keyErr = fmt.Errorf("fake: %w", store.ErrInvalid) })
		e.mustRefuse(t, key)
	})

	// A key expiring later is accepted until then, from memory.
	e := newKeyEnv(t)
	key, prefix := e.addKey(t, "hxc_a", "models:infer")
	e.load(t)
	expires := e.clock.Now().Add(30 * time.Second)
	e.updateKey(prefix, func(k *store.APIKey) { at := expires; k.ExpiresAt = &at })
	if p := e.mustAccept(t, key); !p.Expires.Equal(expires) {
		// What a stream opened with it is told (wire.HeaderExpires).
		t.Errorf("principal expires %v, want the key's %v", p.Expires, expires)
	}
	e.clock.Add(30 * time.Second)
	calls := e.store.calls()
	e.mustRefuse(t, key)
	if e.store.calls() != calls {
		t.Error("the expiry check needed the store")
	}
}

// TestKeyScopesFollowClient: a key answers with its own scopes cut to its
// client's current ones, and with its client's current models, from the
// moment the client's change is announced.
func TestKeyScopesFollowClient(t *testing.T) {
	keyScopes := []string{"models:infer", "models:resnet:infer", "models:read"}
	tests := []struct {
		name                   string
		clientScopes, models   []string
		wantScopes, wantModels []string
	}{
		{"unchanged", []string{"models:infer", "models:resnet:infer", "models:bert:infer", "models:read"}, []string{"resnet", "bert"},
			keyScopes, []string{"resnet", "bert"}},
		{"narrowed to one model's scope", []string{"models:resnet:infer"}, []string{"resnet"},
			[]string{"models:resnet:infer"}, []string{"resnet"}},
		{"read dropped", []string{"models:infer", "models:resnet:infer"}, []string{"resnet", "bert"},
			[]string{"models:infer", "models:resnet:infer"}, []string{"resnet", "bert"}},
		{"widened: the key keeps its own", []string{"models:infer", "models:resnet:infer", "models:read", "models:bert:infer", "admin"}, []string{"*"},
			keyScopes, []string{"*"}},
		{"emptied", nil, nil, []string{}, nil},
		{"per-model scope under models:infer", []string{"models:infer"}, []string{"resnet"},
			[]string{"models:infer", "models:resnet:infer"}, []string{"resnet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newKeyEnv(t)
			key, _ := e.addKey(t, "hxc_a", keyScopes...)
			e.load(t)
			e.mustAccept(t, key)
			e.updateClient("hxc_a", func(c *store.Client) { c.Scopes, c.Models = tt.clientScopes, tt.models })
			p := e.mustAccept(t, key)
			if !slices.Equal(p.Scopes, tt.wantScopes) || !slices.Equal(p.Models, tt.wantModels) {
				t.Errorf("principal scopes %q models %q, want %q %q", p.Scopes, p.Models, tt.wantScopes, tt.wantModels)
			}
		})
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
			e := newKeyEnv(t)
			key, _ := e.addKey(t, "hxc_a", "models:infer")
			e.store.update(tt.set)
			for range 2 {
				p, err := e.check(t, key)
				if err == nil || p != nil || errors.Is(err, check.ErrInvalidKey) {
					t.Fatalf("CheckAPIKey: (%v, %v), want an error that is not ErrInvalidKey", p, err)
				}
			}
			if err := e.keys.Load(context.Background()); err == nil && tt.name != "client lookup" {
				t.Error("Load with the store down succeeded")
			}
			// Back up: the key works at once.
			e.store.update(func(f *fakeKeyStore) { f.keyErr, f.clientErr = nil, nil })
			e.mustAccept(t, key)
		})
	}

	// Loaded, keys keep working while the store is down, and unknown keys
	// are still refused (401, not 503).
	e := newKeyEnv(t)
	key, prefix := e.addKey(t, "hxc_a", "models:infer")
	e.load(t)
	e.store.update(func(f *fakeKeyStore) { f.keyErr, f.clientErr = down, down })
	e.mustAccept(t, key)
	e.mustRefuse(t, otherSecret(t, key))
	other, _, _ := secret.NewAPIKey()
	e.mustRefuse(t, other)
	// A change that cannot be read back: that key asks the database (and
	// the outage denies with 503) until a read succeeds.
	e.notify(store.Change{Kind: store.ChangeAPIKey, ID: prefix})
	if p, err := e.check(t, key); p != nil || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("unread change with the store down: (%v, %v)", p, err)
	}
	e.notify(store.Change{Kind: store.ChangeClient, ID: "hxc_a"})
	e.store.update(func(f *fakeKeyStore) { f.keyErr = nil })
	if p, err := e.check(t, key); p != nil || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("unread client change with the store down: (%v, %v)", p, err)
	}
	e.store.update(func(f *fakeKeyStore) { f.clientErr = nil })
	e.mustAccept(t, key)
	calls := e.store.calls()
	e.mustAccept(t, key)
	if e.store.calls() != calls {
		t.Error("still asking the store after the read-backs")
	}
}

// TestKeyChanges: notifications add, revoke and delete keys; a resync
// reloads; other kinds change nothing.
func TestKeyChanges(t *testing.T) {
	e := newKeyEnv(t)
	k1, p1 := e.addKey(t, "hxc_a", "models:infer")
	e.load(t)
	calls := e.store.calls()
	k2, p2 := e.addKey(t, "hxc_b", "models:infer") // read back once
	if e.store.calls() != calls+1 {
		t.Errorf("a new key's notification made %d store calls, want 1", e.store.calls()-calls)
	}
	e.mustAccept(t, k1)
	e.mustAccept(t, k2)

	e.updateKey(p1, func(k *store.APIKey) { at := e.clock.Now(); k.RevokedAt = &at })
	e.mustRefuse(t, k1)
	e.store.update(func(f *fakeKeyStore) { delete(f.keys, p2) })
	for _, k := range []store.ChangeKind{store.ChangeRevoked, store.ChangeKeys, store.ChangeClient} {
		e.notify(store.Change{Kind: k, ID: p2})
	}
	e.mustAccept(t, k2) // not announced yet
	e.notify(store.Change{Kind: store.ChangeResync})
	e.mustRefuse(t, k2)
	if testutil.ToFloat64(e.lookups) != 0 {
		t.Errorf("%v lookups", testutil.ToFloat64(e.lookups))
	}
}

// TestChangeDuringLoad: a notification that arrives while the keys are
// loaded must not be undone by the load's older read.
func TestChangeDuringLoad(t *testing.T) {
	e := newKeyEnv(t)
	key, prefix := e.addKey(t, "hxc_a", "models:infer")
	e.load(t)
	var once sync.Once
	e.store.onListKeys = func() {
		once.Do(func() {
			// The keys were read; now one is revoked and the notification
			// arrives before the load finishes.
			e.updateKey(prefix, func(k *store.APIKey) { at := e.clock.Now(); k.RevokedAt = &at })
		})
	}
	e.notify(store.Change{Kind: store.ChangeResync})
	e.mustRefuse(t, key)
}

func TestFlushUses(t *testing.T) {
	e := newKeyEnv(t)
	ctx := context.Background()
	k1, p1 := e.addKey(t, "hxc_a", "models:infer")
	k2, p2 := e.addKey(t, "hxc_b", "models:infer")
	e.load(t)
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
	e := newKeyEnv(t)
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

// TestConcurrent is for -race: checks, notifications, reloads and flushes
// at once.
func TestConcurrent(t *testing.T) {
	e := newKeyEnv(t)
	var keys []string
	for i := range 16 {
		k, _ := e.addKey(t, []string{"hxc_a", "hxc_b"}[i%2], "models:infer")
		keys = append(keys, k)
	}
	e.load(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				switch {
				case w == 0 && i%10 == 0:
					e.notify(store.Change{Kind: store.ChangeClient, ID: "hxc_a"})
				case w == 1 && i%10 == 0:
					if err := e.keys.FlushUses(context.Background()); err != nil {
						errs <- err
						return
					}
				case w == 2 && i%50 == 0:
					e.notify(store.Change{Kind: store.ChangeResync})
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

// BenchmarkCheckAPIKey: a known key, loaded, from many goroutines (the
// Check path of an API key: two directory reads, the hash, the use count).
func BenchmarkCheckAPIKey(b *testing.B) {
	e := newKeyEnv(b)
	key, _, err := secret.NewAPIKey()
	if err != nil {
		b.Fatal(err)
	}
	prefix, _ := secret.ParseAPIKey(key)
	e.store.keys[prefix] = store.APIKey{ID: prefix, Prefix: prefix, Hash: e.hasher.Hash(key), ClientID: "hxc_a", Scopes: []string{"models:infer"}}
	if err := e.clients.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := e.keys.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.keys.CheckAPIKey(context.Background(), key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestKeyByPrefix: Key (helix-authz's Limits re-checking a stream's key)
// answers a live key without its secret, and a revoked or unknown one as
// not found, from the copy.
func TestKeyByPrefix(t *testing.T) {
	e := newKeyEnv(t)
	_, p := e.addKey(t, "hxc_a", "models:infer")
	e.load(t)
	k, err := e.keys.Key(context.Background(), p)
	if err != nil || k.ClientID != "hxc_a" || k.RevokedAt != nil {
		t.Fatalf("Key: %+v %v", k, err)
	}
	e.updateKey(p, func(k *store.APIKey) { at := e.clock.Now(); k.RevokedAt = &at })
	for _, prefix := range []string{p, "nosuch"} {
		if _, err := e.keys.Key(context.Background(), prefix); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Key(%q): %v, want ErrNotFound", prefix, err)
		}
	}
	if testutil.ToFloat64(e.lookups) != 0 {
		t.Errorf("%v lookups", testutil.ToFloat64(e.lookups))
	}
}
