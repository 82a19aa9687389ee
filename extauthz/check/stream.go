package check

import (
	"strconv"

	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/internal/wire"
)

// streamCredential is what an authorized stream's worker is told of its
// credential: the revocable id and the expiry (Unix seconds, "" for
// never).
type streamCredential struct {
	id, expires string
}

// streamCredentialOf names the credential that opened a stream
// (wire.CredentialID: a token's jti and, for a person's token, its
// session; an API key's prefix), which helix-authz's Limits.Spend
// re-checks on every message. A credential without a usable id cannot
// open a stream: its messages could not be re-checked.
func streamCredentialOf(p *Principal, h *reqHeaders) (streamCredential, *denial) {
	var c streamCredential
	switch h.credKind {
	case credJWT:
		c.id = wire.CredentialID{Token: h.jti, Session: h.sid}.String()
	case credAPIKey:
		// The checker accepted the key, so it parses; its prefix is the
		// key's id in the store.
		if prefix, ok := secret.ParseAPIKey(h.cred); ok {
			c.id = wire.CredentialID{APIKey: prefix}.String()
		}
	}
	if !validHeaderValue(c.id) {
		d := forbidden("no_credential_id", "credential cannot open a stream")
		return streamCredential{}, &d
	}
	if !p.Expires.IsZero() {
		c.expires = strconv.FormatInt(p.Expires.Unix(), 10)
	}
	return c, nil
}

// fromWSProtocol reports whether the credential came in the WebSocket
// subprotocols rather than a header.
func (h *reqHeaders) fromWSProtocol() bool {
	return h.credKind != credNone && !h.hasAuthorization && !h.hasAPIKey
}
