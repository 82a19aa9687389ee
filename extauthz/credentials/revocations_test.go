package credentials_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/credentials"
	"github.com/helixflow/helixflow/extauthz/store"
)

// fakeRevocationStore is an in-memory credentials.RevocationStore.
type fakeRevocationStore struct {
	mu      sync.Mutex
	revoked map[string]bool
	err     error
	// onList runs inside RevokedSince, after the list was read.
	onList func()

	listCalls, lookupCalls int
}

func (f *fakeRevocationStore) RevokedSince(_ context.Context, since time.Time) ([]string, error) {
	f.mu.Lock()
	f.listCalls++
	err := f.err
	var out []string
	for j := range f.revoked {
		out = append(out, j)
	}
	hook := f.onList
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err != nil {
		return nil, err
	}
	if !since.IsZero() {
		return nil, errors.New("fake: Load must ask for every revocation")
	}
	return out, nil
}

func (f *fakeRevocationStore) IsRevoked(_ context.Context, jti string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookupCalls++
	if f.err != nil {
		return false, f.err
	}
	return f.revoked[jti], nil
}

func (f *fakeRevocationStore) set(fn func(f *fakeRevocationStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeRevocationStore) lookups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookupCalls
}

var errDown = fmt.Errorf("fake: %w", store.ErrUnavailable)

