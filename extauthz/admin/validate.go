package admin

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/oauth"
)

var (
	// modelNamePattern: what a model folder can be named (and what Envoy
	// routes on); deliberately narrow.
	modelNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	audiencePattern  = regexp.MustCompile(`^[\x21-\x7e]{1,256}$`)
)

// validScope reports whether s is models:infer, models:read,
// models:<name>:infer or oauth.ScopeIntrospect.
func validScope(s string) bool {
	if s == check.ScopeInfer || s == check.ScopeRead || s == oauth.ScopeIntrospect {
		return true
	}
	name, ok := strings.CutPrefix(s, "models:")
	if !ok {
		return false
	}
	name, ok = strings.CutSuffix(name, ":infer")
	return ok && modelNamePattern.MatchString(name)
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
			return fmt.Errorf("%s: %q is not a scope (models:infer, models:read, models:<model>:infer or %s)", field, s, oauth.ScopeIntrospect)
		}
	}
	return nil
}

func checkModels(models []string) error {
	if len(models) > 1024 {
		return fmt.Errorf("models: at most 1024 entries")
	}
	for _, m := range models {
		if m != "*" && !modelNamePattern.MatchString(m) {
			return fmt.Errorf("models: %q is not a model name (letters, digits, '_', '.', '-'; or \"*\")", m)
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
