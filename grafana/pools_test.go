package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestPoolSelectors: the model panels count a model's own clusters only,
// never a traffic policy's variant clusters (stat names
// helix-model-grpc_<model>/<variant>, xds/translate.ClusterStatName), even
// with "All" ($model .*) or a model whose name ends in _<variant>; the
// variant panels see only variants, and byVariant reads model and variant
// back. Prometheus anchors label regexes, as done here.
func TestPoolSelectors(t *testing.T) {
	matches := func(selector, model, name string) bool {
		t.Helper()
		ok := true
		for _, m := range regexp.MustCompile(`(=~|!~)"([^"]+)"`).FindAllStringSubmatch(selector, -1) {
			re := regexp.MustCompile("^(?:" + strings.ReplaceAll(m[2], "$model", model) + ")$")
			ok = ok && re.MatchString(name) == (m[1] == "=~")
		}
		return ok
	}
	for _, tc := range []struct {
		name, model        string
		isModel, isVariant bool
	}{
		{"helix-model-grpc_simple", ".*", true, false},
		{"helix-model-http-seq_simple", ".*", true, false},
		{"helix-model-grpc_simple_canary", ".*", true, false},
		{"helix-model-grpc_simple/canary", ".*", false, true},
		{"helix-model-http_simple/stable-2", ".*", false, true},
		{"helix-model-grpc_simple/canary", "simple", false, true},
		{"helix-model-grpc_simple_canary", "simple", false, false},
		{"helix-model-grpc_simple/canary", "simple_canary", false, false},
		{"helix-authz", ".*", false, false},
	} {
		if got := matches(modelPools, tc.model, tc.name); got != tc.isModel {
			t.Errorf("modelPools with $model %s matches %s: %v, want %v", tc.model, tc.name, got, tc.isModel)
		}
		if got := matches(variantPools, tc.model, tc.name); got != tc.isVariant {
			t.Errorf("variantPools with $model %s matches %s: %v, want %v", tc.model, tc.name, got, tc.isVariant)
		}
	}
	// byVariant's label_replace regexes: model and variant of a name.
	exprs := regexp.MustCompile(`"envoy_cluster_name", "([^"]+)"`).FindAllStringSubmatch(byVariant("x"), -1)
	if len(exprs) != 2 {
		t.Fatalf("byVariant: %d label_replace regexes", len(exprs))
	}
	for i, want := range []string{"simple_x", "canary"} {
		m := regexp.MustCompile("^(?:" + exprs[i][1] + ")$").FindStringSubmatch("helix-model-grpc_simple_x/canary")
		if len(m) != 2 || m[1] != want {
			t.Errorf("byVariant regex %s: %q, want %q", exprs[i][1], m, want)
		}
	}
}