func newRevocations(t *testing.T, revoked ...string) (*fakeRevocationStore, *credentials.Revocations) {
	t.Helper()
	f := &fakeRevocationStore{revoked: map[string]bool{}}
	for _, j := range revoked {
		f.revoked[j] = true
	}
	return f, credentials.NewRevocations(f, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

// wantAnswers asserts a yes/no lookup's answer (named name) for each id.
func wantAnswers(t *testing.T, name string, lookup func(context.Context, string) (bool, error), answers map[string]bool) {
	t.Helper()
	for id, w := range answers {
		got, err := lookup(context.Background(), id)
		if err != nil || got != w {
			t.Errorf("%s(%q) = (%v, %v), want %v", name, id, got, err, w)
		}
	}
}

// want asserts IsRevoked's answer for each jti.
func want(t *testing.T, r *credentials.Revocations, revoked map[string]bool) {
	t.Helper()
	wantAnswers(t, "IsRevoked", r.IsRevoked, revoked)
}

func TestRevocationsBeforeLoad(t *testing.T) {
	f, r := newRevocations(t, "gone")
	want(t, r, map[string]bool{"gone": true, "live": false})
	if f.lookups() != 2 {
		t.Errorf("%d store lookups, want 2", f.lookups())
	}
	f.set(func(f *fakeRevocationStore) { f.err = errDown })
	if _, err := r.IsRevoked(context.Background(), "live"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("store down before Load: %v, want the store's error", err)
	}
	// A failed Load leaves the lookups on.
	if err := r.Load(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Load: %v", err)
	}
	if _, err := r.IsRevoked(context.Background(), "live"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("store down after a failed Load: %v", err)
	}
	// A notification is remembered even before Load.
	r.Changed(context.Background(), store.Change{Kind: store.ChangeRevoked, ID: "notified"})
	if got, err := r.IsRevoked(context.Background(), "notified"); !got || err != nil {
		t.Errorf("notified jti: (%v, %v)", got, err)
	}
}

func TestRevocationsAfterLoad(t *testing.T) {
	f, r := newRevocations(t, "a", "b")
	if err := r.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	want(t, r, map[string]bool{"a": true, "b": true, "c": false})
	if f.lookups() != 0 {
		t.Errorf("%d store lookups after Load, want 0", f.lookups())
	}

	// The store goes down: answers still come from memory.
	f.set(func(f *fakeRevocationStore) { f.err = errDown })
	want(t, r, map[string]bool{"a": true, "c": false})

	// Notifications add.
	r.Changed(context.Background(), store.Change{Kind: store.ChangeRevoked, ID: "c"})
	want(t, r, map[string]bool{"a": true, "c": true, "d": false})
	// Other kinds change nothing.
	for _, k := range []store.ChangeKind{store.ChangeAPIKey, store.ChangeClient, store.ChangeKeys} {
		r.Changed(context.Background(), store.Change{Kind: k, ID: "d"})
	}
	want(t, r, map[string]bool{"d": false})
	if f.lookups() != 0 {
		t.Errorf("%d store lookups, want 0", f.lookups())
	}
}

func TestRevocationsResync(t *testing.T) {
	f, r := newRevocations(t, "a")
	ctx := context.Background()
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	// Missed while disconnected: "b" revoked; "a" pruned (expired).
	f.set(func(f *fakeRevocationStore) { f.revoked = map[string]bool{"b": true} })
	want(t, r, map[string]bool{"a": true, "b": false})
	r.Changed(ctx, store.Change{Kind: store.ChangeResync})
	want(t, r, map[string]bool{"a": false, "b": true})
	if f.listCalls != 2 || f.lookups() != 0 {
		t.Errorf("list calls %d, lookups %d", f.listCalls, f.lookups())
	}

	// A resync whose reload fails: the copy may be stale, so answers come
	// from the store, and its outage denies.
	f.set(func(f *fakeRevocationStore) { f.err = errDown })
	r.Changed(ctx, store.Change{Kind: store.ChangeResync})
	if got, err := r.IsRevoked(ctx, "x"); err == nil {
		t.Errorf("IsRevoked after a failed reload with the store down: (%v, nil), want an error", got)
	}
	// What memory knows is revoked stays revoked without the store.
	if got, err := r.IsRevoked(ctx, "b"); !got || err != nil {
		t.Errorf("IsRevoked(b) = (%v, %v)", got, err)
	}
	// The store is back: lookups answer until the next reload succeeds.
	f.set(func(f *fakeRevocationStore) { f.err = nil; f.revoked["c"] = true })
	want(t, r, map[string]bool{"c": true, "x": false})
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	before := f.lookups()
	want(t, r, map[string]bool{"b": true, "c": true, "x": false})
	if f.lookups() != before {
		t.Error("lookups after a successful reload")
	}
}

// revokeNow commits a revocation to the store and notifies r, as Postgres
// does: the notification follows the commit.
func revokeNow(f *fakeRevocationStore, r *credentials.Revocations, jti string) {
	f.set(func(f *fakeRevocationStore) { f.revoked[jti] = true })
	r.Changed(context.Background(), store.Change{Kind: store.ChangeRevoked, ID: jti})
}

// TestRevocationDuringLoad: a revocation notified while a Load is reading
// (the periodic reload runs beside the notification loop) must survive the
// Load, whose read may predate it.
func TestRevocationDuringLoad(t *testing.T) {
	f, r := newRevocations(t, "old")
	ctx := context.Background()
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeRevocationStore) {
		f.onList = func() { revokeNow(f, r, "new") }
	})
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	want(t, r, map[string]bool{"old": true, "new": true})

	// Also when the notification comes during a resync's reload.
	f.set(func(f *fakeRevocationStore) {
		f.onList = func() { revokeNow(f, r, "newer") }
	})
	r.Changed(ctx, store.Change{Kind: store.ChangeResync})
	want(t, r, map[string]bool{"old": true, "new": true, "newer": true})

	// What was caught during a load is not carried into later ones: a
	// reload after the store dropped everything (expired) holds nothing.
	f.set(func(f *fakeRevocationStore) { f.onList = nil; f.revoked = map[string]bool{} })
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	want(t, r, map[string]bool{"old": false, "new": false, "newer": false})
}

// TestRevocationsConcurrent is for -race.
func TestRevocationsConcurrent(t *testing.T) {
	f, r := newRevocations(t, "a")
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 200 {
				switch w {
				case 0:
					if err := r.Load(ctx); err != nil {
						t.Error(err)
						return
					}
				case 1:
					revokeNow(f, r, fmt.Sprintf("j%d", i))
				case 2:
					if i%20 == 0 {
						r.Changed(ctx, store.Change{Kind: store.ChangeResync})
					}
				default:
					if got, err := r.IsRevoked(ctx, "a"); !got || err != nil {
						t.Errorf("IsRevoked(a) = (%v, %v)", got, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	// Every notified revocation survived the concurrent reloads.
	for i := range 200 {
		if got, err := r.IsRevoked(ctx, fmt.Sprintf("j%d", i)); !got || err != nil {
			t.Fatalf("j%d lost: (%v, %v)", i, got, err)
		}
	}
}
