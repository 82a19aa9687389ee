// Package secret generates helix-authz's credentials (client ids, client
// secrets, API keys) and hashes them for storage.
//
// Hashing: every secret made here carries 256 bits from crypto/rand, so
// guessing one is hopeless whatever the hash, and a slow password hash
// (bcrypt, scrypt, argon2) adds nothing against an attacker who steals the
// table. It would only cost us: bcrypt at cost 10 takes ~50-80 ms of CPU, so
// token issuance and uncached API-key checks would be capped at a few dozen
// per second per core. Hashes are therefore HMAC-SHA-256 keyed with a
// server-side pepper (kept out of the database, so a stolen table alone
// cannot even confirm a guess), or plain SHA-256 when no pepper is
// configured. Comparisons are constant-time.
//
// These hashes are not for human-chosen passwords.
package secret

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"fmt"
)

// SecretBytes is the entropy of client secrets and API-key secrets.
const SecretBytes = 32

// API-key layout: "hx_" + 8-char prefix + "_" + 43-char secret.
const (
	apiKeyTag       = "hx_"
	APIKeyPrefixLen = 8
	apiKeySecretLen = 43 // base64url, no padding, of SecretBytes
	// APIKeyLen is the exact length of every API key.
	APIKeyLen = len(apiKeyTag) + APIKeyPrefixLen + 1 + apiKeySecretLen
)

// clientIDTag marks ids made here; clientIDBytes of entropy follow.
const (
	clientIDTag   = "hxc_"
	clientIDBytes = 16
)

// lowerBase32 is RFC 4648 base32 in lower case without padding: safe in
// URLs, HTTP Basic user names (no ':') and log lines.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var b64 = base64.RawURLEncoding.Strict()

func random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("secret: reading random bytes: %w", err)
	}
	return b, nil
}

// NewClientSecret returns a client secret: 32 random bytes, base64url
// without padding (43 characters).
func NewClientSecret() (string, error) {
	b, err := random(SecretBytes)
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(b), nil
}

// NewClientID returns a public client id: "hxc_" and 128 random bits in
// lower-case base32 (30 characters in all).
func NewClientID() (string, error) {
	b, err := random(clientIDBytes)
	if err != nil {
		return "", err
	}
	return clientIDTag + lowerBase32.EncodeToString(b), nil
}

// NewAPIKey returns an API key "hx_<prefix>_<secret>" and its prefix. The
// prefix (8 lower-case base32 characters, 40 random bits) is the public
// lookup id stored in clear; the secret is 32 random bytes in base64url.
// Store Hash(key) of the whole key, so that the prefix is bound to it.
func NewAPIKey() (key, prefix string, err error) {
	p, err := random(APIKeyPrefixLen * 5 / 8)
	if err != nil {
		return "", "", err
	}
	s, err := random(SecretBytes)
	if err != nil {
		return "", "", err
	}
	prefix = lowerBase32.EncodeToString(p)
	return apiKeyTag + prefix + "_" + b64.EncodeToString(s), prefix, nil
}

// ParseAPIKey reports whether s has the exact shape of a key made by
// NewAPIKey and returns its prefix. It checks the shape only; the caller
// verifies the hash.
func ParseAPIKey(s string) (prefix string, ok bool) {
	if len(s) != APIKeyLen || s[:len(apiKeyTag)] != apiKeyTag {
		return "", false
	}
	prefix = s[len(apiKeyTag) : len(apiKeyTag)+APIKeyPrefixLen]
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return "", false
		}
	}
	if s[len(apiKeyTag)+APIKeyPrefixLen] != '_' {
		return "", false
	}
	// Strict decoding rejects non-alphabet bytes and non-zero trailing bits,
	// so each key has one spelling.
	raw, err := b64.DecodeString(s[len(apiKeyTag)+APIKeyPrefixLen+1:])
	if err != nil || len(raw) != SecretBytes {
		return "", false
	}
	return prefix, true
}
