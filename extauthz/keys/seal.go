package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KEKSize is the size of the key-encryption key: AES-256.
const KEKSize = 32

// sealVersion prefixes sealed blobs so the format can change later.
const sealVersion = 1

// ErrSealed is wrapped when a sealed private key cannot be opened: a wrong
// key-encryption key, or data that was tampered with.
var ErrSealed = errors.New("cannot open sealed signing key")

// ParseKEK reads a key-encryption key as 32 raw bytes, or as 64 hex digits,
// or as base64 (standard or URL, padded or not) of 32 bytes; surrounding
// whitespace is ignored. The error never includes the key.
func ParseKEK(data []byte) ([]byte, error) {
	if len(data) == KEKSize {
		return append([]byte(nil), data...), nil
	}
	s := strings.TrimSpace(string(data))
	if b, err := hex.DecodeString(s); err == nil && len(b) == KEKSize {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KEKSize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("key-encryption key must be %d bytes (raw, hex or base64)", KEKSize)
}

// seal encrypts plaintext with AES-256-GCM under kek, binding it to kid as
// additional data so that a sealed key cannot be swapped onto another row.
func seal(kek []byte, kid string, plaintext []byte) ([]byte, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal signing key: %w", err)
	}
	out := append([]byte{sealVersion}, nonce...)
	return aead.Seal(out, nonce, plaintext, []byte(kid)), nil
}

// open reverses seal.
func open(kek []byte, kid string, sealed []byte) ([]byte, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+aead.NonceSize()+aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w %q: malformed", ErrSealed, kid)
	}
	nonce := sealed[1 : 1+aead.NonceSize()]
	plain, err := aead.Open(nil, nonce, sealed[1+aead.NonceSize():], []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("%w %q: wrong key-encryption key or tampered data", ErrSealed, kid)
	}
	return plain, nil
}

func newAEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("key-encryption key must be %d bytes, got %d", KEKSize, len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	return cipher.NewGCM(block)
}
