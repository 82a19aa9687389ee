package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	testIssuer   = "https://authz.helix.test"
	testAudience = "helix-inference"
)

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// keyring is an in-memory KeySource that counts lookups.
type keyring struct {
	mu      sync.Mutex
	keys    map[string]keyEntry
	err     error
	lookups atomic.Int64
}

type keyEntry struct {
	pub crypto.PublicKey
	alg string
}

func (k *keyring) VerificationKey(_ context.Context, kid string) (crypto.PublicKey, string, error) {
	k.lookups.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return nil, "", k.err
	}
	e, ok := k.keys[kid]
	if !ok {
		return nil, "", ErrUnknownKey
	}
	return e.pub, e.alg, nil
}

type fixture struct {
	ec   *ecdsa.PrivateKey
	rsa  *rsa.PrivateKey
	keys *keyring
	v    *Verifier
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaOnce.Do(func() {
		rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
	})
	if err != nil || rsaKey == nil {
		t.Fatalf("rsa key: %v", err)
	}
	kr := &keyring{keys: map[string]keyEntry{
		"ec1":  {pub: &ec.PublicKey, alg: AlgES256},
		"rsa1": {pub: &rsaKey.PublicKey, alg: AlgRS256},
	}}
	v, err := NewVerifier(VerifierConfig{
		Issuer: testIssuer, Audience: testAudience, Keys: kr,
		Now: func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{ec: ec, rsa: rsaKey, keys: kr, v: v}
}

func goodClaims() Claims {
	return Claims{
		Issuer:    testIssuer,
		Subject:   "client-a",
		Audience:  []string{testAudience},
		ClientID:  "client-a",
		Scopes:    []string{"models:read", "models:resnet:infer"},
		JTI:       "jti-1",
		IssuedAt:  testNow.Add(-time.Minute),
		NotBefore: testNow.Add(-time.Minute),
		ExpiresAt: testNow.Add(10 * time.Minute),
		Plan:      "gold",
		Models:    []string{"resnet"},
	}
}

func (f *fixture) sign(t testing.TB, c Claims) string {
	t.Helper()
	raw, err := Sign(c, f.ec, "ec1", AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func b64(v []byte) string { return base64.RawURLEncoding.EncodeToString(v) }

func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// craft builds a compact JWS from a header and payload of our choosing,
// signed by sign over the signing input (nil sign: empty signature).
func craft(t testing.TB, header, payload map[string]any, sign func([]byte) []byte) string {
	t.Helper()
	input := b64JSON(t, header) + "." + b64JSON(t, payload)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64(sig)
}

func goodPayload() map[string]any {
	return map[string]any{
		"iss": testIssuer, "sub": "client-a", "aud": testAudience,
		"exp": testNow.Add(10 * time.Minute).Unix(), "iat": testNow.Add(-time.Minute).Unix(),
		"jti": "jti-1", "client_id": "client-a", "scope": "models:infer",
	}
}

func ecSigner(t testing.TB, k *ecdsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

func hmacSigner(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

func TestVerifyAccepts(t *testing.T) {
	f := newFixture(t)
	want := goodClaims()
	rsTok, err := Sign(want, f.rsa, "rsa1", AlgRS256)
	if err != nil {
		t.Fatal(err)
	}
	// A signer that is neither *ecdsa nor *rsa goes through the opaque path.
	opaqueTok, err := Sign(want, opaqueSigner{f.ec}, "ec1", AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	// A person's token names the session it was issued under (sid).
	person := want
	person.Subject = "5f0c7a52-3c1e-4b5e-9a53-2f3b0f0e6a11"
	person.SessionID = "0b7f2f4e-0c55-4d1e-8f56-8a0f8f1d9c22"
	tests := []struct {
		name string
		raw  string
		want Claims
	}{
		{"ES256", f.sign(t, want), want},
		{"RS256", rsTok, want},
		{"opaque crypto.Signer", opaqueTok, want},
		{"person with sid", f.sign(t, person), person},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.v.Verify(context.Background(), tc.raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			w := tc.want
			w.IssuedAt = w.IssuedAt.Local()
			w.NotBefore = w.NotBefore.Local()
			w.ExpiresAt = w.ExpiresAt.Local()
			if !reflect.DeepEqual(*got, w) {
				t.Fatalf("claims:\n got %+v\nwant %+v", *got, w)
			}
		})
	}
}

type opaqueSigner struct{ k *ecdsa.PrivateKey }

func (o opaqueSigner) Public() crypto.PublicKey { return &o.k.PublicKey }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.k.Sign(r, d, opts)
}

func TestVerifyTypAndTimes(t *testing.T) {
	f := newFixture(t)
	es := ecSigner(t, f.ec)
	hdr := func(typ any) map[string]any {
		h := map[string]any{"alg": "ES256", "kid": "ec1"}
		if typ != nil {
			h["typ"] = typ
		}
		return h
	}
	with := func(mut func(p map[string]any)) map[string]any {
		p := goodPayload()
		mut(p)
		return p
	}
	leeway := DefaultLeeway
	tests := []struct {
		name   string
		raw    string
		wantOK bool
	}{
		{"typ at+jwt", craft(t, hdr("at+jwt"), goodPayload(), es), true},
		{"typ AT+JWT", craft(t, hdr("AT+JWT"), goodPayload(), es), true},
		{"typ application/at+jwt", craft(t, hdr("application/at+jwt"), goodPayload(), es), true},
		{"typ JWT", craft(t, hdr("JWT"), goodPayload(), es), false},
		{"typ missing", craft(t, hdr(nil), goodPayload(), es), false},
		{"typ not a string", craft(t, hdr(7), goodPayload(), es), false},
		{"exp within leeway", craft(t, hdr("at+jwt"), with(func(p map[string]any) {
			p["exp"] = testNow.Add(-leeway + time.Second).Unix()
		}), es), true},
		{"expired", craft(t, hdr("at+jwt"), with(func(p map[string]any) {
			p["exp"] = testNow.Add(-leeway).Unix()
		}), es), false},
		{"nbf within leeway", craft(t, hdr("at+jwt"), with(func(p map[string]any) {
			p["nbf"] = testNow.Add(leeway).Unix()
		}), es), true},
		{"not yet valid", craft(t, hdr("at+jwt"), with(func(p map[string]any) {
			p["nbf"] = testNow.Add(leeway + time.Second).Unix()
		}), es), false},
		{"iat in the future", craft(t, hdr("at+jwt"), with(func(p map[string]any) {
			p["iat"] = testNow.Add(leeway + time.Second).Unix()
		}), es), false},
		{"exp huge", craft(t, hdr("at+jwt"), with(func(p map[string]any) { p["exp"] = 1e300 }), es), false},
		{"nbf huge negative", craft(t, hdr("at+jwt"), with(func(p map[string]any) { p["nbf"] = -9.3e18 }), es), false},
		{"exp as string", craft(t, hdr("at+jwt"), with(func(p map[string]any) { p["exp"] = "2099" }), es), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.v.Verify(context.Background(), tc.raw)
			if tc.wantOK && err != nil {
				t.Fatalf("want accepted, got %v", err)
			}
			if !tc.wantOK && !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("want ErrInvalidToken, got %v", err)
			}
		})
	}
}

// TestVerifyRefuses covers issue 3's attack list for tokens. lookups says
// whether the key source may be consulted: algorithm attacks must be
// refused before any key lookup.
func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t)
	es := ecSigner(t, f.ec)
	atHdr := map[string]any{"alg": "ES256", "kid": "ec1", "typ": "at+jwt"}
	pubDER, err := x509.MarshalPKIXPublicKey(&f.ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pubJWK, err := json.Marshal(jose.JSONWebKey{Key: &f.ec.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	rsaDER := x509.MarshalPKCS1PublicKey(&f.rsa.PublicKey)
	hdr := func(kv ...any) map[string]any {
		h := map[string]any{"kid": "ec1", "typ": "at+jwt"}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i].(string)] = kv[i+1]
		}
		return h
	}
	without := func(claim string) map[string]any {
		p := goodPayload()
		delete(p, claim)
		return p
	}
	with := func(k string, v any) map[string]any {
		p := goodPayload()
		p[k] = v
		return p
	}
	good := f.sign(t, goodClaims())
	parts := strings.Split(good, ".")

	// tampered payload: same header and signature, more scopes.
	tamperedPayload := parts[0] + "." + b64JSON(t, with("scope", "models:infer models:read")) + "." + parts[2]
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)/2] ^= 0x01
	tamperedSig := parts[0] + "." + parts[1] + "." + b64(sig)

	// ES384 is a real asymmetric alg, but not on the allowlist.
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	es384Signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: p384},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "ec1"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(goodPayload())
	es384JWS, err := es384Signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	es384, _ := es384JWS.CompactSerialize()
	fullJSON := es384JWS.FullSerialize()

	// Signed with the RSA key but claiming the EC key's kid and RS256.
	rsUnderECKid := craft(t, hdr("alg", "RS256"), goodPayload(), func(in []byte) []byte {
		d := sha256.Sum256(in)
		s, err := rsa.SignPKCS1v15(rand.Reader, f.rsa, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return s
	})

	tests := []struct {
		name          string
		raw           string
		lookupAllowed bool
		unknownKey    bool
	}{
		{"empty", "", false, false},
		{"garbage", "not a token", false, false},
		{"oversized", strings.Repeat("a", MaxTokenBytes+1), false, false},
		{"oversized but well formed", parts[0] + "." + strings.Repeat("A", MaxTokenBytes) + "." + parts[2], false, false},
		{"two parts", parts[0] + "." + parts[1], false, false},
		{"JWE five parts", "a.b.c.d.e", false, false},
		{"JSON serialization", fullJSON, false, false},
		{"bad base64", "%%%." + parts[1] + "." + parts[2], false, false},
		{"alg none", craft(t, hdr("alg", "none"), goodPayload(), nil), false, false},
		{"alg None", craft(t, hdr("alg", "None"), goodPayload(), nil), false, false},
		{"alg none with signature", craft(t, hdr("alg", "none"), goodPayload(), es), false, false},
		{"alg missing", craft(t, hdr(), goodPayload(), es), false, false},
		{"HS256 with public key PEM as secret", craft(t, hdr("alg", "HS256"), goodPayload(), hmacSigner(pubPEM)), false, false},
		{"HS256 with public key DER as secret", craft(t, hdr("alg", "HS256"), goodPayload(), hmacSigner(pubDER)), false, false},
		{"HS256 with RSA key as secret", craft(t, hdr("alg", "HS256", "kid", "rsa1"), goodPayload(), hmacSigner(rsaDER)), false, false},
		{"HS256 with JWK as secret", craft(t, hdr("alg", "HS256"), goodPayload(), hmacSigner(pubJWK)), false, false},
		{"HS512", craft(t, hdr("alg", "HS512"), goodPayload(), hmacSigner([]byte("k"))), false, false},
		{"ES384 not allowed", es384, false, false},
		{"PS256 not allowed", craft(t, hdr("alg", "PS256", "kid", "rsa1"), goodPayload(), es), false, false},
		{"EdDSA not allowed", craft(t, hdr("alg", "EdDSA"), goodPayload(), es), false, false},
		{"missing kid", craft(t, map[string]any{"alg": "ES256", "typ": "at+jwt"}, goodPayload(), es), false, false},
		{"kid too long", craft(t, hdr("alg", "ES256", "kid", strings.Repeat("k", 300)), goodPayload(), es), false, false},
		{"embedded jwk", craft(t, hdr("alg", "ES256", "jwk", json.RawMessage(pubJWK)), goodPayload(), es), false, false},
		{"jku", craft(t, hdr("alg", "ES256", "jku", "https://evil.test/jwks"), goodPayload(), es), false, false},
		{"crit", craft(t, hdr("alg", "ES256", "crit", []string{"exp"}), goodPayload(), es), false, false},
		{"b64 false", craft(t, hdr("alg", "ES256", "b64", false), goodPayload(), es), false, false},
		{"unknown kid", craft(t, hdr("alg", "ES256", "kid", "nope"), goodPayload(), es), true, true},
		{"kid with SQL metacharacters", craft(t, hdr("alg", "ES256", "kid", "x' OR '1'='1"), goodPayload(), es), true, true},
		{"RS256 header on an ES256 key", rsUnderECKid, true, false},
		{"ES256 header on an RS256 key", craft(t, hdr("alg", "ES256", "kid", "rsa1"), goodPayload(), es), true, false},
		{"tampered payload", tamperedPayload, true, false},
		{"tampered signature", tamperedSig, true, false},
		{"signature of another key", craft(t, atHdr, goodPayload(), ecSigner(t, p256(t))), true, false},
		{"wrong issuer", craft(t, atHdr, with("iss", testIssuer+"/"), es), true, false},
		{"issuer case", craft(t, atHdr, with("iss", strings.ToUpper(testIssuer)), es), true, false},
		{"wrong audience", craft(t, atHdr, with("aud", "other"), es), true, false},
		{"audience list without ours", craft(t, atHdr, with("aud", []string{"a", "b"}), es), true, false},
		{"audience not a string", craft(t, atHdr, with("aud", 5), es), true, false},
		{"missing exp", craft(t, atHdr, without("exp"), es), true, false},
		{"missing iat", craft(t, atHdr, without("iat"), es), true, false},
		{"missing sub", craft(t, atHdr, without("sub"), es), true, false},
		{"missing client_id", craft(t, atHdr, without("client_id"), es), true, false},
		{"missing jti", craft(t, atHdr, without("jti"), es), true, false},
		{"missing aud", craft(t, atHdr, without("aud"), es), true, false},
		{"scope as array", craft(t, atHdr, with("scope", []string{"models:infer"}), es), true, false},
		{"helix_models not a list", craft(t, atHdr, with("helix_models", "*"), es), true, false},
		{"payload not an object", craft(t, atHdr, nil, es), true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.keys.lookups.Load()
			c, err := f.v.Verify(context.Background(), tc.raw)
			if c != nil || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("want ErrInvalidToken and no claims, got %v, %v", c, err)
			}
			if got := errors.Is(err, ErrUnknownKey); got != tc.unknownKey {
				t.Fatalf("errors.Is(ErrUnknownKey) = %v, want %v (%v)", got, tc.unknownKey, err)
			}
			if looked := f.keys.lookups.Load() != before; looked && !tc.lookupAllowed {
				t.Fatalf("key source consulted for a token refused before lookup (%v)", err)
			}
		})
	}
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerifyKeySourceFailures(t *testing.T) {
	f := newFixture(t)
	good := f.sign(t, goodClaims())

	t.Run("lookup error is not an invalid token", func(t *testing.T) {
		kr := &keyring{err: errors.New("db down")}
		v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: kr, Now: func() time.Time { return testNow }})
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.Verify(context.Background(), good)
		if c != nil || err == nil || errors.Is(err, ErrInvalidToken) {
			t.Fatalf("want a lookup error that is not ErrInvalidToken, got %v, %v", c, err)
		}
	})
	t.Run("key of the wrong kind", func(t *testing.T) {
		kr := &keyring{keys: map[string]keyEntry{"ec1": {pub: &f.rsa.PublicKey, alg: AlgES256}}}
		v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: kr, Now: func() time.Time { return testNow }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), good); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("want ErrInvalidToken, got %v", err)
		}
	})
	t.Run("nil key", func(t *testing.T) {
		kr := &keyring{keys: map[string]keyEntry{"ec1": {pub: nil, alg: AlgES256}}}
		v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: kr, Now: func() time.Time { return testNow }})
		if err != nil {
			t.Fatal(err)
		}
		if c, err := v.Verify(context.Background(), good); c != nil || err == nil {
			t.Fatalf("want an error, got %v, %v", c, err)
		}
	})
}

