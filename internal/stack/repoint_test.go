package stack

import (
	"slices"
	"testing"

	"github.com/helixflow/helixflow/internal/supervise"
)

func TestSetDatabaseURL(t *testing.T) {
	s := &Stack{specs: map[string]supervise.Spec{
		Authz:        {Name: Authz, Env: []string{"A=1", "HELIX_DATABASE_URL=old"}},
		AuthzReplica: {Name: AuthzReplica, Env: []string{"HELIX_DATABASE_URL=old"}},
		XDS:          {Name: XDS, Env: []string{"HELIX_DATABASE_URL=untouched"}},
	}}
	shared := s.specs[Authz].Env
	s.SetDatabaseURL("new")
	for name, want := range map[string][]string{
		Authz:        {"A=1", "HELIX_DATABASE_URL=new"},
		AuthzReplica: {"HELIX_DATABASE_URL=new"},
		XDS:          {"HELIX_DATABASE_URL=untouched"},
	} {
		if got := s.specs[name].Env; !slices.Equal(got, want) {
			t.Errorf("%s env = %q, want %q", name, got, want)
		}
	}
	if s.DatabaseURL != "new" || shared[1] != "HELIX_DATABASE_URL=old" {
		t.Errorf("DatabaseURL %q; the old spec's env changed under it: %q", s.DatabaseURL, shared)
	}
}
