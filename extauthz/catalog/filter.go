package catalog

import (
	"strings"

	"github.com/helixflow/helixflow/extauthz/check"
)

// Access is what a caller may see of the catalogue: every model, or the
// models named.
type Access struct {
	All    bool
	Models map[string]bool
}

// Allows reports whether the caller may see model.
func (a Access) Allows(model string) bool { return a.All || a.Models[model] }

// ForPerson is a person's access: a platform admin sees every model;
// anyone else what the union of their organizations' allowed scopes
// reaches (models:infer or models:read: every model; models:<m>:infer:
// m), which is what they could give a client or key of their own.
func ForPerson(platformAdmin bool, orgScopes []string) Access {
	if platformAdmin {
		return Access{All: true}
	}
	a := Access{Models: map[string]bool{}}
	for _, s := range orgScopes {
		switch {
		case s == check.ScopeInfer || s == check.ScopeRead:
			return Access{All: true}
		default:
			if m, ok := modelOfScope(s); ok {
				a.Models[m] = true
			}
		}
	}
	return a
}

// ForClient is a machine caller's access, as Check would judge a request
// on each model: models:read or models:infer reach the client's model list
// ("*": every model); models:<m>:infer reaches m when the list holds it.
func ForClient(p *check.Principal) Access {
	if p == nil {
		return Access{}
	}
	all := false
	listed := map[string]bool{}
	for _, m := range p.Models {
		if m == check.AllModels {
			all = true
		}
		listed[m] = true
	}
	a := Access{Models: map[string]bool{}}
	for _, s := range p.Scopes {
		switch {
		case s == check.ScopeInfer || s == check.ScopeRead:
			if all {
				return Access{All: true}
			}
			for m := range listed {
				a.Models[m] = true
			}
		default:
			if m, ok := modelOfScope(s); ok && (all || listed[m]) {
				a.Models[m] = true
			}
		}
	}
	delete(a.Models, check.AllModels)
	return a
}

// modelOfScope returns m of "models:<m>:infer".
func modelOfScope(s string) (string, bool) {
	m, ok := strings.CutPrefix(s, "models:")
	if !ok {
		return "", false
	}
	m, ok = strings.CutSuffix(m, ":infer")
	return m, ok && m != ""
}

// Filter returns the models a may see, in models' order (a new slice;
// models is not changed).
func Filter(models []Model, a Access) []Model {
	out := make([]Model, 0, len(models))
	for _, m := range models {
		if a.Allows(m.Name) {
			out = append(out, m)
		}
	}
	return out
}