func TestNewVerifierConfig(t *testing.T) {
	kr := &keyring{}
	tests := []struct {
		name string
		cfg  VerifierConfig
		ok   bool
	}{
		{"complete", VerifierConfig{Issuer: "i", Audience: "a", Keys: kr}, true},
		{"no issuer", VerifierConfig{Audience: "a", Keys: kr}, false},
		{"no audience", VerifierConfig{Issuer: "i", Keys: kr}, false},
		{"no keys", VerifierConfig{Issuer: "i", Audience: "a"}, false},
		{"negative leeway", VerifierConfig{Issuer: "i", Audience: "a", Keys: kr, Leeway: -time.Second}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(tc.cfg)
			if (err == nil) != tc.ok || (v != nil) != tc.ok {
				t.Fatalf("NewVerifier = %v, %v; want ok=%v", v, err, tc.ok)
			}
		})
	}
	v, _ := NewVerifier(VerifierConfig{Issuer: "i", Audience: "a", Keys: kr})
	if v.leeway != DefaultLeeway {
		t.Fatalf("default leeway = %v", v.leeway)
	}
}

func TestSignRefuses(t *testing.T) {
	f := newFixture(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mut := func(m func(*Claims)) Claims {
		c := goodClaims()
		m(&c)
		return c
	}
	tests := []struct {
		name   string
		claims Claims
		key    crypto.Signer
		kid    string
		alg    string
	}{
		{"HS256", goodClaims(), f.ec, "ec1", "HS256"},
		{"none", goodClaims(), f.ec, "ec1", "none"},
		{"ES256 with an RSA key", goodClaims(), f.rsa, "rsa1", AlgES256},
		{"RS256 with an EC key", goodClaims(), f.ec, "ec1", AlgRS256},
		{"ES256 with P-384", goodClaims(), p384, "ec1", AlgES256},
		{"RS256 with 1024 bits", goodClaims(), small, "rsa1", AlgRS256},
		{"nil key", goodClaims(), nil, "ec1", AlgES256},
		{"empty kid", goodClaims(), f.ec, "", AlgES256},
		{"no iss", mut(func(c *Claims) { c.Issuer = "" }), f.ec, "ec1", AlgES256},
		{"no sub", mut(func(c *Claims) { c.Subject = "" }), f.ec, "ec1", AlgES256},
		{"no aud", mut(func(c *Claims) { c.Audience = nil }), f.ec, "ec1", AlgES256},
		{"no client_id", mut(func(c *Claims) { c.ClientID = "" }), f.ec, "ec1", AlgES256},
		{"no jti", mut(func(c *Claims) { c.JTI = "" }), f.ec, "ec1", AlgES256},
		{"no iat", mut(func(c *Claims) { c.IssuedAt = time.Time{} }), f.ec, "ec1", AlgES256},
		{"no exp", mut(func(c *Claims) { c.ExpiresAt = time.Time{} }), f.ec, "ec1", AlgES256},
		{"scope with a space", mut(func(c *Claims) { c.Scopes = []string{"models:read models:infer"} }), f.ec, "ec1", AlgES256},
		{"empty scope", mut(func(c *Claims) { c.Scopes = []string{""} }), f.ec, "ec1", AlgES256},
		{"too large", mut(func(c *Claims) { c.Models = []string{strings.Repeat("m", MaxTokenBytes)} }), f.ec, "ec1", AlgES256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var key crypto.Signer
			if tc.key != nil {
				key = tc.key
			}
			if raw, err := Sign(tc.claims, key, tc.kid, tc.alg); err == nil {
				t.Fatalf("Sign succeeded: %q", raw)
			}
		})
	}
}

