package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/helixflow/helixflow/extauthz/store"
)

// memStore is an in-memory Store for unit tests of the key life cycle;
// the Postgres store is tested in extauthz/store.
type memStore struct {
	mu   sync.Mutex
	keys map[string]store.SigningKey
	down bool
}

func newMemStore() *memStore { return &memStore{keys: map[string]store.SigningKey{}} }

func (s *memStore) err() error {
	if s.down {
		return store.ErrUnavailable
	}
	return nil
}

func (s *memStore) InsertSigningKey(_ context.Context, k *store.SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.err(); err != nil {
		return err
	}
	s.keys[k.KID] = *k
	return nil
}

func (s *memStore) ListSigningKeys(context.Context) ([]store.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.err(); err != nil {
		return nil, err
	}
	var out []store.SigningKey
	for _, k := range s.keys {
		out = append(out, k)
	}
	return out, nil
}

func (s *memStore) update(kid string, fn func(*store.SigningKey)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.err(); err != nil {
		return err
	}
	k, ok := s.keys[kid]
	if !ok {
		return store.ErrNotFound
	}
	fn(&k)
	s.keys[kid] = k
	return nil
}

func (s *memStore) RetireSigningKey(_ context.Context, kid string, at time.Time) error {
	return s.update(kid, func(k *store.SigningKey) { k.RetiredAt = &at })
}

func (s *memStore) ExpireSigningKey(_ context.Context, kid string, at time.Time) error {
	return s.update(kid, func(k *store.SigningKey) { k.ExpiresAt = &at })
}

func (s *memStore) DeleteExpiredSigningKeys(_ context.Context, before time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for kid, k := range s.keys {
		if k.ExpiresAt != nil && k.ExpiresAt.Before(before) {
			delete(s.keys, kid)
			n++
		}
	}
	return n, nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func testKEK() []byte                    { return bytes.Repeat([]byte{7}, KEKSize) }
func jwksKIDs(t *testing.T, m *Manager) []string {
	t.Helper()
	raw, err := m.JWKS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("JWKS holds a private key: %s", k.KeyID)
		}
		kids = append(kids, k.KeyID)
	}
	slices.Sort(kids)
	return kids
}

func newTestManager(t *testing.T, s Store, c *clock, alg string) *Manager {
	t.Helper()
	m, err := New(Config{
		Store: s, KEK: testKEK(), Alg: alg, RotationPeriod: 24 * time.Hour, PublishAhead: 5 * time.Minute,
		TokenLifetime: 10 * time.Minute, Leeway: time.Minute, Now: c.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	s := newMemStore()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := newTestManager(t, s, c, "")

	// First start: a key that signs at once.
	if err := m.tick(ctx); err != nil {
		t.Fatal(err)
	}
	first, alg, signer, err := m.SigningKey(ctx)
	if err != nil || alg != ES256 {
		t.Fatalf("first key: %v %v", alg, err)
	}
	if _, ok := signer.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("ES256 key is %T", signer)
	}
	if row := s.keys[first]; bytes.Contains(row.PrivateSealed, mustDER(t, signer)) {
		t.Fatal("private key stored in clear")
	}

	// Before the rotation is due nothing changes.
	c.advance(23 * time.Hour)
	if err := m.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s.keys) != 1 {
		t.Fatalf("%d keys before rotation is due", len(s.keys))
	}

	// Due: the successor is published but does not sign yet.
	c.advance(56 * time.Minute)
	if err := m.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s.keys) != 2 {
		t.Fatalf("%d keys after rotation", len(s.keys))
	}
	var second string
	for kid := range s.keys {
		if kid != first {
			second = kid
		}
	}
	if got := jwksKIDs(t, m); !slices.Contains(got, second) || !slices.Contains(got, first) {
		t.Fatalf("JWKS %v must hold both keys", got)
	}
	if kid, _, _, _ := m.SigningKey(ctx); kid != first {
		t.Fatal("the new key signs before it was published for PublishAhead")
	}

	// After PublishAhead the new key signs; the old one stays published
	// until its last token expired.
	c.advance(5 * time.Minute)
	if kid, _, _, _ := m.SigningKey(ctx); kid != second {
		t.Fatalf("signing with %s, want the new key", kid)
	}
	if _, _, err := m.VerificationKey(ctx, first); err != nil {
		t.Fatalf("old key gone too early: %v", err)
	}
	c.advance(12 * time.Minute)
	if err := m.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := jwksKIDs(t, m); !slices.Equal(got, []string{second}) {
		t.Fatalf("JWKS %v after the old key's tokens expired", got)
	}
	if _, _, err := m.VerificationKey(ctx, first); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("expired key still verifies: %v", err)
	}
	if _, ok := s.keys[first]; ok {
		t.Fatal("expired key not deleted")
	}
}

