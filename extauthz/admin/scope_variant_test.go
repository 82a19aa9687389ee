package admin

import (
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/internal/wire"
)

// The variant-override scope (helix-variant, docs/authz.md) can be given
// to a client, a key or an organization's policy; near misses cannot, and
// the error lists it among the scopes.
func TestValidScopeVariantOverride(t *testing.T) {
	for _, tc := range []struct {
		scope string
		want  bool
	}{
		{wire.ScopeVariantOverride, true},
		{check.ScopeVariantOverride, true},
		{"models:variant-override:infer", true}, // a model named variant-override
		{"models:variant-overrides", false},
		{"models:Variant-Override", false},
		{"models:variant-override ", false},
		{"variant-override", false},
	} {
		if got := validScope(tc.scope); got != tc.want {
			t.Errorf("validScope(%q) = %v, want %v", tc.scope, got, tc.want)
		}
	}
	if err := checkScopes("scopes", []string{check.ScopeInfer, wire.ScopeVariantOverride}); err != nil {
		t.Errorf("checkScopes: %v", err)
	}
	err := checkScopes("allowed_scopes", []string{"models:variant"})
	if err == nil || !strings.Contains(err.Error(), `allowed_scopes: "models:variant" is not a scope`) || !strings.Contains(err.Error(), wire.ScopeVariantOverride) {
		t.Errorf("checkScopes(models:variant) = %v, want the field, the value and the scope list naming %s", err, wire.ScopeVariantOverride)
	}
}
