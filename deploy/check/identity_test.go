package check

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
)

// The chart's client certificates carry their identity (_identity.tpl,
// generated from internal/identity), helix-ratelimit admits Envoy's, and a
// client certificate without an identity is reported.
func TestClientIdentities(t *testing.T) {
	base, err := ReadValues(filepath.Join(testValuesDir, "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := renderObjects(t, base)
	uris := map[string][]string{}
	var clientIDs []string
	for _, o := range objs {
		switch c := o.Obj.(type) {
		case *certmanagerv1.Certificate:
			uris[c.Spec.CommonName] = c.Spec.URIs
		case *appsv1.Deployment:
			for _, a := range c.Spec.Template.Spec.Containers[0].Args {
				if v, ok := strings.CutPrefix(a, "--client-ids="); ok {
					clientIDs = append(clientIDs, v)
				}
			}
		}
	}
	if !slices.Equal(uris["helixflow-envoy"], []string{"spiffe://helixflow.local/envoy"}) ||
		!slices.Equal(uris["helixflow-ratelimit"], []string{"spiffe://helixflow.local/helix-ratelimit"}) {
		t.Errorf("client certificates' URIs: %v", uris)
	}
	if !slices.Equal(clientIDs, []string{"spiffe://helixflow.local/envoy"}) {
		t.Errorf("helix-ratelimit --client-ids: %v", clientIDs)
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
