package token

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// allowedAlgs is the signature allowlist; go-jose refuses any other alg
// while parsing, before a key is looked up.
var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256}

// maxKIDBytes bounds the kid handed to KeySource (and its caches).
const maxKIDBytes = 256

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer must equal the token's iss exactly.
	Issuer string
	// Audience must be one of the token's aud values.
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat (DefaultLeeway
	// when zero; negative is refused).
	Leeway time.Duration
	// Keys finds verification keys by kid.
	Keys KeySource
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// CacheSize bounds the verified-token cache (DefaultCacheSize when
	// zero, no cache when negative). A cached token skips parsing and the
	// signature check; its key is still looked up on every call and must
	// be unchanged, and exp is checked again.
	CacheSize int
}

// Verifier checks access tokens. It is safe for concurrent use.
type Verifier struct {
	issuer   string
	audience string
	leeway   time.Duration
	keys     KeySource
	now      func() time.Time
	cache    *tokenCache
}

// NewVerifier returns a Verifier, or an error if cfg lacks the issuer, the
// audience or the key source.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("token: verifier: empty issuer")
	case cfg.Audience == "":
		return nil, errors.New("token: verifier: empty audience")
	case cfg.Keys == nil:
		return nil, errors.New("token: verifier: nil key source")
	case cfg.Leeway < 0:
		return nil, errors.New("token: verifier: negative leeway")
	}
	v := &Verifier{issuer: cfg.Issuer, audience: cfg.Audience, leeway: cfg.Leeway, keys: cfg.Keys, now: cfg.Now}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	}
	if v.now == nil {
		v.now = time.Now
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	v.cache = newTokenCache(size)
	return v, nil
}

// invalid wraps ErrInvalidToken with a reason meant for logs only.
func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, reason)
}

// Verify checks raw and returns its claims. Errors wrap ErrInvalidToken
// (with ErrUnknownKey for an unknown kid); any other error means the key
// lookup failed and the token could not be judged, so callers must deny
// with "unavailable", never allow.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if raw == "" {
		return nil, invalid("empty token")
	}
	if len(raw) > MaxTokenBytes {
		return nil, invalid("token too large")
	}
	if strings.Count(raw, ".") != 2 {
		return nil, invalid("not a compact JWS")
	}
	if v.cache == nil {
		c, _, err := v.verify(ctx, raw)
		return c, err
	}
	h := sha256.Sum256([]byte(raw))
	if e := v.cache.get(&h); e != nil {
		c, ok, err := v.fromCache(ctx, e)
		if ok {
			return c, nil
		}
		v.cache.remove(&h)
		if err != nil {
			return nil, err
		}
	}
	_, e, err := v.verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	v.cache.put(&h, e, v.now())
	return e.claims.clone(), nil
}

// fromCache answers from a cached verification. ok is false when the entry
// no longer applies (expired, key changed): verify afresh.
func (v *Verifier) fromCache(ctx context.Context, e *verified) (*Claims, bool, error) {
	if !v.now().Before(e.until) {
		return nil, false, nil
	}
	key, alg, err := v.keys.VerificationKey(ctx, e.kid)
	switch {
	case errors.Is(err, ErrUnknownKey):
		return nil, false, fmt.Errorf("%w: %w", ErrInvalidToken, ErrUnknownKey)
	case err != nil:
		return nil, false, fmt.Errorf("token: verification key lookup: %w", err)
	}
	if alg != e.alg || !sameKey(key, e.key) {
		return nil, false, nil
	}
	return e.claims.clone(), true, nil
}

