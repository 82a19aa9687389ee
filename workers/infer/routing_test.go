package infer

import (
	"errors"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/wire"
)

func TestReadRouting(t *testing.T) {
	for _, tc := range []struct {
		name             string
		versions, shadow []string
		want             Routing
		errPart          string // else: INVALID_ARGUMENT with this
	}{
		{name: "none"},
		{name: "version", versions: []string{"2"}, want: Routing{Version: "2"}},
		{name: "version as written", versions: []string{"007"}, want: Routing{Version: "007"}},
		{name: "shadow", shadow: []string{"1"}, want: Routing{Shadow: true}},
		{name: "both", versions: []string{"3"}, shadow: []string{"1"}, want: Routing{Version: "3", Shadow: true}},
		{name: "empty version", versions: []string{""}, errPart: "header x-helix-model-version: not a valid model version: empty"},
		{name: "not digits", versions: []string{"v1"}, errPart: "header x-helix-model-version: not a valid model version: want decimal digits"},
		{name: "too long", versions: []string{strings.Repeat("9", 19)}, errPart: "header x-helix-model-version: not a valid model version: 19 digits"},
		{name: "two versions", versions: []string{"1", "2"}, errPart: "request carries 2 x-helix-model-version headers; the gateway sets one"},
		{name: "shadow 0", shadow: []string{"0"}, errPart: `header x-helix-shadow is "0"; the gateway sets 1`},
		{name: "shadow empty", shadow: []string{""}, errPart: `header x-helix-shadow is ""; the gateway sets 1`},
		{name: "two shadows", shadow: []string{"1", "1"}, errPart: "request carries 2 x-helix-shadow headers; the gateway sets one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadRouting(tc.versions, tc.shadow)
			if tc.errPart != "" {
				if err == nil || CodeOf(err) != CodeInvalidArgument || !strings.Contains(err.Error(), tc.errPart) {
					t.Fatalf("err = %v (%v), want INVALID_ARGUMENT with %q", err, CodeOf(err), tc.errPart)
				}
				if len(tc.versions) == 1 && !errors.Is(err, wire.ErrVersion) {
					t.Errorf("err %v does not wrap wire.ErrVersion", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ReadRouting = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestRoutingVersionFor(t *testing.T) {
	for _, tc := range []struct {
		policy, requested, want string
	}{
		{"", "", ""},
		{"2", "", "2"},
		{"2", "1", "1"},
		{"", "1", "1"},
	} {
		if got := (Routing{Version: tc.policy}).VersionFor(tc.requested); got != tc.want {
			t.Errorf("Routing{%q}.VersionFor(%q) = %q, want %q", tc.policy, tc.requested, got, tc.want)
		}
	}
}

func TestReadRoutingAllocs(t *testing.T) {
	v, s := []string{"2"}, []string{"1"}
	if n := testing.AllocsPerRun(100, func() { _, _ = ReadRouting(v, s) }); n != 0 {
		t.Errorf("ReadRouting allocates %v times, want 0 (every inference request reads it)", n)
	}
}

// FuzzReadRouting: whatever Envoy (or anything in front of a worker
// reached directly) sends, an accepted version is a version and only "1"
// is a shadow.
func FuzzReadRouting(f *testing.F) {
	f.Add("2", "1", false)
	f.Add("007", "", true)
	f.Add("", "0", false)
	f.Fuzz(func(t *testing.T, version, shadow string, twice bool) {
		var vs, ss []string
		if version != "" {
			vs = []string{version}
		}
		if shadow != "" {
			ss = []string{shadow}
		}
		if twice {
			vs = append(vs, version)
		}
		r, err := ReadRouting(vs, ss)
		if err != nil {
			if CodeOf(err) != CodeInvalidArgument {
				t.Fatalf("error %v is not INVALID_ARGUMENT", err)
			}
			return
		}
		if r.Version != "" && wire.CheckVersion(r.Version) != nil {
			t.Fatalf("accepted version %q", r.Version)
		}
		if len(vs) > 1 || r.Shadow != (shadow == "1") {
			t.Fatalf("ReadRouting(%q, %q) = %+v", vs, ss, r)
		}
	})
}
