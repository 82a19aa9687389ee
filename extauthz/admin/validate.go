package admin

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/oauth"
	"github.com/helixflow/helixflow/internal/wire"
)

var audiencePattern = regexp.MustCompile(`^[\x21-\x7e]{1,256}$`)

// scopeTokenPattern: RFC 6749 section 3.3's scope-token (NQCHAR), so that a
// granted scope can travel in a token request's space-separated list.
var scopeTokenPattern = regexp.MustCompile(`^[\x21\x23-\x5b\x5d-\x7e]{1,512}$`)

// validScope reports whether s is models:infer, models:read,
// models:<name>:infer, models:variant-override (check.ScopeVariantOverride:
// may pick a traffic policy's variant), oauth.ScopeIntrospect, or one of
// people's scopes
// (oauth.ScopeAccount, oauth.ScopeAdmin: only for a client of the
// authorization-code grant, see AppFields).
func validScope(s string) bool {
	if s == check.ScopeInfer || s == check.ScopeRead || s == check.ScopeVariantOverride || s == oauth.ScopeIntrospect ||
		s == oauth.ScopeAccount || s == oauth.ScopeAdmin {
		return true
	}
	if !scopeTokenPattern.MatchString(s) {
		return false
	}
	name, ok := strings.CutPrefix(s, "models:")
	if !ok {
		return false
	}
	name, ok = strings.CutSuffix(name, ":infer")
	return ok && wire.CheckModelName(name) == nil
}

func checkScopes(field string, scopes []string) error {
	if len(scopes) == 0 {
		return fmt.Errorf("%s: at least one scope is required", field)
	}
	if len(scopes) > 256 {
		return fmt.Errorf("%s: at most 256 scopes", field)
	}
	for _, s := range scopes {
		if !validScope(s) {
			return fmt.Errorf("%s: %q is not a scope (models:infer, models:read, models:<model>:infer, %s, %s, %s or %s)",
				field, s, check.ScopeVariantOverride, oauth.ScopeIntrospect, oauth.ScopeAccount, oauth.ScopeAdmin)
		}
	}
	return nil
}

func checkModels(models []string) error {
	if len(models) > 1024 {
		return fmt.Errorf("models: at most 1024 entries")
	}
	for _, m := range models {
		if m == "*" {
			continue
		}
		if err := wire.CheckModelName(m); err != nil {
			return fmt.Errorf("models: %q: %w (or \"*\" for every model)", m, err)
		}
	}
	return nil
}

func checkName(field, s string) error {
	if utf8.RuneCountInString(s) > 200 {
		return fmt.Errorf("%s: at most 200 characters", field)
	}
	// C0, DEL, C1 (U+009B is a terminal escape) and bidi overrides, which
	// would let a name rewrite or disguise helixctl's output.
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%s: control characters are not allowed", field)
		}
	}
	return nil
}

func checkAudience(aud []string) error {
	for _, a := range aud {
		if !audiencePattern.MatchString(a) {
			return fmt.Errorf("audience: %q is not a valid audience", a)
		}
	}
	return nil
}

// covered reports whether have grants every scope in want, by the rule
// Check applies to API keys (check.ScopeGranted).
func covered(want, have []string) bool {
	for _, w := range want {
		if !check.ScopeGranted(w, have) {
			return false
		}
	}
	return true
}
