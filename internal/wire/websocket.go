package wire

import "strings"

// WebSocket inference (docs/websocket.md): the worker serves it, Envoy
// allows the upgrade on these paths only, helix-authz checks the upgrade.
const (
	// WSPathSuffix ends a model's WebSocket path:
	// /v2/models/{model}[/versions/{version}]/infer/ws.
	WSPathSuffix = "/infer/ws"
	// WSProtocol is the subprotocol the worker speaks (KServe v2 messages
	// with ids); a client offers it in Sec-WebSocket-Protocol.
	WSProtocol = "kserve.v2.helix"
	// WSTokenProtocolPrefix carries a browser's credential (it cannot set
	// headers on a WebSocket): "helix.bearer.<token or API key>" offered
	// beside WSProtocol. helix-authz reads it and overwrites the header
	// with WSProtocol alone, so the credential never reaches the worker.
	WSTokenProtocolPrefix = "helix.bearer."
	// HeaderWSProtocol is the header the subprotocols travel in.
	HeaderWSProtocol = "sec-websocket-protocol"
)

// Headers helix-authz sets on an authorized stream or upgrade, for the
// worker's per-message checks: the credential's revocable id and when it
// expires. Trusted for the same reason as the other x-helix-* headers.
const (
	// HeaderCredential is a CredentialID's text.
	HeaderCredential = "x-helix-credential"
	// HeaderExpires is the credential's expiry, Unix seconds; absent when it
	// does not expire.
	HeaderExpires = "x-helix-expires"
)

// CredentialID is a stream's credential as HeaderCredential names it, so
// that helix-authz's Limits re-checks on every message what Check checked
// when the stream opened: the token's id (and, for a person's token, the
// session it dies with) or the API key's prefix.
type CredentialID struct {
	Token   string // a token's jti
	Session string // a person's token's session id; "" otherwise
	APIKey  string // an API key's prefix
}

// The parts of a CredentialID's text: "jti:<jti>[;sid:<session>]" or
// "key:<prefix>".
const (
	credentialToken   = "jti:"
	credentialSession = ";sid:"
	credentialAPIKey  = "key:"
)

// String is the header's value; "" when c names nothing usable.
func (c CredentialID) String() string {
	switch {
	case c.Token != "" && c.APIKey == "":
		if c.Session != "" {
			return credentialToken + c.Token + credentialSession + c.Session
		}
		return credentialToken + c.Token
	case c.APIKey != "" && c.Token == "" && c.Session == "":
		return credentialAPIKey + c.APIKey
	}
	return ""
}

// ParseCredentialID reads a HeaderCredential value; ok is false for
// anything String would not have written.
func ParseCredentialID(s string) (c CredentialID, ok bool) {
	if key, found := strings.CutPrefix(s, credentialAPIKey); found {
		c.APIKey = key
	} else if tok, found := strings.CutPrefix(s, credentialToken); found {
		c.Token, c.Session, _ = strings.Cut(tok, credentialSession)
	}
	if s == "" || c.String() != s || strings.ContainsAny(c.Token+c.Session+c.APIKey, "; \t") {
		return CredentialID{}, false
	}
	return c, true
}
