package oauth

import (
	"slices"
	"strings"

	"github.com/helixflow/helixflow/extauthz/store"
)

// Redirect URIs are compared as strings, exactly (RFC 6749 3.1.2.3, RFC
// 9700 4.1.3): no case folding, no trailing-slash or query leniency. The
// one exception is RFC 8252 7.3: a native app listens on a loopback port
// the system picks, so for a public client whose registered URI is a
// loopback IP literal over http without a port ("http://127.0.0.1/callback",
// "http://[::1]/callback"), any port is accepted and everything else must
// still match byte for byte. A registered URI with a port (a web client on
// a developer's machine) is matched exactly like any other.
//
// This is stricter than fosite's own matching, which also folds the
// scheme's case, ignores userinfo and applies the loopback rule to every
// client; it runs first, and fosite's then agrees.

// loopbackPrefixes are the registered forms the port rule applies to.
var loopbackPrefixes = []string{"http://127.0.0.1", "http://[::1]"}

// maxRedirectURIBytes bounds a redirect URI.
const maxRedirectURIBytes = 2048

// redirectAllowed reports whether raw is a redirect URI of c.
func redirectAllowed(c *store.Client, raw string) bool {
	if raw == "" || len(raw) > maxRedirectURIBytes {
		return false
	}
	if slices.Contains(c.RedirectURIs, raw) {
		return true
	}
	if !c.Public {
		return false
	}
	withoutPort, ok := stripLoopbackPort(raw)
	if !ok {
		return false
	}
	for _, reg := range c.RedirectURIs {
		if reg == withoutPort && isPortlessLoopback(reg) {
			return true
		}
	}
	return false
}

// stripLoopbackPort returns raw without its port when raw is
// "http://127.0.0.1:PORT/..." or "http://[::1]:PORT/..." with a decimal
// port 1-65535 written without leading zeros, followed by a path.
func stripLoopbackPort(raw string) (string, bool) {
	for _, prefix := range loopbackPrefixes {
		rest, ok := strings.CutPrefix(raw, prefix+":")
		if !ok {
			continue
		}
		i := 0
		for i < len(rest) && i < 6 && '0' <= rest[i] && rest[i] <= '9' {
			i++
		}
		if i == 0 || i > 5 || rest[0] == '0' || i == len(rest) || rest[i] != '/' {
			return "", false
		}
		port := 0
		for _, d := range rest[:i] {
			port = port*10 + int(d-'0')
		}
		if port > 65535 {
			return "", false
		}
		return prefix + rest[i:], true
	}
	return "", false
}

// isPortlessLoopback reports whether reg is a registered loopback URI
// without a port, the form the port rule applies to.
func isPortlessLoopback(reg string) bool {
	for _, prefix := range loopbackPrefixes {
		if rest, ok := strings.CutPrefix(reg, prefix); ok && strings.HasPrefix(rest, "/") {
			return true
		}
	}
	return false
}
