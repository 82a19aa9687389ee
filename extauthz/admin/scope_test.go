package admin

import (
	"testing"

	"github.com/helixflow/helixflow/extauthz/oauth"
)

// A client can be given the introspection scope; nothing else under
// "helix:" is a scope.
func TestValidScopeIntrospect(t *testing.T) {
	for s, want := range map[string]bool{
		oauth.ScopeIntrospect: true,
		"helix:":              false,
		"helix:admin":         false,
		"helix:introspect ":   false,
	} {
		if got := validScope(s); got != want {
			t.Errorf("validScope(%q) = %v, want %v", s, got, want)
		}
	}
}
