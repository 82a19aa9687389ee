package secret

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
)

// ErrMismatch: the secret does not match the hash.
var ErrMismatch = errors.New("secret does not match")

// Hasher hashes high-entropy secrets (see the package comment for why it
// is fast). The zero value hashes with plain SHA-256. It is safe for
// concurrent use.
type Hasher struct {
	pepper []byte
}

// NewHasher returns a Hasher keyed with pepper (HMAC-SHA-256); an empty
// pepper means plain SHA-256. Hashes made with one pepper only verify
// under the same pepper.
func NewHasher(pepper []byte) *Hasher {
	return &Hasher{pepper: append([]byte(nil), pepper...)}
}

// Hash returns the 32-byte hash of secret.
func (h *Hasher) Hash(secret string) []byte {
	if h == nil || len(h.pepper) == 0 {
		sum := sha256.Sum256([]byte(secret))
		return sum[:]
	}
	m := hmac.New(sha256.New, h.pepper)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// Verify reports, in constant time, whether secret hashes to hash. An empty
// secret or hash never verifies.
func (h *Hasher) Verify(hash []byte, secret string) bool {
	if len(hash) == 0 || secret == "" {
		return false
	}
	return subtle.ConstantTimeCompare(h.Hash(secret), hash) == 1
}

// Fosite returns h as a fosite.Hasher, so that fosite authenticates OAuth2
// clients with it. (Hasher cannot implement that interface itself: both
// want a method named Hash.)
func (h *Hasher) Fosite() FositeHasher { return FositeHasher{h: h} }

// FositeHasher adapts Hasher to fosite.Hasher; it needs no import of
// fosite, the method set is what matters.
type FositeHasher struct{ h *Hasher }

// Compare returns nil when data hashes to hash, ErrMismatch otherwise.
func (f FositeHasher) Compare(_ context.Context, hash, data []byte) error {
	if !f.h.Verify(hash, string(data)) {
		return ErrMismatch
	}
	return nil
}

// Hash returns the hash of data.
func (f FositeHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	return f.h.Hash(string(data)), nil
}
