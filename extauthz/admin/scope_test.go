package admin

import (
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/oauth"
)

// A client can be given the introspection scope, and an app people sign
// in to the people's scopes (account, helix:admin); nothing else under
// "helix:" is a scope.
func TestValidScopeIntrospect(t *testing.T) {
	for s, want := range map[string]bool{
		oauth.ScopeIntrospect: true,
		oauth.ScopeAdmin:      true,
		oauth.ScopeAccount:    true,
		"helix:":              false,
		"helix:admins":        false,
		"helix:introspect ":   false,
	} {
		if got := validScope(s); got != want {
			t.Errorf("validScope(%q) = %v, want %v", s, got, want)
		}
	}
}

// Model names follow internal/wire, as the gateway and the workers do, so
// that every model a worker can serve can be granted; per-model scopes are
// also RFC 6749 scope tokens.
func TestModelNamesFollowWire(t *testing.T) {
	for s, want := range map[string]bool{
		"models:simple:infer":                true,
		"models:resnet_v1.5:infer":           true,
		"models:a:b:infer":                   true,
		"models::infer":                      false,
		"models:..:infer":                    false,
		"models:a/b:infer":                   false,
		"models:*:infer":                     false,
		"models:café:infer":                  false, // a valid model, but not an RFC 6749 scope token
		"models:say\"hi\":infer":             false,
		"models:" + longName(256) + ":infer": false,
	} {
		if got := validScope(s); got != want {
			t.Errorf("validScope(%q) = %v, want %v", s, got, want)
		}
	}
	for _, tt := range []struct {
		models []string
		ok     bool
	}{
		{[]string{"simple", "*"}, true},
		{[]string{"café", "_private", "v2-model"}, true},
		{[]string{".hidden"}, false},
		{[]string{"a b"}, false},
		{[]string{""}, false},
		{[]string{longName(256)}, false},
	} {
		if err := checkModels(tt.models); (err == nil) != tt.ok {
			t.Errorf("checkModels(%q) = %v, want ok %v", tt.models, err, tt.ok)
		}
	}
}

func longName(n int) string { return strings.Repeat("m", n) }
