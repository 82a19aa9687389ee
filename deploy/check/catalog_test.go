package check

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// TestAuthzReadsTheCatalogue: helix-authz reaches helix-xds's gRPC port
// (the model catalogue, GET /api/v1/models) with its own client
// certificate (identity helix-authz, the only one helix-xds's Catalog
// admits), from cert-manager or an existing Secret; with NetworkPolicies
// on, helix-authz and Envoy reach helix-xds's port 18000 and no worker
// does (the chart's workers do not register: EndpointSlices).
func TestAuthzReadsTheCatalogue(t *testing.T) {
	xds := ReleaseName + "-helixflow-xds." + Namespace + ".svc:18000"
	for _, tc := range []struct{ file, secret string }{
		{"minimal.yaml", ReleaseName + "-helixflow-authz-xds-client-tls"},
		{"existing-secrets.yaml", "authz-xds-client-tls"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			values, err := ReadValues(filepath.Join(testValuesDir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			objs := renderObjects(t, values)
			authz := deploymentOf(t, objs, "-authz")
			c := authz.Spec.Template.Spec.Containers[0]
			const dir = "/etc/helixflow/tls/xds-client/"
			for _, want := range []string{"--xds-address=" + xds, "--xds-ca-file=" + dir + "ca.crt", "--xds-cert-file=" + dir + "tls.crt", "--xds-key-file=" + dir + "tls.key"} {
				if !slices.Contains(c.Args, want) {
					t.Errorf("helix-authz's args lack %s", want)
				}
			}
			for _, key := range []string{"ca.crt", "tls.crt", "tls.key"} {
				if secret, k := secretFile(&authz.Spec.Template.Spec, &c, dir+key); secret != tc.secret || k != key {
					t.Errorf("%s: from Secret %q key %q, want %q key %q", dir+key, secret, k, tc.secret, key)
				}
			}
		})
	}
	values, err := ReadValues(filepath.Join(testValuesDir, "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := renderObjects(t, values)
	nps := networkPolicies(objs)
	xdsPod := podLabelsOf(t, objs, "-xds")
	for _, w := range workloads(objs) {
		want := strings.HasSuffix(w.obj.Name, "-authz") || strings.HasSuffix(w.obj.Name, "-gateway")
		if got := allows(nps, labels.Set(w.pod.Labels), peer{pod: xdsPod}, 18000); got != want {
			t.Errorf("%s -> helix-xds:18000 allowed: %t, want %t", w.obj, got, want)
		}
	}
}
