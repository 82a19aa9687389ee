package wire

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCheckModelName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // "" = valid, else a part of the error
	}{
		{"simple", ""},
		{"densenet_onnx", ""},
		{"bert.base", ""},
		{"a-b:c@1", ""},
		{"é", ""},
		{"模型", ""},
		{strings.Repeat("n", 255), ""},
		{"", "empty"},
		{strings.Repeat("n", 256), "256 bytes, at most 255"},
		{"a\xffb", "not valid UTF-8"},
		{".", "starts with '.'"},
		{".hidden", "starts with '.'"},
		{"..", "starts with '.'"},
		{"a..b", `contains ".."`},
		{"my model", "byte 2 is ' ', white space"},
		{"a\tb", "white space"},
		{"a\u00a0b", "white space"},
		{"a/b", "path separator"},
		{`a\b`, "path separator"},
		{"*", "wildcard"},
		{"a*", "wildcard"},
		{"a\x00b", "not printable"},
		{"a\x7fb", "not printable"},
		{"a\ufffdb", "not printable"},
		{"a\u200bb", "not printable"},
	} {
		wantErr(t, "CheckModelName", tc.name, CheckModelName(tc.name), ErrModelName, tc.want)
	}
}

// wantErr fails unless err is nil for want "", else a sentinel error
// saying want.
func wantErr(t *testing.T, fn, in string, err, sentinel error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s(%q) = %v, want nil", fn, in, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, sentinel)):
		t.Errorf("%s(%q) = %v, want %v saying %q", fn, in, err, sentinel, want)
	}
}

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want string
	}{
		{"1", ""},
		{"0", ""},
		{"007", ""},
		{strings.Repeat("9", 18), ""},
		{"", "empty"},
		{strings.Repeat("9", 19), "19 digits"},
		{"-1", "decimal digits"},
		{"1.0", "decimal digits"},
		{"v1", "decimal digits"},
	} {
		wantErr(t, "CheckVersion", tc.v, CheckVersion(tc.v), ErrVersion, tc.want)
	}
}

func TestRESTModelPath(t *testing.T) {
	for _, tc := range []struct {
		model, version string
		tail           []string
		want           string
	}{
		{"simple", "", nil, "/v2/models/simple"},
		{"simple", "", []string{"ready"}, "/v2/models/simple/ready"},
		{"simple", "3", []string{"infer"}, "/v2/models/simple/versions/3/infer"},
		{"bert.base", "", []string{"config"}, "/v2/models/bert.base/config"},
		{"a:b@c", "", nil, "/v2/models/a:b@c"},
		{"é", "", nil, "/v2/models/%C3%A9"},
	} {
		if got := RESTModelPath(tc.model, tc.version, tc.tail...); got != tc.want {
			t.Errorf("RESTModelPath(%q, %q, %q) = %q, want %q", tc.model, tc.version, tc.tail, got, tc.want)
		}
	}
}

func TestSplitPathAndParseModelRoute(t *testing.T) {
	for _, tc := range []struct {
		path    string
		segs    []string // nil = SplitPath fails
		route   *ModelRoute
		noModel bool
	}{
		{path: "/v2", segs: []string{"v2"}},
		{path: "/v2/models/simple/infer", segs: []string{"v2", "models", "simple", "infer"},
			route: &ModelRoute{Model: "simple", Rest: []string{"infer"}}},
		{path: "/v2/models/simple/versions/007/ready", segs: []string{"v2", "models", "simple", "versions", "007", "ready"},
			route: &ModelRoute{Model: "simple", Version: "007", Rest: []string{"ready"}}},
		{path: "/v2/models/a%2Fb/infer", segs: []string{"v2", "models", "a/b", "infer"},
			route: &ModelRoute{Model: "a/b", Rest: []string{"infer"}}},
		{path: "/v2/models/simple/versions/x/infer", segs: []string{"v2", "models", "simple", "versions", "x", "infer"},
			route: &ModelRoute{Model: "simple", Rest: []string{"versions", "x", "infer"}}},
		{path: "/v2/models/simple", segs: []string{"v2", "models", "simple"},
			route: &ModelRoute{Model: "simple", Rest: []string{}}},
		{path: "/v2/models/", segs: []string{"v2", "models", ""}, noModel: true},
		{path: "/v2/models/%zz/infer"},
		{path: "v2/models"},
		{path: "/v2/models/a#b"},
		{path: "/v2/models/a?b"},
	} {
		segs, err := SplitPath(tc.path)
		if tc.segs == nil {
			if err == nil || !errors.Is(err, ErrPath) {
				t.Errorf("SplitPath(%q) = %q, %v; want ErrPath", tc.path, segs, err)
			}
			continue
		}
		if err != nil || !slices.Equal(segs, tc.segs) {
			t.Errorf("SplitPath(%q) = %q, %v; want %q", tc.path, segs, err, tc.segs)
			continue
		}
		if tc.route == nil && !tc.noModel {
			continue
		}
		r, ok := ParseModelRoute(segs[2:])
		if tc.noModel {
			if ok {
				t.Errorf("ParseModelRoute(%q) = %+v, want no model", segs[2:], r)
			}
			continue
		}
		if !ok || r.Model != tc.route.Model || r.Version != tc.route.Version || !slices.Equal(r.Rest, tc.route.Rest) {
			t.Errorf("ParseModelRoute(%q) = %+v, %v; want %+v", segs[2:], r, ok, *tc.route)
		}
	}
}

func TestCredentialID(t *testing.T) {
	for _, c := range []struct {
		id   CredentialID
		text string
	}{
		{CredentialID{Token: "t1"}, "jti:t1"},
		{CredentialID{Token: "t1", Session: "s1"}, "jti:t1;sid:s1"},
		{CredentialID{APIKey: "abc"}, "key:abc"},
		{CredentialID{}, ""},
		{CredentialID{Token: "t", APIKey: "k"}, ""},
		{CredentialID{APIKey: "k", Session: "s"}, ""},
		{CredentialID{Session: "s"}, ""},
	} {
		if got := c.id.String(); got != c.text {
			t.Errorf("%+v.String() = %q, want %q", c.id, got, c.text)
		}
		if c.text == "" {
			continue
		}
		if back, ok := ParseCredentialID(c.text); !ok || back != c.id {
			t.Errorf("ParseCredentialID(%q) = %+v, %v; want %+v", c.text, back, ok, c.id)
		}
	}
	for _, bad := range []string{"", "jti:", "key:", "sid:x", "jti:a;sid:", "jti:a;sid:b;sid:c", "key:a;sid:b", "jti:a b", "JTI:a", "jti:a;;sid:b"} {
		if c, ok := ParseCredentialID(bad); ok {
			t.Errorf("ParseCredentialID(%q) = %+v, accepted", bad, c)
		}
	}
}

func FuzzCredentialID(f *testing.F) {
	for _, s := range []string{"jti:t", "jti:t;sid:s", "key:k", "sid:x", "jti:a;sid:b;sid:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseCredentialID(s)
		if ok && c.String() != s {
			t.Fatalf("ParseCredentialID(%q) = %+v, which writes %q", s, c, c.String())
		}
	})
}