func TestRS256AndWrongKEK(t *testing.T) {
	ctx := context.Background()
	s := newMemStore()
	c := &clock{t: time.Now()}
	m := newTestManager(t, s, c, RS256)
	if _, err := m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	kid, alg, signer, err := m.SigningKey(ctx)
	if err != nil || alg != RS256 {
		t.Fatal(alg, err)
	}
	if _, ok := signer.(*rsa.PrivateKey); !ok {
		t.Fatalf("RS256 key is %T", signer)
	}

	other, err := New(Config{Store: s, KEK: bytes.Repeat([]byte{8}, KEKSize), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := other.SigningKey(ctx); !errors.Is(err, ErrNoSigningKey) {
		t.Fatalf("a wrong KEK opened the key: %v", err)
	}
	if _, _, err := other.VerificationKey(ctx, kid); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v", err)
	}
}

func TestStoreDownKeepsServingFromMemory(t *testing.T) {
	ctx := context.Background()
	s := newMemStore()
	c := &clock{t: time.Now()}
	m := newTestManager(t, s, c, "")
	kid, err := m.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.down = true
	if err := m.Refresh(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("refresh with the store down: %v", err)
	}
	if _, _, err := m.VerificationKey(ctx, kid); err != nil {
		t.Fatalf("cached key lost while the store is down: %v", err)
	}
	if _, _, _, err := m.SigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.VerificationKey(ctx, "garbage"); !errors.Is(err, ErrUnknownKey) {
		t.Fatal(err)
	}
}

func TestTamperedSealIsRefused(t *testing.T) {
	ctx := context.Background()
	s := newMemStore()
	c := &clock{t: time.Now()}
	m := newTestManager(t, s, c, "")
	kid, err := m.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	row := s.keys[kid]
	row.PrivateSealed[len(row.PrivateSealed)-1] ^= 1
	s.keys[kid] = row
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := m.SigningKey(ctx); !errors.Is(err, ErrNoSigningKey) {
		t.Fatalf("tampered key used: %v", err)
	}
	// Moving a sealed key onto another kid fails too (kid is bound as AAD).
	if _, err := open(testKEK(), "other", row.PrivateSealed); !errors.Is(err, ErrSealed) {
		t.Fatal(err)
	}
}

func TestParseKEK(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, KEKSize)
	for name, in := range map[string]string{
		"raw":    string(raw),
		"hex":    "abababababababababababababababababababababababababababababababab\n",
		"base64": "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
	} {
		got, err := ParseKEK([]byte(in))
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("%s: %x, %v", name, got, err)
		}
	}
	if _, err := ParseKEK([]byte("short")); err == nil || bytes.Contains([]byte(err.Error()), []byte("short")) {
		t.Fatalf("bad KEK: %v (must not echo the key)", err)
	}
}

func mustDER(t *testing.T, s any) []byte {
	t.Helper()
	k := s.(*ecdsa.PrivateKey)
	b, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refreshingStore reloads the manager's keys as soon as a key is inserted,
// as a change notification can, to catch a rotation that retires its own
// new key.
type refreshingStore struct {
	*memStore
	m *Manager
}

func (s *refreshingStore) InsertSigningKey(ctx context.Context, k *store.SigningKey) error {
	if err := s.memStore.InsertSigningKey(ctx, k); err != nil {
		return err
	}
	return s.m.Refresh(ctx)
}

func TestRotateWithConcurrentReloadKeepsTheNewKey(t *testing.T) {
	ctx := context.Background()
	s := &refreshingStore{memStore: newMemStore()}
	c := &clock{t: time.Now()}
	m := newTestManager(t, s, c, "")
	s.m = m
	kid, err := m.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _, err := m.SigningKey(ctx); err != nil || got != kid {
		t.Fatalf("signing key %q, %v; want the new key %q", got, err, kid)
	}
	if s.keys[kid].RetiredAt != nil {
		t.Fatal("rotation retired the key it created")
	}
}

// TestRotationPeriodMetricSource: RotationPeriod reports what the alert on
// key age compares with, the default included.
func TestRotationPeriodMetricSource(t *testing.T) {
	for _, c := range []struct {
		set, want time.Duration
	}{{0, 24 * time.Hour}, {2 * time.Hour, 2 * time.Hour}} {
		m, err := New(Config{Store: newMemStore(), KEK: testKEK(), RotationPeriod: c.set})
		if err != nil {
			t.Fatal(err)
		}
		if got := m.RotationPeriod(); got != c.want {
			t.Errorf("RotationPeriod with %v = %v, want %v", c.set, got, c.want)
		}
	}
}
