// Package keys owns helix-authz's token-signing keys: it generates them,
// seals their private halves with the key-encryption key (AES-256-GCM; the
// KEK never touches the database), rotates them on a schedule, and serves
// the JWKS and the verification keys. A new key is published PublishAhead
// before it signs anything; a retired key stays published until every token
// it signed has expired, then leaves the JWKS.
package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/token"
)

// Store is the part of the database this package needs.
type Store interface {
	InsertSigningKey(ctx context.Context, k *store.SigningKey) error
	ListSigningKeys(ctx context.Context) ([]store.SigningKey, error)
	RetireSigningKey(ctx context.Context, kid string, at time.Time) error
	ExpireSigningKey(ctx context.Context, kid string, at time.Time) error
	DeleteExpiredSigningKeys(ctx context.Context, before time.Time) (int64, error)
}

// Errors callers act on.
var (
	// ErrUnknownKey: no published key has that kid (token.ErrUnknownKey,
	// so the verifier answers such tokens as invalid, not as an outage).
	ErrUnknownKey = token.ErrUnknownKey
	// ErrNoSigningKey: no key may sign now (the store was never reachable).
	ErrNoSigningKey = errors.New("no signing key available")
)

// Algorithms a key can use.
const (
	ES256 = "ES256"
	RS256 = "RS256"
)

// Config configures a Manager.
type Config struct {
	Store Store
	// KEK seals private keys; see ParseKEK.
	KEK []byte
	// Alg of new keys: ES256 (default) or RS256.
	Alg string
	// RotationPeriod is how long a key signs (default 24h).
	RotationPeriod time.Duration
	// PublishAhead is how long a new key is in the JWKS before it signs
	// (default 5m); JWKS responses are cacheable for less than that.
	PublishAhead time.Duration
	// TokenLifetime is the longest lifetime of a token; with Leeway it is
	// how long a retired key stays published.
	TokenLifetime time.Duration
	Leeway        time.Duration
	// RefreshInterval bounds how stale the key set may get without a
	// change notification (default 1m).
	RefreshInterval time.Duration
	Logger          *slog.Logger
	Now             func() time.Time
}

// Manager implements the signing-key life cycle. It is safe for concurrent
// use; reads are served from memory so that verification goes on while the
// database is down.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.RWMutex
	keys    []*key // newest SignsFrom first
	jwks    []byte
	loaded  time.Time
	missing map[string]time.Time // kids looked up and not found, with when

	refreshMu sync.Mutex
}

// key is one signing key held in memory.
type key struct {
	kid       string
	alg       string
	signer    crypto.Signer
	public    crypto.PublicKey
	signsFrom time.Time
	retiredAt *time.Time
	expiresAt *time.Time
}

// New checks cfg and returns a Manager holding no keys until Refresh or Run.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("keys: no store")
	}
	if len(cfg.KEK) != KEKSize {
		return nil, fmt.Errorf("keys: key-encryption key must be %d bytes", KEKSize)
	}
	switch cfg.Alg {
	case "":
		cfg.Alg = ES256
	case ES256, RS256:
	default:
		return nil, fmt.Errorf("keys: algorithm %q is not supported (ES256 or RS256)", cfg.Alg)
	}
	if cfg.RotationPeriod <= 0 {
		cfg.RotationPeriod = 24 * time.Hour
	}
	if cfg.PublishAhead <= 0 {
		cfg.PublishAhead = 5 * time.Minute
	}
	if cfg.PublishAhead >= cfg.RotationPeriod {
		return nil, fmt.Errorf("keys: publish-ahead %s must be shorter than the rotation period %s", cfg.PublishAhead, cfg.RotationPeriod)
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = time.Hour
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = time.Minute
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Manager{cfg: cfg, log: cfg.Logger, missing: make(map[string]time.Time)}, nil
}

// Refresh reloads the keys from the store. On failure the keys already in
// memory stay in use.
func (m *Manager) Refresh(ctx context.Context) error {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	rows, err := m.cfg.Store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	now := m.cfg.Now()
	var loaded []*key
	for _, r := range rows {
		if r.ExpiresAt != nil && !r.ExpiresAt.After(now) {
			continue
		}
		k, err := m.unseal(r)
		if err != nil {
			// A key we cannot open is left out, loudly; the others serve.
			m.log.Error("signing key unusable", "kid", r.KID, "error", err)
			continue
		}
		loaded = append(loaded, k)
	}
	slices.SortFunc(loaded, func(a, b *key) int { return b.signsFrom.Compare(a.signsFrom) })
	jwks, err := buildJWKS(loaded)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.keys, m.jwks, m.loaded = loaded, jwks, now
	clear(m.missing)
	m.mu.Unlock()
	return nil
}