// TestSignHeader pins what the issuer writes: typ at+jwt, kid, alg, and
// the scope as one space-separated string.
func TestSignHeader(t *testing.T) {
	f := newFixture(t)
	raw := f.sign(t, goodClaims())
	parts := strings.Split(raw, ".")
	var h map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &h); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"alg": "ES256", "kid": "ec1", "typ": "at+jwt"}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("header = %v, want %v", h, want)
	}
	var p map[string]any
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(pb, &p); err != nil {
		t.Fatal(err)
	}
	if p["scope"] != "models:read models:resnet:infer" || p["client_id"] != "client-a" || p["helix_plan"] != "gold" {
		t.Fatalf("payload = %v", p)
	}
	if _, ok := p["scp"]; ok {
		t.Fatal("payload has scp")
	}
}

func TestIssuedAfter(t *testing.T) {
	iat := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		name        string
		iat, cutoff time.Time
		want        bool
	}{
		{"no cutoff", iat, time.Time{}, true},
		{"no cutoff, no iat", time.Time{}, time.Time{}, true},
		{"cutoff in an earlier second", iat, iat.Add(-time.Nanosecond), true},
		{"cutoff at iat", iat, iat, false},
		{"cutoff later in iat's second", iat, iat.Add(999 * time.Millisecond), false},
		{"cutoff after", iat, iat.Add(time.Second), false},
		{"no iat, cutoff set", time.Time{}, iat, false},
		{"cutoff in another zone, same instant", iat, iat.In(time.FixedZone("x", 3600)), false},
	} {
		if got := IssuedAfter(tt.iat, tt.cutoff); got != tt.want {
			t.Errorf("%s: IssuedAfter(%v, %v) = %v, want %v", tt.name, tt.iat, tt.cutoff, got, tt.want)
		}
	}
}
