package oauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/helixflow/helixflow/extauthz/token"
)

// verifier checks tokens for introspection and revocation with
// token.Verifier against the published JWKS, so this server accepts
// exactly what outside verifiers accept. Any audience is fine here (the
// token names the one it was issued for); signature, iss, exp and nbf are
// checked as everywhere.
type verifier struct {
	issuer string
	keys   *jwksKeys
	now    func() time.Time
}

func newVerifier(issuer string, p KeyProvider, now func() time.Time) *verifier {
	return &verifier{issuer: issuer, keys: &jwksKeys{p: p}, now: now}
}

// verify returns the claims of a valid token. Errors wrap
// token.ErrInvalidToken, or errUnavailable when the keys could not be had.
func (v *verifier) verify(ctx context.Context, raw string) (*token.Claims, error) {
	aud, err := peekAudience(raw)
	if err != nil {
		return nil, err
	}
	tv, err := token.NewVerifier(token.VerifierConfig{Issuer: v.issuer, Audience: aud, Keys: v.keys, Now: v.now})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", token.ErrInvalidToken, err)
	}
	c, err := tv.Verify(ctx, raw)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, token.ErrInvalidToken):
		return nil, err
	default:
		return nil, unavailable("verification keys", err)
	}
}

// peekAudience reads the first aud of an unverified token: token.Verifier
// wants one audience to insist on, and the signature check that follows
// covers the claim that was peeked at.
func peekAudience(raw string) (string, error) {
	if raw == "" || len(raw) > token.MaxTokenBytes {
		return "", fmt.Errorf("%w: empty or too large", token.ErrInvalidToken)
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		return "", fmt.Errorf("%w: malformed", token.ErrInvalidToken)
	}
	var c struct {
		Audience jwt.Audience `json:"aud"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil || len(c.Audience) == 0 || c.Audience[0] == "" {
		return "", fmt.Errorf("%w: no audience", token.ErrInvalidToken)
	}
	return c.Audience[0], nil
}

// jwksKeys is a token.KeySource over KeyProvider.JWKS, re-parsed only
// when the published bytes change.
type jwksKeys struct {
	p KeyProvider

	mu    sync.Mutex
	raw   []byte
	byKID map[string]jwk
}

type jwk struct {
	key crypto.PublicKey
	alg string
}

var _ token.KeySource = (*jwksKeys)(nil)

func (k *jwksKeys) VerificationKey(ctx context.Context, kid string) (crypto.PublicKey, string, error) {
	raw, err := k.p.JWKS(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("oauth: jwks: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byKID == nil || !bytes.Equal(raw, k.raw) {
		byKID, err := parseJWKS(raw)
		if err != nil {
			return nil, "", err
		}
		k.raw = bytes.Clone(raw)
		k.byKID = byKID
	}
	e, ok := k.byKID[kid]
	if !ok {
		return nil, "", token.ErrUnknownKey
	}
	return e.key, e.alg, nil
}

// parseJWKS keeps the signature keys of a JWKS by kid; keys without an
// alg get the one their type allows (ES256 for P-256, RS256 for RSA).
func parseJWKS(raw []byte) (map[string]jwk, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("oauth: jwks: %w", err)
	}
	out := make(map[string]jwk, len(set.Keys))
	for _, k := range set.Keys {
		if k.KeyID == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub := k.Public()
		if !pub.Valid() {
			continue
		}
		alg := k.Algorithm
		if alg == "" {
			switch pub.Key.(type) {
			case *ecdsa.PublicKey:
				alg = token.AlgES256
			case *rsa.PublicKey:
				alg = token.AlgRS256
			}
		}
		out[k.KeyID] = jwk{key: pub.Key, alg: alg}
	}
	return out, nil
}
