package catalog

import (
	"slices"
	"testing"

	"github.com/helixflow/helixflow/extauthz/check"
)

var names = []string{"a", "b", "c:d", "simple"}

func visible(a Access) []string {
	var out []string
	for _, n := range names {
		if a.Allows(n) {
			out = append(out, n)
		}
	}
	return out
}

func TestForPerson(t *testing.T) {
	tests := []struct {
		name   string
		admin  bool
		scopes []string
		want   []string
	}{
		{"platform admin sees all", true, nil, names},
		{"no organization sees nothing", false, nil, nil},
		{"models:infer", false, []string{"models:infer"}, names},
		{"models:read", false, []string{"account", "models:read"}, names},
		{"per-model scopes", false, []string{"models:a:infer", "models:c:d:infer", "models:zzz:infer"}, []string{"a", "c:d"}},
		{"not model scopes", false, []string{"models:a:read", "models::infer", "helix:admin", "models:*:infer", "a"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := visible(ForPerson(tt.admin, tt.scopes)); !slices.Equal(got, tt.want) {
				t.Fatalf("visible = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestForClient(t *testing.T) {
	tests := []struct {
		name   string
		scopes []string
		models []string
		want   []string
	}{
		{"read on every model", []string{check.ScopeRead}, []string{"*"}, names},
		{"infer on listed models", []string{check.ScopeInfer}, []string{"a", "simple", "gone"}, []string{"a", "simple"}},
		{"per-model scope and all models", []string{"models:b:infer"}, []string{"*"}, []string{"b"}},
		{"per-model scope needs the list", []string{"models:b:infer", "models:a:infer"}, []string{"a"}, []string{"a"}},
		{"empty list reaches nothing", []string{check.ScopeInfer}, nil, nil},
		{"no model scope", []string{"account"}, []string{"*"}, nil},
		{"the wildcard is not a model", []string{check.ScopeRead}, []string{"*", "a"}, names},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := visible(ForClient(&check.Principal{ClientID: "c", Scopes: tt.scopes, Models: tt.models}))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("visible = %v, want %v", got, tt.want)
			}
		})
	}
	if a := ForClient(nil); a.All || len(a.Models) != 0 {
		t.Fatal("nil principal sees models")
	}
}

func TestFilterKeepsOrder(t *testing.T) {
	in := []Model{{Name: "a"}, {Name: "b"}, {Name: "simple"}}
	got := Filter(in, Access{Models: map[string]bool{"simple": true, "a": true}})
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "simple" || len(in) != 3 {
		t.Fatalf("Filter = %v", got)
	}
}

// FuzzScopes: any scope list gives an access without panicking, never
// reaching a model a per-model scope does not name unless a whole-
// catalogue scope is held; and modelOfScope inverts check.ModelInferScope.
func FuzzScopes(f *testing.F) {
	for _, s := range []string{"models:a:infer", "models:infer", "models::infer", "models:a:b:infer", "x"} {
		f.Add(s, "a")
	}
	f.Fuzz(func(t *testing.T, scope, model string) {
		a := ForPerson(false, []string{scope})
		if a.All != (scope == check.ScopeInfer || scope == check.ScopeRead) {
			t.Fatalf("scope %q: All = %v", scope, a.All)
		}
		if !a.All && a.Allows(model) && check.ModelInferScope(model) != scope {
			t.Fatalf("scope %q reaches model %q", scope, model)
		}
		if model != "" {
			if m, ok := modelOfScope(check.ModelInferScope(model)); !ok || m != model {
				t.Fatalf("modelOfScope(ModelInferScope(%q)) = %q, %v", model, m, ok)
			}
		}
		c := ForClient(&check.Principal{Scopes: []string{scope}, Models: []string{model}})
		if c.All && model != check.AllModels {
			t.Fatalf("client with list [%q] sees all", model)
		}
	})
}

// FuzzConfigJSON: whatever a worker sends as its config, the model's JSON
// stays valid.
func FuzzConfigJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[]`, `null`, `{"a":`, "\xff", `"x"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		m := Model{Name: "m", Config: configJSON(raw)}
		if _, err := jsonMarshal(m); err != nil {
			t.Fatalf("config %q: %v", raw, err)
		}
	})
}