func (m *Manager) unseal(r store.SigningKey) (*key, error) {
	der, err := open(m.cfg.KEK, r.KID, r.PrivateSealed)
	if err != nil {
		return nil, err
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %q: %w", r.KID, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %q is not a signer", r.KID)
	}
	if err := checkAlg(r.Alg, signer); err != nil {
		return nil, fmt.Errorf("signing key %q: %w", r.KID, err)
	}
	return &key{
		kid: r.KID, alg: r.Alg, signer: signer, public: signer.Public(),
		signsFrom: r.SignsFrom, retiredAt: r.RetiredAt, expiresAt: r.ExpiresAt,
	}, nil
}

func checkAlg(alg string, s crypto.Signer) error {
	switch s.(type) {
	case *ecdsa.PrivateKey:
		if alg == ES256 {
			return nil
		}
	case *rsa.PrivateKey:
		if alg == RS256 {
			return nil
		}
	}
	return fmt.Errorf("key type %T does not match algorithm %s", s, alg)
}

// Rotate creates a new key that is published now and signs from
// now+PublishAhead (from now, when no key can sign yet), and retires the
// keys that sign today at that moment.
func (m *Manager) Rotate(ctx context.Context) (kid string, err error) {
	now := m.cfg.Now()
	if err := m.Refresh(ctx); err != nil {
		return "", err
	}
	signsFrom := now.Add(m.cfg.PublishAhead)
	if _, err := m.current(now); err != nil {
		signsFrom = now
	}
	k, row, err := m.generate(now, signsFrom)
	if err != nil {
		return "", err
	}
	// The keys to retire are chosen before the new key is stored: its
	// change notification may reload the key set at any moment after.
	m.mu.RLock()
	var retire []*key
	for _, old := range m.keys {
		if old.retiredAt == nil && old.kid != k.kid {
			retire = append(retire, old)
		}
	}
	m.mu.RUnlock()
	if err := m.cfg.Store.InsertSigningKey(ctx, row); err != nil {
		return "", fmt.Errorf("store signing key: %w", err)
	}
	for _, old := range retire {
		if err := m.cfg.Store.RetireSigningKey(ctx, old.kid, signsFrom); err != nil {
			return "", fmt.Errorf("retire signing key %q: %w", old.kid, err)
		}
		// Tokens it signs until signsFrom live TokenLifetime more.
		if err := m.cfg.Store.ExpireSigningKey(ctx, old.kid, signsFrom.Add(m.cfg.TokenLifetime+m.cfg.Leeway)); err != nil {
			return "", fmt.Errorf("expire signing key %q: %w", old.kid, err)
		}
	}
	m.log.Info("signing key created", "kid", k.kid, "alg", k.alg, "signs_from", signsFrom)
	return k.kid, m.Refresh(ctx)
}

func (m *Manager) generate(now, signsFrom time.Time) (*key, *store.SigningKey, error) {
	var (
		signer crypto.Signer
		err    error
	)
	switch m.cfg.Alg {
	case RS256:
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generate signing key: %w", err)
	}
	kidBytes := make([]byte, 12)
	if _, err := rand.Read(kidBytes); err != nil {
		return nil, nil, fmt.Errorf("generate key id: %w", err)
	}
	k := &key{kid: fmt.Sprintf("%x", kidBytes), alg: m.cfg.Alg, signer: signer, public: signer.Public(), signsFrom: signsFrom}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, nil, fmt.Errorf("encode signing key: %w", err)
	}
	sealed, err := seal(m.cfg.KEK, k.kid, der)
	if err != nil {
		return nil, nil, err
	}
	jwk, err := publicJWK(k).MarshalJSON()
	if err != nil {
		return nil, nil, fmt.Errorf("encode public key: %w", err)
	}
	return k, &store.SigningKey{
		KID: k.kid, Alg: k.alg, PublicJWK: jwk, PrivateSealed: sealed,
		CreatedAt: now, SignsFrom: signsFrom,
	}, nil
}

