package oauth

import (
	"net"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/helixflow/helixflow/extauthz/store"
)

func TestStripLoopbackPort(t *testing.T) {
	for raw, want := range map[string]string{
		"http://127.0.0.1:1/callback":     "http://127.0.0.1/callback",
		"http://127.0.0.1:65535/cb?x=1":   "http://127.0.0.1/cb?x=1",
		"http://[::1]:8080/callback":      "http://[::1]/callback",
		"http://127.0.0.1:65536/callback": "",
		"http://127.0.0.1:0/callback":     "",
		"http://127.0.0.1:08/callback":    "",
		"http://127.0.0.1:/callback":      "",
		"http://127.0.0.1:80":             "",
		"http://127.0.0.1:80?x":           "",
		"http://127.0.0.1:123456/cb":      "",
		"http://127.0.0.1/callback":       "",
		"https://127.0.0.1:80/callback":   "",
		"http://u@127.0.0.1:80/callback":  "",
	} {
		got, ok := stripLoopbackPort(raw)
		if ok != (want != "") || got != want {
			t.Errorf("stripLoopbackPort(%q) = %q, %v; want %q", raw, got, ok, want)
		}
	}
}

// FuzzRedirectAllowed: whatever the input, an accepted redirect URI is a
// registered one, or a public client's port-less loopback URI with a valid
// port added, and nothing else: same scheme, host, path and query, no
// userinfo, no fragment.
func FuzzRedirectAllowed(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1/callback", "http://127.0.0.1:43117/callback", "http://[::1]:1/callback",
		"http://127.0.0.1:43117/callback/", "http://u@127.0.0.1:1/callback", "http://127.0.0.1:1/callback#x",
		"http://127.0.0.1:99999/callback", "https://app.helix.test/cb", "HTTP://127.0.0.1:1/callback",
		"http://127.0.0.1:1@evil.test/callback", "http://127.0.0.1:1/callback?a=b", "",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	registered := []string{"http://127.0.0.1/callback", "http://[::1]/callback", "https://app.helix.test/cb", "http://127.0.0.1:8123/dev"}
	f.Fuzz(func(t *testing.T, raw string, public bool) {
		c := &store.Client{Public: public, RedirectURIs: registered}
		if !redirectAllowed(c, raw) || slices.Contains(registered, raw) {
			return
		}
		if !public {
			t.Fatalf("confidential client accepted unregistered %q", raw)
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || u.User != nil || u.Fragment != "" || u.RawFragment != "" || u.Opaque != "" {
			t.Fatalf("accepted %q: %+v %v", raw, u, err)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || !net.ParseIP(host).IsLoopback() {
			t.Fatalf("accepted %q with host %q", raw, u.Host)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			t.Fatalf("accepted %q with port %q", raw, port)
		}
		u.Host = u.Hostname()
		if net.ParseIP(u.Host).To4() == nil {
			u.Host = "[" + u.Host + "]"
		}
		if !slices.Contains(registered[:2], u.String()) {
			t.Fatalf("accepted %q, which is no registered port-less loopback URI with a port (%q)", raw, u.String())
		}
	})
}
