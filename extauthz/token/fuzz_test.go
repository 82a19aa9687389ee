package token

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// FuzzVerify feeds arbitrary strings to Verify: it must never panic, never
// return claims together with an error, and anything it accepts must carry
// our issuer, audience and the required claims.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	good := fx.sign(f, goodClaims())
	rs, err := Sign(goodClaims(), fx.rsa, "rsa1", AlgRS256)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(good, ".")
	for _, s := range []string{
		good, rs, "", ".", "..", "a.b.c", parts[0] + ".." + parts[2],
		craft(f, map[string]any{"alg": "none", "kid": "ec1", "typ": "at+jwt"}, goodPayload(), nil),
		craft(f, map[string]any{"alg": "HS256", "kid": "ec1", "typ": "at+jwt"}, goodPayload(), hmacSigner([]byte("x"))),
		"eyJhbGciOiJFUzI1NiJ9.e30.", strings.Repeat("A", MaxTokenBytes+1),
	} {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := fx.v.Verify(ctx, raw)
		if err != nil {
			if c != nil {
				t.Fatalf("claims returned with error %v", err)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error is not ErrInvalidToken: %v", err)
			}
			return
		}
		if len(raw) > MaxTokenBytes {
			t.Fatalf("accepted a %d-byte token", len(raw))
		}
		if c.Issuer != testIssuer || !containsString(c.Audience, testAudience) || c.ClientID == "" ||
			c.Subject == "" || c.JTI == "" || c.ExpiresAt.IsZero() {
			t.Fatalf("accepted incomplete claims %+v", c)
		}
	})
}
