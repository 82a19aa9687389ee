package wire

import (
	"net/url"
	"strings"
	"testing"
	"unicode"
)

// FuzzCheckModelName: an accepted name holds none of the characters the
// rule refuses, and every accepted name survives the REST path round trip
// (build, split, parse) unchanged: the gateway's route and the worker's
// parser name the same model.
func FuzzCheckModelName(f *testing.F) {
	for _, s := range []string{"simple", "my model", "a/b", "a%2Fb", "..", ".x", "é", "*", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckModelName(name) != nil {
			return
		}
		if strings.ContainsAny(name, `/\*`) || strings.Contains(name, "..") || strings.HasPrefix(name, ".") ||
			strings.IndexFunc(name, unicode.IsSpace) >= 0 || len(name) > MaxModelNameBytes {
			t.Fatalf("accepted %q", name)
		}
		segs, err := SplitPath(RESTModelPath(name, "1", "infer"))
		if err != nil {
			t.Fatalf("path of %q: %v", name, err)
		}
		r, ok := ParseModelRoute(segs[2:])
		if !ok || r.Model != name || r.Version != "1" || len(r.Rest) != 1 || r.Rest[0] != "infer" {
			t.Fatalf("path of %q parsed as %+v, %v", name, r, ok)
		}
	})
}

// FuzzParsePath: any path splits and parses without panicking, and a model
// route whose model is valid builds back to a path that parses the same.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/v2/models/simple/versions/1/infer", "/v2/models/a%2Fb/ready", "/v2/models/", "/v2/models/%zz", "/v2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		segs, err := SplitPath(path)
		if err != nil || len(segs) < 2 || segs[0] != "v2" || segs[1] != "models" {
			return
		}
		r, ok := ParseModelRoute(segs[2:])
		if !ok || CheckModelName(r.Model) != nil {
			return
		}
		for _, s := range r.Rest {
			if url.PathEscape(s) != s {
				return // the builder takes tail segments as they are
			}
		}
		again, err := SplitPath(RESTModelPath(r.Model, r.Version, r.Rest...))
		if err != nil {
			t.Fatalf("rebuilt path of %+v: %v", r, err)
		}
		r2, ok := ParseModelRoute(again[2:])
		if !ok || r2.Model != r.Model || r2.Version != r.Version || strings.Join(r2.Rest, "/") != strings.Join(r.Rest, "/") {
			t.Fatalf("%q parsed as %+v, rebuilt as %+v", path, r, r2)
		}
	})
}
