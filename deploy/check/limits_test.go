package check

import (
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestWorkersAskLimits: each worker pool asks helix-authz's Limits (the
// per-message plan limits of streams) at the usage ledger's address with
// the same files; with the ledger off the limits still get the path, the
// certificate and the files, and only --usage-address goes.
func TestWorkersAskLimits(t *testing.T) {
	authzAddr := ReleaseName + "-helixflow-authz." + Namespace + ".svc:9001"
	base, err := ReadValues(filepath.Join(testValuesDir, "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		usage, limits bool
	}{
		{"both", true, true},
		{"limits alone", false, true},
		{"usage alone", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderObjects(t, mergeValues(base, map[string]any{"usage": map[string]any{"enabled": tc.usage}, "limits": map[string]any{"enabled": tc.limits}}))
			if errs := Policy(objs); len(errs) > 0 {
				t.Fatalf("policy: %v", errs)
			}
			for pool, d := range workerDeployments(t, objs) {
				args := d.Spec.Template.Spec.Containers[0].Args
				got, ok := argValue(args, "limits-address")
				if ok != tc.limits || (ok && got != authzAddr) {
					t.Errorf("pool %s: --limits-address=%q (present %t), want %q present %t", pool, got, ok, authzAddr, tc.limits)
				}
				if _, ok := argValue(args, "usage-address"); ok != tc.usage {
					t.Errorf("pool %s: --usage-address present %t, want %t", pool, ok, tc.usage)
				}
				for _, f := range []string{"usage-ca-file", "usage-cert-file", "usage-key-file", "usage-server-name"} {
					if _, ok := argValue(args, f); !ok {
						t.Errorf("pool %s: --%s missing", pool, f)
					}
				}
				if !slices.ContainsFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "usage-tls" }) {
					t.Errorf("pool %s: no usage-tls volume", pool)
				}
			}
		})
	}
}