// current returns the key that signs at now: the newest whose SignsFrom
// has come and that is not retired.
func (m *Manager) current(now time.Time) (*key, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, k := range m.keys {
		if k.signsFrom.After(now) {
			continue
		}
		if k.retiredAt != nil && !k.retiredAt.After(now) {
			continue
		}
		return k, nil
	}
	return nil, ErrNoSigningKey
}

// SigningKey returns the key to sign with now.
func (m *Manager) SigningKey(context.Context) (kid, alg string, signer crypto.Signer, err error) {
	k, err := m.current(m.cfg.Now())
	if err != nil {
		return "", "", nil, err
	}
	return k.kid, k.alg, k.signer, nil
}

// JWKS returns the published public keys as a JSON Web Key Set.
func (m *Manager) JWKS(context.Context) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.jwks == nil {
		return nil, ErrNoSigningKey
	}
	return m.jwks, nil
}

// VerificationKey returns a published key by kid. An unknown kid triggers
// at most one reload per kid and RefreshInterval (a key created by another
// replica), so garbage kids cannot hammer the database.
func (m *Manager) VerificationKey(ctx context.Context, kid string) (crypto.PublicKey, string, error) {
	if k := m.lookup(kid); k != nil {
		return k.public, k.alg, nil
	}
	now := m.cfg.Now()
	m.mu.Lock()
	last, seen := m.missing[kid]
	recent := now.Sub(m.loaded) < time.Second
	if len(m.missing) > 1024 {
		clear(m.missing)
	}
	m.missing[kid] = now
	m.mu.Unlock()
	if (seen && now.Sub(last) < m.cfg.RefreshInterval) || recent {
		return nil, "", ErrUnknownKey
	}
	if err := m.Refresh(ctx); err != nil {
		m.log.Warn("reload signing keys for an unknown kid", "error", err)
		return nil, "", ErrUnknownKey
	}
	if k := m.lookup(kid); k != nil {
		return k.public, k.alg, nil
	}
	return nil, "", ErrUnknownKey
}

func (m *Manager) lookup(kid string) *key {
	m.mu.RLock()
	defer m.mu.RUnlock()
	now := m.cfg.Now()
	for _, k := range m.keys {
		if k.kid == kid && (k.expiresAt == nil || k.expiresAt.After(now)) {
			return k
		}
	}
	return nil
}

// Run keeps the key set current until ctx ends: it creates the first key,
// rotates when the signing key has signed for RotationPeriod (minus
// PublishAhead, so the successor is published in time), and deletes keys
// whose tokens have all expired. Changes made by other replicas arrive
// through Refresh (called on notifications) or the periodic reload.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(min(m.cfg.RefreshInterval, m.cfg.PublishAhead/2))
	defer t.Stop()
	for {
		if err := m.tick(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("signing key maintenance", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Manager) tick(ctx context.Context) error {
	if err := m.Refresh(ctx); err != nil {
		return err
	}
	if m.needsRotation(m.cfg.Now()) {
		if _, err := m.Rotate(ctx); err != nil {
			return err
		}
	}
	if n, err := m.cfg.Store.DeleteExpiredSigningKeys(ctx, m.cfg.Now()); err != nil {
		return err
	} else if n > 0 {
		m.log.Info("expired signing keys deleted", "count", n)
	}
	return nil
}

// needsRotation: no key can sign, or the signing key is due and no
// successor is already published.
func (m *Manager) needsRotation(now time.Time) bool {
	cur, err := m.current(now)
	if err != nil {
		return true
	}
	if now.Sub(cur.signsFrom) < m.cfg.RotationPeriod-m.cfg.PublishAhead {
		return false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, k := range m.keys {
		if k.signsFrom.After(cur.signsFrom) {
			return false // successor already waiting
		}
	}
	return true
}

// RotationPeriod is how long a key signs before its successor takes over
// (the configured period, or its default).
func (m *Manager) RotationPeriod() time.Duration { return m.cfg.RotationPeriod }

// Age is how long the current key has been signing, for the
// key-past-rotation alert; 0 when none signs.
func (m *Manager) Age() time.Duration {
	now := m.cfg.Now()
	cur, err := m.current(now)
	if err != nil {
		return 0
	}
	return now.Sub(cur.signsFrom)
}

func publicJWK(k *key) jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.public, KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

func buildJWKS(keys []*key) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, publicJWK(k))
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encode JWKS: %w", err)
	}
	return b, nil
}
