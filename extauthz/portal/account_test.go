package portal

import (
	"net/url"
	"strings"
	"testing"
)

// TestSafeNext: sign-in goes on only to a portal path of this origin.
func TestSafeNext(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/portal/usage?org=x&granularity=day", "/portal/usage?org=x&granularity=day"},
		{"/portal/", "/portal/"},
		{"", "/portal/"},
		{"/", "/portal/"},
		{"/api/v1/account", "/portal/"},
		{"//evil.example/portal/", "/portal/"},
		{"https://evil.example/portal/", "/portal/"},
		{"/\\evil.example/portal/", "/portal/"},
		{"/portal/\\..\\api", "/portal/"},
		{"/portal/../api/v1/account", "/portal/"},
		{"/portal/%2e%2e/api", "/portal/"},
		{"/portal/..", "/portal/"},
		{"javascript:alert(1)", "/portal/"},
		{"/portal/\r\nSet-Cookie: x=y", "/portal/"},
		{"http:/portal/", "/portal/"},
		{"/portal@evil.example/", "/portal/"},
	} {
		if got := safeNext(c.in); got != c.want {
			t.Errorf("safeNext(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// FuzzSafeNext: whatever it is given, the answer is a path under /portal/
// that a browser resolves on this origin, with no dot segments.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/portal/x?y=z", "//evil", "/\\evil", "/portal/../x", "https://e/portal/", "/portal/%2e%2e/", "/portal/a#frag"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := safeNext(in)
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
			t.Fatalf("safeNext(%q) = %q: not a path on this origin (%v)", in, got, err)
		}
		if !strings.HasPrefix(got, "/portal/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\r\n\t") {
			t.Fatalf("safeNext(%q) = %q", in, got)
		}
		for _, seg := range strings.Split(u.Path, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("safeNext(%q) = %q: a dot segment", in, got)
			}
		}
	})
}
