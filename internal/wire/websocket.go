package wire

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
	// HeaderCredential is "jti:<token id>" or "key:<API key prefix>".
	HeaderCredential = "x-helix-credential"
	// HeaderExpires is the credential's expiry, Unix seconds; absent when it
	// does not expire.
	HeaderExpires = "x-helix-expires"
)
