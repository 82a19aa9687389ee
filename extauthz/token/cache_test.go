package token

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestVerifyCache(t *testing.T) {
	tests := []struct {
		name string
		// change runs between a first, successful Verify and a second one.
		change func(f *fixture, now *time.Time)
		check  func(t *testing.T, c *Claims, err error)
	}{
		{"hit", func(*fixture, *time.Time) {}, func(t *testing.T, c *Claims, err error) {
			if err != nil || c.ClientID != "client-a" {
				t.Fatalf("got %v, %v", c, err)
			}
		}},
		{"key removed", func(f *fixture, _ *time.Time) { delete(f.keys.keys, "ec1") }, func(t *testing.T, c *Claims, err error) {
			if c != nil || !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got %v, %v", c, err)
			}
		}},
		{"key replaced under the same kid", func(f *fixture, _ *time.Time) {
			f.keys.keys["ec1"] = keyEntry{pub: &p256(t).PublicKey, alg: AlgES256}
		}, func(t *testing.T, c *Claims, err error) {
			if c != nil || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got %v, %v", c, err)
			}
		}},
		{"alg changed under the same kid", func(f *fixture, _ *time.Time) {
			f.keys.keys["ec1"] = keyEntry{pub: f.keys.keys["ec1"].pub, alg: AlgRS256}
		}, func(t *testing.T, c *Claims, err error) {
			if c != nil || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got %v, %v", c, err)
			}
		}},
		{"expired while cached", func(_ *fixture, now *time.Time) { *now = now.Add(time.Hour) }, func(t *testing.T, c *Claims, err error) {
			if c != nil || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got %v, %v", c, err)
			}
		}},
		{"key source down", func(f *fixture, _ *time.Time) { f.keys.err = errors.New("db down") }, func(t *testing.T, c *Claims, err error) {
			if c != nil || err == nil || errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got %v, %v", c, err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			now := testNow
			v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: f.keys, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			raw := f.sign(t, goodClaims())
			first, err := v.Verify(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			if v.cache.len() != 1 {
				t.Fatalf("cache holds %d", v.cache.len())
			}
			// Callers cannot change what is cached.
			first.Scopes[0] = "models:infer"
			first.Models[0] = "*"
			f.keys.mu.Lock()
			tc.change(f, &now)
			f.keys.mu.Unlock()
			c, err := v.Verify(context.Background(), raw)
			tc.check(t, c, err)
			if err != nil {
				return
			}
			if c.Scopes[0] != "models:read" || c.Models[0] != "resnet" {
				t.Fatalf("cached claims were changed by a caller: %+v", c)
			}
			c.Scopes[0], c.Audience[0] = "models:infer", "other"
			again, err := v.Verify(context.Background(), raw)
			if err != nil || again.Scopes[0] != "models:read" || again.Audience[0] != testAudience {
				t.Fatalf("a cache hit handed out the cached claims: %+v, %v", again, err)
			}
		})
	}
}

func TestVerifyCacheBounded(t *testing.T) {
	f := newFixture(t)
	v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: f.keys, CacheSize: 32, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		c := goodClaims()
		c.JTI = fmt.Sprint("jti-", i)
		if _, err := v.Verify(context.Background(), f.sign(t, c)); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cache.len(); n > 32 || n == 0 {
		t.Fatalf("cache holds %d entries, bound 32", n)
	}
	off, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: f.keys, CacheSize: -1})
	if err != nil || off.cache != nil {
		t.Fatalf("CacheSize -1: cache %v, %v", off.cache, err)
	}
}

func TestSameKey(t *testing.T) {
	a, b := p256(t), p256(t)
	tests := []struct {
		x, y crypto.PublicKey
		want bool
	}{
		{&a.PublicKey, &a.PublicKey, true},
		{&a.PublicKey, &b.PublicKey, false},
		{&a.PublicKey, nil, false},
		{nil, &a.PublicKey, false},
		{"not a key", "not a key", false},
	}
	for i, tc := range tests {
		if got := sameKey(tc.x, tc.y); got != tc.want {
			t.Errorf("%d: sameKey = %v", i, got)
		}
	}
}
