package check

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
)

// The chart's client certificates carry their identity (_identity.tpl,
// generated from internal/identity): Envoy's, helix-authz's towards
// helix-xds (the model catalogue) and each worker pool's towards
// helix-authz (the usage ledger). A client certificate without an
// identity is reported.
func TestClientIdentities(t *testing.T) {
	base, err := ReadValues(filepath.Join(testValuesDir, "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := renderObjects(t, base)
	uris := map[string][]string{}
	for _, o := range objs {
		switch c := o.Obj.(type) {
		case *certmanagerv1.Certificate:
			if slices.Contains(c.Spec.Usages, certmanagerv1.UsageClientAuth) {
				uris[c.Spec.CommonName] = c.Spec.URIs
			}
		case *appsv1.Deployment:
			for _, a := range c.Spec.Template.Spec.Containers[0].Args {
				if strings.HasPrefix(a, "--client-ids=") {
					t.Errorf("%s: %s (helix-ratelimit's flag)", o, a)
				}
			}
		}
	}
	want := map[string][]string{
		"helixflow-envoy":      {"spiffe://helixflow.local/envoy"},
		"helixflow-authz":      {"spiffe://helixflow.local/helix-authz"}, // towards helix-xds's model catalogue
		"helixflow-worker-cpu": {"spiffe://helixflow.local/worker/cpu"},  // pool cpu towards helix-authz's usage ledger
	}
	if !maps.EqualFunc(uris, want, slices.Equal) {
		t.Errorf("client certificates' URIs: %v, want %v", uris, want)
	}
	for _, o := range objs {
		if c, ok := o.Obj.(*certmanagerv1.Certificate); ok && c.Spec.CommonName == "helixflow-envoy" {
			c.Spec.URIs = nil
		}
	}
	errs := Policy(objs)
	if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), "needs exactly one spiffe:// URI") }) {
		t.Errorf("a client certificate without an identity passed: %v", errs)
	}
}
