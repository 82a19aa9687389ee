// Package token signs and verifies the OAuth2 access tokens of helix-authz:
// JWTs per RFC 9068 ("typ": "at+jwt"), signed ES256 or RS256 with a "kid".
// Sign is shared by the token issuer and the tests, so what is issued and
// what is accepted cannot drift apart.
//
// Verification is strict: only ES256 and RS256 are accepted (the allowlist
// is applied before any key lookup, so "none", HS256 with a public key as
// secret and everything else are refused), the header alg must equal the
// alg registered for the kid, and every claim RFC 9068 requires must be
// present.
package token

import (
	"context"
	"crypto"
	"errors"
	"slices"
	"time"
)

// Errors callers act on.
var (
	// ErrInvalidToken: the token is malformed, badly signed, expired, for
	// another issuer or audience, or lacks a required claim. The wrapped
	// message holds a reason for logs; clients must only see
	// "invalid_token".
	ErrInvalidToken = errors.New("invalid token")
	// ErrUnknownKey: no verification key has that kid. KeySource returns it;
	// Verify wraps it together with ErrInvalidToken.
	ErrUnknownKey = errors.New("unknown signing key")
)

// Algorithms accepted for signing and verification.
const (
	AlgES256 = "ES256"
	AlgRS256 = "RS256"
)

// MaxTokenBytes is the largest token Verify will parse.
const MaxTokenBytes = 8 << 10

// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// Private claim names.
const (
	ClaimPlan   = "helix_plan"
	ClaimModels = "helix_models"
)

// RevokedSessionPrefix + a session id is the revocation-list entry that
// ends every token issued under that session (jti values are base64url
// and never contain ':', so the two cannot collide).
const RevokedSessionPrefix = "sid:"

// MaxLifetime bounds an access token's life. A revocation-list entry that
// ends tokens by something other than their jti (a session) must outlive
// every token it ends, so it lives this long.
const MaxLifetime = time.Hour

// KeySource finds the public key and its algorithm for a kid. It returns
// ErrUnknownKey when no key has that kid; any other error means the lookup
// itself failed. Implementations cache keys so that verification keeps
// working while Postgres is down.
type KeySource interface {
	VerificationKey(ctx context.Context, kid string) (key crypto.PublicKey, alg string, err error)
}

// Claims are the claims of an access token.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	ClientID  string
	Scopes    []string
	JTI       string
	IssuedAt  time.Time
	NotBefore time.Time
	ExpiresAt time.Time
	// Plan is the rate-limit plan (private claim "helix_plan").
	Plan string
	// Models the client may reach (private claim "helix_models"; "*" for
	// all). Optional in the token; empty means no model.
	Models []string
	// SessionID ("sid") is the token session a person's token was issued
	// under (an authorization-code grant); empty for a client's own token.
	// Ending that session revokes "sid:"+SessionID, which Check honours.
	SessionID string
}

// SessionRevocationID is the revocation-list entry that ends a person's
// token with its session (RevokedSessionPrefix+sid), "" for a client's
// own token. A token is revoked when its jti or this entry is listed:
// Check, introspection and the people's API all ask about both.
func (c *Claims) SessionRevocationID() string {
	if c.SessionID == "" {
		return ""
	}
	return RevokedSessionPrefix + c.SessionID
}

// clone returns a deep copy, so that callers cannot change cached claims.
func (c *Claims) clone() *Claims {
	out := *c
	out.Audience = slices.Clone(c.Audience)
	out.Scopes = slices.Clone(c.Scopes)
	out.Models = slices.Clone(c.Models)
	return &out
}

// IssuedAfter reports whether a token issued at iat still counts against a
// client's cutoff (store.Client.TokensValidAfter; zero: none). iat has whole
// seconds, so a token of the cutoff's own second cannot be told from one
// issued just before it: it is refused. A token issued in that second after
// the cutoff is refused too, and its client asks for another.
func IssuedAfter(iat, cutoff time.Time) bool {
	return cutoff.IsZero() || iat.Unix() > cutoff.Unix()
}
