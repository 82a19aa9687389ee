package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
)

// typAccessToken is the JOSE "typ" of RFC 9068 access tokens.
const typAccessToken = "at+jwt"

// minRSABits is the smallest RSA modulus accepted for RS256.
const minRSABits = 2048

// wireClaims is the JSON payload. Field order is the order on the wire.
type wireClaims struct {
	Issuer    string           `json:"iss,omitempty"`
	Subject   string           `json:"sub,omitempty"`
	Audience  jwt.Audience     `json:"aud,omitempty"`
	ExpiresAt *jwt.NumericDate `json:"exp,omitempty"`
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	IssuedAt  *jwt.NumericDate `json:"iat,omitempty"`
	JTI       string           `json:"jti,omitempty"`
	ClientID  string           `json:"client_id,omitempty"`
	Scope     string           `json:"scope,omitempty"`
	Plan      string           `json:"helix_plan,omitempty"`
	Models    []string         `json:"helix_models,omitempty"`
	SessionID string           `json:"sid,omitempty"`
}

// Sign returns claims as a compact JWS with header {"alg", "kid", "typ":
// "at+jwt"}. alg is ES256 (key an ECDSA P-256 signer) or RS256 (an RSA
// signer of at least 2048 bits). It refuses claims that Verify would refuse
// for being incomplete (iss, sub, aud, client_id, jti, iat, exp) and scopes
// that cannot be written space-separated.
func Sign(claims Claims, key crypto.Signer, kid, alg string) (string, error) {
	if key == nil {
		return "", errors.New("token: sign: nil key")
	}
	if kid == "" {
		return "", errors.New("token: sign: empty kid")
	}
	if err := checkKey(key.Public(), alg); err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	if err := checkComplete(claims); err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	for _, s := range claims.Scopes {
		if !validScopeToken(s) {
			return "", errors.New("token: sign: scope token empty or with characters RFC 6749 forbids")
		}
	}
	payload, err := json.Marshal(wireClaims{
		Issuer:    claims.Issuer,
		Subject:   claims.Subject,
		Audience:  jwt.Audience(claims.Audience),
		ExpiresAt: jwt.NewNumericDate(claims.ExpiresAt),
		NotBefore: jwt.NewNumericDate(claims.NotBefore),
		IssuedAt:  jwt.NewNumericDate(claims.IssuedAt),
		JTI:       claims.JTI,
		ClientID:  claims.ClientID,
		Scope:     strings.Join(claims.Scopes, " "),
		Plan:      claims.Plan,
		Models:    claims.Models,
		SessionID: claims.SessionID,
	})
	if err != nil {
		return "", fmt.Errorf("token: sign: encode claims: %w", err)
	}

	// Plain key types go to go-jose directly (faster); anything else, such
	// as a KMS-backed signer, through the opaque adapter.
	var signingKey any
	switch k := key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
		signingKey = k
	default:
		signingKey = cryptosigner.Opaque(key)
	}
	opts := (&jose.SignerOptions{}).WithType(typAccessToken).WithHeader("kid", kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: signingKey}, opts)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	if len(raw) > MaxTokenBytes {
		return "", fmt.Errorf("token: sign: token of %d bytes exceeds %d", len(raw), MaxTokenBytes)
	}
	return raw, nil
}

// checkKey reports whether pub is a key of the kind alg needs.
func checkKey(pub crypto.PublicKey, alg string) error {
	switch alg {
	case AlgES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() {
			return errors.New("ES256 needs an ECDSA P-256 key")
		}
	case AlgRS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok || k.N == nil || k.N.BitLen() < minRSABits {
			return fmt.Errorf("RS256 needs an RSA key of at least %d bits", minRSABits)
		}
	default:
		return errors.New("algorithm not allowed (ES256 or RS256 only)")
	}
	return nil
}

// checkComplete reports the first claim RFC 9068 requires that is missing.
func checkComplete(c Claims) error {
	switch {
	case c.Issuer == "":
		return errors.New("missing iss")
	case c.Subject == "":
		return errors.New("missing sub")
	case len(c.Audience) == 0:
		return errors.New("missing aud")
	case c.ClientID == "":
		return errors.New("missing client_id")
	case c.JTI == "":
		return errors.New("missing jti")
	case c.IssuedAt.IsZero():
		return errors.New("missing iat")
	case c.ExpiresAt.IsZero():
		return errors.New("missing exp")
	}
	return nil
}

// validScopeToken: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 3.3).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
