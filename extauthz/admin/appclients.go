package admin

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/helixflow/helixflow/extauthz/oauth"
	"github.com/helixflow/helixflow/extauthz/store"
)

// AppFields make a client one that people sign in to (the authorization-
// code grant): public (a native app without a secret), its redirect URIs
// and its grant types. Only the admin API takes them: such a client gets
// people's tokens without a consent screen (first-party apps), so only a
// platform admin may make one; the organizations' API makes
// client-credentials clients only.
type AppFields struct {
	Public       bool     `json:"public,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	GrantTypes   []string `json:"grant_types,omitempty"`
}

// Limits of a client's redirect URIs (migration 00004 holds them too).
const (
	maxRedirectURIs     = 16
	maxRedirectURIBytes = 2048
)

var grantTypes = []string{store.GrantClientCredentials, store.GrantAuthorizationCode, store.GrantRefreshToken}

// apply checks f and writes it into c.
func (f *AppFields) apply(c *store.Client) error {
	gts := f.GrantTypes
	if len(gts) == 0 {
		gts = []string{store.GrantClientCredentials}
		if f.Public || len(f.RedirectURIs) > 0 {
			gts = []string{store.GrantAuthorizationCode, store.GrantRefreshToken}
		}
	}
	for i, g := range gts {
		if !slices.Contains(grantTypes, g) {
			return fmt.Errorf("grant_types: %q is not a grant type (%s)", g, strings.Join(grantTypes, ", "))
		}
		if slices.Contains(gts[:i], g) {
			return fmt.Errorf("grant_types: %q is listed twice", g)
		}
	}
	code := slices.Contains(gts, store.GrantAuthorizationCode)
	for _, sc := range []string{oauth.ScopeAccount, oauth.ScopeAdmin} {
		if slices.Contains(c.Scopes, sc) && !code {
			return fmt.Errorf("scopes: %q is a person's scope, for a client of the %s grant only", sc, store.GrantAuthorizationCode)
		}
	}
	switch {
	case f.Public && slices.Contains(gts, store.GrantClientCredentials):
		return fmt.Errorf("grant_types: a public client has no secret, so no %s grant", store.GrantClientCredentials)
	case f.Public && !code:
		return fmt.Errorf("grant_types: a public client needs the %s grant", store.GrantAuthorizationCode)
	case slices.Contains(gts, store.GrantRefreshToken) && !code:
		return fmt.Errorf("grant_types: %s comes with %s", store.GrantRefreshToken, store.GrantAuthorizationCode)
	case code && len(f.RedirectURIs) == 0:
		return fmt.Errorf("redirect_uris: the %s grant needs at least one redirect URI", store.GrantAuthorizationCode)
	case !code && len(f.RedirectURIs) > 0:
		return fmt.Errorf("redirect_uris: only for a client of the %s grant", store.GrantAuthorizationCode)
	case len(f.RedirectURIs) > maxRedirectURIs:
		return fmt.Errorf("redirect_uris: at most %d", maxRedirectURIs)
	}
	for i, u := range f.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return fmt.Errorf("redirect_uris[%d]: %w", i, err)
		}
		if slices.Contains(f.RedirectURIs[:i], u) {
			return fmt.Errorf("redirect_uris[%d]: %q is listed twice", i, u)
		}
	}
	c.Public, c.RedirectURIs, c.GrantTypes = f.Public, slices.Clone(f.RedirectURIs), gts
	return nil
}

// checkRedirectURI accepts an absolute https URI, or http to a loopback IP
// literal (a native app, RFC 8252 7.3; "localhost" may resolve elsewhere,
// 8.3), without userinfo or fragment, written as it will be compared
// (exactly: the server does no normalisation).
func checkRedirectURI(raw string) error {
	if raw == "" || len(raw) > maxRedirectURIBytes {
		return fmt.Errorf("empty or over %d bytes", maxRedirectURIBytes)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Opaque != "" || u.Host == "":
		return fmt.Errorf("%q is not an absolute URI", raw)
	case u.User != nil:
		return fmt.Errorf("%q has userinfo", raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("%q has a fragment (RFC 6749 3.1.2)", raw)
	case u.String() != raw:
		return fmt.Errorf("%q is not in its normal form (%q)", raw, u.String())
	case u.Path == "":
		return fmt.Errorf("%q has no path (give at least /)", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%q: http only to a loopback IP literal (127.0.0.1 or [::1]); use https", raw)
		}
	default:
		return fmt.Errorf("%q: the scheme must be https (or http to a loopback IP literal)", raw)
	}
	return nil
}
