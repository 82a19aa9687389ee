package wire

// helix-authz's public surface: the OAuth2 endpoints, the people's JSON
// API, its pages and the developer portal. helix-authz serves these paths
// on its public port; Envoy serves them on its one listener too, routing
// them to that port without ext_authz (xds/translate), so that people and
// SDKs use one origin for models, tokens and the portal.
const (
	// PortalPrefix is the developer portal's path prefix (extauthz/portal);
	// Envoy and helix-authz send "/" there.
	PortalPrefix = "/portal/"
	// APIPrefix is the people's JSON API (accounts, organizations, the model
	// catalogue, usage).
	APIPrefix = "/api/v1/"
)

// PublicPathPrefixes are the path prefixes of helix-authz's public
// surface; PublicExactPaths the paths it serves outside them. A new public
// path is added here once and both sides follow.
func PublicPathPrefixes() []string {
	return []string{PortalPrefix, APIPrefix, "/oauth2/", "/.well-known/", "/assets/"}
}

// PublicExactPaths: the pages a person reaches from a mail or an OAuth2
// app, and the root, which redirects to the portal.
func PublicExactPaths() []string {
	return []string{"/", "/login", "/verify-email", "/reset-password"}
}