// verify checks raw in full and returns its claims and what to cache.
func (v *Verifier) verify(ctx context.Context, raw string) (*Claims, *verified, error) {
	jws, err := jose.ParseSignedCompact(raw, allowedAlgs)
	if err != nil {
		// Includes every alg outside the allowlist ("none", HS256, ...).
		return nil, nil, invalid("malformed or algorithm not allowed")
	}
	if len(jws.Signatures) != 1 {
		return nil, nil, invalid("not exactly one signature")
	}
	h := jws.Signatures[0].Protected
	if err := checkHeader(h); err != nil {
		return nil, nil, err
	}

	key, keyAlg, err := v.keys.VerificationKey(ctx, h.KeyID)
	switch {
	case errors.Is(err, ErrUnknownKey):
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidToken, ErrUnknownKey)
	case err != nil:
		return nil, nil, fmt.Errorf("token: verification key lookup: %w", err)
	case key == nil:
		return nil, nil, errors.New("token: verification key lookup returned no key")
	}
	if keyAlg != h.Algorithm {
		return nil, nil, invalid("header alg differs from the key's alg")
	}
	if err := checkKey(key, keyAlg); err != nil {
		// A key of the wrong kind is a key-store fault, but the token
		// still cannot be accepted.
		return nil, nil, invalid("verification key does not fit its alg")
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, nil, invalid("bad signature")
	}

	var w wireClaims
	if err := json.Unmarshal(payload, &w); err != nil {
		return nil, nil, invalid("malformed claims")
	}
	c, err := v.checkClaims(&w)
	if err != nil {
		return nil, nil, err
	}
	return c, &verified{claims: c, kid: h.KeyID, alg: keyAlg, key: key, until: c.ExpiresAt.Add(v.leeway)}, nil
}

// checkHeader accepts only the header our issuer writes: typ at+jwt, a kid,
// and none of the parameters that point at other keys or change how the
// payload is read.
func checkHeader(h jose.Header) error {
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	typ = strings.ToLower(typ)
	if typ != typAccessToken && typ != "application/"+typAccessToken {
		return invalid("typ is not at+jwt")
	}
	if h.KeyID == "" {
		return invalid("missing kid")
	}
	if len(h.KeyID) > maxKIDBytes {
		return invalid("kid too long")
	}
	if h.JSONWebKey != nil {
		return invalid("embedded jwk")
	}
	for _, k := range []jose.HeaderKey{"jku", "x5u", "crit", "b64"} {
		if _, ok := h.ExtraHeaders[k]; ok {
			return invalid("header parameter " + string(k) + " not allowed")
		}
	}
	return nil
}

func (v *Verifier) checkClaims(w *wireClaims) (*Claims, error) {
	now := v.now()
	switch {
	case w.Issuer != v.issuer:
		return nil, invalid("wrong issuer")
	case !containsString(w.Audience, v.audience):
		return nil, invalid("wrong audience")
	case w.ExpiresAt == nil:
		return nil, invalid("missing exp")
	case w.IssuedAt == nil:
		return nil, invalid("missing iat")
	case w.Subject == "":
		return nil, invalid("missing sub")
	case w.ClientID == "":
		return nil, invalid("missing client_id")
	case w.JTI == "":
		return nil, invalid("missing jti")
	}
	exp := w.ExpiresAt.Time()
	if !now.Before(exp.Add(v.leeway)) {
		return nil, invalid("expired")
	}
	iat := w.IssuedAt.Time()
	if now.Add(v.leeway).Before(iat) {
		return nil, invalid("issued in the future")
	}
	var nbf time.Time
	if w.NotBefore != nil {
		nbf = w.NotBefore.Time()
		if now.Add(v.leeway).Before(nbf) {
			return nil, invalid("not yet valid")
		}
	}
	return &Claims{
		Issuer:    w.Issuer,
		Subject:   w.Subject,
		Audience:  []string(w.Audience),
		ClientID:  w.ClientID,
		Scopes:    splitScope(w.Scope),
		JTI:       w.JTI,
		IssuedAt:  iat,
		NotBefore: nbf,
		ExpiresAt: exp,
		Plan:      w.Plan,
		Models:    w.Models,
		SessionID: w.SessionID,
	}, nil
}

// splitScope splits the space-separated scope claim (RFC 9068 2.2.3).
func splitScope(s string) []string {
	if s == "" {
		return nil
	}
	out := make([]string, 0, strings.Count(s, " ")+1)
	for _, f := range strings.Split(s, " ") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
