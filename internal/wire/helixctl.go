package wire

// helixctl login (internal/cliauth) and helix-authz (extauthz/oauth), which
// registers helixctl's first-party client, agree on these.
const (
	// HelixctlClientID is the first-party public client of helixctl login.
	HelixctlClientID = "helixctl"
	// HelixctlCallbackPath is the path of helixctl's loopback redirect URI,
	// http://127.0.0.1:<any port><path> (RFC 8252 7.3).
	HelixctlCallbackPath = "/callback"
)
