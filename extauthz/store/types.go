// Package store keeps helix-authz's state in Postgres: OAuth2 clients, API
// keys, signing keys (private halves sealed by the caller, never in clear)
// and revoked token ids, and tells every replica about changes through
// LISTEN/NOTIFY. Secrets arrive here already hashed.
package store

import (
	"errors"
	"time"
)

// Errors callers act on.
var (
	// ErrNotFound: no row with that id.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a row with that id already exists.
	ErrConflict = errors.New("already exists")
	// ErrUnavailable wraps failures to reach Postgres (after retries), so
	// callers can answer 503 and never fail open.
	ErrUnavailable = errors.New("database unavailable")
)

// Client is an OAuth2 client: a machine client (client-credentials
// grant) or an app people sign in to (authorization-code grant).
type Client struct {
	ID   string
	Name string
	// SecretHash is the hash of the client secret (see extauthz/secret);
	// nil for a public client.
	SecretHash []byte
	// Public: a client that cannot keep a secret (a native app such as
	// helixctl); it has no SecretHash and never the client-credentials
	// grant.
	Public bool
	// RedirectURIs registered for the authorization-code grant, matched
	// exactly (see extauthz/oauth for the loopback port).
	RedirectURIs []string
	// GrantTypes the client may use (GrantClientCredentials when none is
	// given at creation).
	GrantTypes []string
	// Scopes the client may ask for; Models the model names it may reach
	// ("*" for all).
	Scopes   []string
	Models   []string
	Audience []string
	// Plan names the rate-limit plan.
	Plan    string
	Enabled bool
	// TokensValidAfter: the client's tokens issued at or before it (to the
	// second, see token.IssuedAfter) are invalid. SetClientSecret and a
	// change of Enabled by UpdateClient move it to the database's now();
	// zero when neither ever happened.
	TokensValidAfter time.Time
	// OrgID is the organization the client belongs to; "" for a platform
	// client (made with the admin API). CreatedBy is the user who made it
	// ("" when made with the admin token or the user was deleted).
	OrgID     string
	CreatedBy string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Grant types a client may have.
const (
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
)

// APIKey is a long-lived credential of a client, looked up by its public
// prefix and checked against its hash.
type APIKey struct {
	ID       string
	Prefix   string
	Hash     []byte
	ClientID string
	Name     string
	// Scopes of the key: a subset of its client's.
	Scopes     []string
	ExpiresAt  *time.Time
	LastUsedAt *time.Time
	UseCount   int64
	RevokedAt  *time.Time
	CreatedAt  time.Time
	// CreatedBy is the user who made the key ("" for the admin token);
	// Replaces the id of the key it was rotated from ("" if none).
	CreatedBy string
	Replaces  string
}

// SigningKey is one token-signing key pair. The private key is sealed
// (AES-256-GCM under the key-encryption key) before it reaches the store.
type SigningKey struct {
	KID string
	// Alg is the JWS algorithm, "ES256" or "RS256".
	Alg string
	// PublicJWK is the public key as a JSON Web Key.
	PublicJWK []byte
	// PrivateSealed is the sealed private key (PKCS#8 inside).
	PrivateSealed []byte
	CreatedAt     time.Time
	// SignsFrom: the key is published from CreatedAt and signs only from
	// SignsFrom, so that verifiers have it before any token needs it.
	SignsFrom time.Time
	// RetiredAt: the key stopped signing (nil while it may sign).
	RetiredAt *time.Time
	// ExpiresAt: the key leaves the JWKS (every token it signed expired).
	ExpiresAt *time.Time
}

// ChangeKind says what changed.
type ChangeKind string

// Change kinds sent over LISTEN/NOTIFY.
const (
	ChangeClient  ChangeKind = "client"
	ChangeAPIKey  ChangeKind = "apikey"
	ChangeRevoked ChangeKind = "revoked"
	ChangeKeys    ChangeKind = "keys"
	// ChangeMark is a marker a replica sends itself (Store.Mark).
	ChangeMark ChangeKind = "mark"
)

// Change is one notification: Kind and the id (client id, API key prefix,
// token jti; empty for keys).
type Change struct {
	Kind ChangeKind
	ID   string
}
