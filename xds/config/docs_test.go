package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fieldPaths walks t's yaml tags into dotted paths as the config's errors
// spell them ("listener.tls.cert_file"); a map's key is written <name>.
func fieldPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Map:
		return fieldPaths(t.Elem(), prefix+".<name>")
	case reflect.Struct:
	default:
		return nil
	}
	if t.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
		return nil // time.Duration and the like are leaves
	}
	var paths []string
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		p := tag
		if prefix != "" {
			p = prefix + "." + tag
		}
		paths = append(paths, p)
		paths = append(paths, fieldPaths(f.Type, p)...)
	}
	return paths
}

func TestFieldPaths(t *testing.T) {
	paths := fieldPaths(reflect.TypeFor[Config](), "")
	for _, want := range []string{"listener.tls.cert_file", "authz.public.tls.server_name", "plans.<name>.requests_per_minute", "worker_identities.<name>.models", "retry.num_retries"} {
		if !slices.Contains(paths, want) {
			t.Errorf("fieldPaths lacks %s: %v", want, paths)
		}
	}
}

// TestEveryFieldDocumented: each field of the gateway config file is in
// docs/gateway-config.md, spelled as its whole path in backticks, so that
// a new field cannot ship undocumented.
func TestEveryFieldDocumented(t *testing.T) {
	const doc = "../../docs/gateway-config.md"
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, p := range fieldPaths(reflect.TypeFor[Config](), "") {
		if !strings.Contains(text, "`"+p+"`") {
			t.Errorf("%s does not document the field `%s`", doc, p)
		}
	}
}
