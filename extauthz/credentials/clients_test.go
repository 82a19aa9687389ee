package credentials_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/credentials"
	"github.com/helixflow/helixflow/extauthz/store"
)

// fakeClientStore is an in-memory credentials.ClientStore: id -> enabled.
type fakeClientStore struct {
	mu      sync.Mutex
	clients map[string]bool
	err     error
	// onList runs inside ListClients, after the list was read.
	onList func()

	lookupCalls int
}

func (f *fakeClientStore) ListClients(context.Context) ([]store.Client, error) {
	f.mu.Lock()
	err := f.err
	var out []store.Client
	for id, on := range f.clients {
		out = append(out, store.Client{ID: id, Enabled: on})
	}
	hook := f.onList
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (f *fakeClientStore) GetClient(_ context.Context, id string) (*store.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookupCalls++
	if f.err != nil {
		return nil, f.err
	}
	on, ok := f.clients[id]
	if !ok {
		return nil, fmt.Errorf("fake: client %q: %w", id, store.ErrNotFound)
	}
	return &store.Client{ID: id, Enabled: on}, nil
}

func (f *fakeClientStore) set(fn func(f *fakeClientStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeClientStore) lookups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookupCalls
}

func newClients(t *testing.T, clients map[string]bool) (*fakeClientStore, *credentials.Clients) {
	t.Helper()
	f := &fakeClientStore{clients: clients}
	return f, credentials.NewClients(f, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

// wantEnabled asserts ClientTokens' Enabled for each client.
func wantEnabled(t *testing.T, c *credentials.Clients, enabled map[string]bool) {
	t.Helper()
	wantAnswers(t, "ClientTokens", func(ctx context.Context, id string) (bool, error) {
		ct, err := c.ClientTokens(ctx, id)
		return ct.Enabled, err
	}, enabled)
}

func TestClientsBeforeLoadAskTheStore(t *testing.T) {
	f, c := newClients(t, map[string]bool{"on": true, "off": false})
	wantEnabled(t, c, map[string]bool{"on": true, "off": false, "deleted": false})
	if f.lookups() != 3 {
		t.Errorf("%d store lookups, want 3", f.lookups())
	}
	f.set(func(f *fakeClientStore) { f.err = errDown })
	if _, err := c.ClientTokens(context.Background(), "on"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("store down before Load: %v, want the store's error (deny)", err)
	}
}

func TestClientsFollowChanges(t *testing.T) {
	f, c := newClients(t, map[string]bool{"a": true, "b": true, "off": false})
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantEnabled(t, c, map[string]bool{"a": true, "b": true, "off": false, "unknown": false})
	if f.lookups() != 0 {
		t.Errorf("%d store lookups after Load, want 0", f.lookups())
	}

	// a disabled, b deleted, off enabled: each notification is read back.
	f.set(func(f *fakeClientStore) { f.clients["a"] = false; delete(f.clients, "b"); f.clients["off"] = true })
	for _, id := range []string{"a", "b", "off"} {
		c.Changed(context.Background(), store.Change{Kind: store.ChangeClient, ID: id})
	}
	wantEnabled(t, c, map[string]bool{"a": false, "b": false, "off": true})

	// The store goes down: answers still come from memory, but a change
	// that cannot be read back makes that client ask the store (deny).
	f.set(func(f *fakeClientStore) { f.err = errDown })
	wantEnabled(t, c, map[string]bool{"off": true})
	c.Changed(context.Background(), store.Change{Kind: store.ChangeClient, ID: "off"})
	if _, err := c.ClientTokens(context.Background(), "off"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("unread change with the store down: %v, want the store's error", err)
	}
	// Back up: the first answer reads it back, later ones come from memory.
	f.set(func(f *fakeClientStore) { f.err = nil; f.clients["off"] = false })
	wantEnabled(t, c, map[string]bool{"off": false})
	before := f.lookups()
	wantEnabled(t, c, map[string]bool{"off": false})
	if f.lookups() != before {
		t.Errorf("still asking the store after a read-back")
	}

	// Other kinds change nothing.
	for _, k := range []store.ChangeKind{store.ChangeAPIKey, store.ChangeRevoked, store.ChangeKeys} {
		c.Changed(context.Background(), store.Change{Kind: k, ID: "a"})
	}
	wantEnabled(t, c, map[string]bool{"a": false})
}

// A client disabled while a Load reads stays disabled, though the Load's
// (older) read has it enabled.
func TestClientsLoadKeepsConcurrentChanges(t *testing.T) {
	f, c := newClients(t, map[string]bool{"a": true})
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeClientStore) {
		f.onList = func() {
			f.set(func(f *fakeClientStore) { f.clients["a"] = false; f.onList = nil })
			c.Changed(context.Background(), store.Change{Kind: store.ChangeClient, ID: "a"})
		}
	})
	c.Changed(context.Background(), store.Change{Kind: store.ChangeResync})
	wantEnabled(t, c, map[string]bool{"a": false})

	// A resync whose reload fails asks the store until one succeeds.
	f.set(func(f *fakeClientStore) { f.err = errDown })
	c.Changed(context.Background(), store.Change{Kind: store.ChangeResync})
	if _, err := c.ClientTokens(context.Background(), "a"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("after a failed resync: %v, want the store's error", err)
	}
}

// TestClientDirectory: Client answers full records from memory once
// loaded, unknown and malformed ids without a database query; ClientTokens
// carries the cutoff.
func TestClientDirectory(t *testing.T) {
	ctx := context.Background()
	e := newKeyEnv(t)
	cut := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	e.store.update(func(f *fakeKeyStore) {
		c := f.clients["hxc_b"]
		c.Enabled, c.TokensValidAfter = false, cut
		f.clients["hxc_b"] = c
	})
	// Before the load: the database answers, and each lookup counts.
	if c, err := e.clients.GetClient(ctx, "hxc_a"); err != nil || c.Plan != "gold" {
		t.Fatalf("Client before Load: %+v, %v", c, err)
	}
	if _, err := e.clients.GetClient(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown client before Load: %v", err)
	}
	if n := testutil.ToFloat64(e.lookups); n != 2 {
		t.Errorf("%v lookups before Load, want 2", n)
	}

	e.load(t)
	calls, lookups := e.store.calls(), testutil.ToFloat64(e.lookups)
	for _, tt := range []struct {
		id         string
		want       *store.Client
		wantTokens check.ClientTokens
	}{
		{"hxc_a", &store.Client{ID: "hxc_a", Plan: "gold", Enabled: true}, check.ClientTokens{Enabled: true}},
		{"hxc_b", &store.Client{ID: "hxc_b", Plan: "default", TokensValidAfter: cut}, check.ClientTokens{ValidAfter: cut}},
		{"hxc_unknown", nil, check.ClientTokens{}},
		{"", nil, check.ClientTokens{}},
		{"'; DROP TABLE clients; --", nil, check.ClientTokens{}},
		{strings.Repeat("x", 10000), nil, check.ClientTokens{}},
	} {
		c, err := e.clients.GetClient(ctx, tt.id)
		switch {
		case tt.want == nil && !errors.Is(err, store.ErrNotFound):
			t.Errorf("Client(%.20q): %+v, %v; want ErrNotFound", tt.id, c, err)
		case tt.want != nil && (err != nil || c.ID != tt.want.ID || c.Plan != tt.want.Plan ||
			c.Enabled != tt.want.Enabled || !c.TokensValidAfter.Equal(tt.want.TokensValidAfter)):
			t.Errorf("Client(%q): %+v, %v; want %+v", tt.id, c, err, tt.want)
		}
		if ct, err := e.clients.ClientTokens(ctx, tt.id); err != nil || ct != tt.wantTokens {
			t.Errorf("ClientTokens(%.20q): %+v, %v; want %+v", tt.id, ct, err, tt.wantTokens)
		}
	}
	if e.store.calls() != calls || testutil.ToFloat64(e.lookups) != lookups {
		t.Errorf("loaded directory made %d store calls, %v lookups; want none",
			e.store.calls()-calls, testutil.ToFloat64(e.lookups)-lookups)
	}

	// A change is read back and answered at once.
	e.updateClient("hxc_b", func(c *store.Client) { c.Enabled = true; c.TokensValidAfter = cut.Add(time.Hour) })
	if ct, err := e.clients.ClientTokens(ctx, "hxc_b"); err != nil || !ct.Enabled || !ct.ValidAfter.Equal(cut.Add(time.Hour)) {
		t.Errorf("after the change: %+v, %v", ct, err)
	}
}
