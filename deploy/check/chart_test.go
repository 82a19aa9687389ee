package check

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/helixflow/helixflow/xds/config"
)

const (
	chartDir      = "../helm/helixflow"
	testValuesDir = "../helm/test-values"
	repoRoot      = "../.."
)

func TestMain(m *testing.M) {
	// Helm's chart loader logs each symbolic link it follows (files/alerts,
	// files/grafana); that is intended.
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

func valueFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no values files in %s", dir)
	}
	return files
}

func renderObjects(t *testing.T, values map[string]any) []Object {
	t.Helper()
	manifest, err := Render(context.Background(), chartDir, values)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := dec.Decode(manifest)
	if err != nil {
		t.Fatalf("strict decoding:\n%v", err)
	}
	return objs
}

// TestChartMatrix lints and renders the chart with every values file in
// deploy/helm/test-values, decodes each object strictly and applies the
// policies.
func TestChartMatrix(t *testing.T) {
	for _, file := range valueFiles(t, testValuesDir) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			values, err := ReadValues(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := Lint(chartDir, values); err != nil {
				t.Errorf("lint:\n%v", err)
			}
			objs := renderObjects(t, values)
			for _, err := range Policy(objs) {
				t.Error(err)
			}
			checkGatewayConfig(t, objs)
			checkXDS(t, objs)
			checkGPUPools(t, values, objs)
			checkMonitoring(t, values, objs)
			checkAuthzPlans(t, objs)
		})
	}
}

// checkGatewayConfig parses the gateway config the chart writes with
// helix-xds's own parser.
func checkGatewayConfig(t *testing.T, objs []Object) {
	t.Helper()
	for _, o := range objs {
		cm, ok := o.Obj.(*corev1.ConfigMap)
		if !ok || !strings.HasSuffix(cm.Name, "-gateway-config") {
			continue
		}
		path := filepath.Join(t.TempDir(), "gateway.yaml")
		if _, err := config.Parse([]byte(cm.Data["gateway.yaml"]), path); err != nil {
			t.Errorf("%s: helix-xds refuses the gateway config:\n%v\n%s", o, err, cm.Data["gateway.yaml"])
		}
		return
	}
	t.Error("no gateway config ConfigMap rendered")
}

// checkAuthzPlans: helix-authz reads the gateway config helix-xds reads
// (the plans its admin API gives clients), from the same ConfigMap.
func checkAuthzPlans(t *testing.T, objs []Object) {
	t.Helper()
	for _, o := range objs {
		dep, ok := o.Obj.(*appsv1.Deployment)
		if !ok || !strings.HasSuffix(dep.Name, "-authz") {
			continue
		}
		pod := dep.Spec.Template.Spec
		if !slices.Contains(pod.Containers[0].Args, "--gateway-config=/etc/helixflow/gateway/gateway.yaml") {
			t.Errorf("helix-authz args %v lack --gateway-config", pod.Containers[0].Args)
		}
		mounted := slices.ContainsFunc(pod.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == "gateway-config" && m.MountPath == "/etc/helixflow/gateway"
		})
		fromConfigMap := slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool {
			return v.Name == "gateway-config" && v.ConfigMap != nil && strings.HasSuffix(v.ConfigMap.Name, "-gateway-config")
		})
		if !mounted || !fromConfigMap {
			t.Errorf("helix-authz does not mount the gateway-config ConfigMap at /etc/helixflow/gateway")
		}
		return
	}
	t.Error("no helix-authz Deployment rendered")
}

// checkXDS: helix-xds watches worker Services and EndpointSlices in its
// namespace, with exactly the rights it needs.
func checkXDS(t *testing.T, objs []Object) {
	t.Helper()
	var role *rbacv1.Role
	var dep *appsv1.Deployment
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *rbacv1.Role:
			if strings.HasSuffix(v.Name, "-xds") {
				role = v
			}
		case *appsv1.Deployment:
			if strings.HasSuffix(v.Name, "-xds") {
				dep = v
			}
		}
	}
	if role == nil || dep == nil {
		t.Fatal("helix-xds Role or Deployment missing")
	}
	want := map[string]bool{"/services": true, "discovery.k8s.io/endpointslices": true}
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if !want[g+"/"+res] {
					t.Errorf("Role %s grants %s/%s", role.Name, g, res)
				}
				delete(want, g+"/"+res)
			}
		}
		if !slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("Role %s: verbs %v, want get, list, watch", role.Name, r.Verbs)
		}
	}
	if len(want) > 0 {
		t.Errorf("Role %s lacks %v", role.Name, want)
	}
	args := dep.Spec.Template.Spec.Containers[0].Args
	for _, a := range []string{"--workers-source=kubernetes", "--kube-namespace=" + Namespace} {
		if !slices.Contains(args, a) {
			t.Errorf("helix-xds args %v lack %s", args, a)
		}
	}
}

// checkGPUPools: pools with gpus get the GPU limit, the GPU image and
// the GPU nodes; the others none of these.
func checkGPUPools(t *testing.T, values map[string]any, objs []Object) {
	t.Helper()
	pools, _ := dig(values, "workers", "pools").([]any)
	deps := map[string]*appsv1.Deployment{}
	for _, o := range objs {
		if d, ok := o.Obj.(*appsv1.Deployment); ok {
			deps[d.Name] = d
		}
	}
	for _, p := range pools {
		pool := p.(map[string]any)
		name := pool["name"].(string)
		d := findSuffix(deps, "-worker-"+name)
		if d == nil {
			t.Errorf("pool %s: no Deployment", name)
			continue
		}
		gpus, _ := pool["gpus"].(float64)
		if g := gpuLimit(&d.Spec.Template); g != int64(gpus) {
			t.Errorf("pool %s: %d GPUs in the pod, values ask for %v", name, g, gpus)
		}
		cuda := strings.Contains(d.Spec.Template.Spec.Containers[0].Image, "helix-worker-cuda")
		if cuda != (gpus > 0) {
			t.Errorf("pool %s: image %s for %v GPUs", name, d.Spec.Template.Spec.Containers[0].Image, gpus)
		}
		if gpus > 0 {
			sel, _ := dig(values, "gpu", "nodeSelector").(map[string]any)
			for k, v := range sel {
				if d.Spec.Template.Spec.NodeSelector[k] != v {
					t.Errorf("pool %s: nodeSelector %v lacks %s=%v", name, d.Spec.Template.Spec.NodeSelector, k, v)
				}
			}
		}
	}
}

// checkMonitoring: one PrometheusRule per rule file in alerts/ (with the
// same groups), one ConfigMap per dashboard in grafana/.
func checkMonitoring(t *testing.T, values map[string]any, objs []Object) {
	t.Helper()
	rules := map[string]*monitoringv1.PrometheusRule{}
	dashboards := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *monitoringv1.PrometheusRule:
			rules[v.Annotations["helixflow.io/source"]] = v
		case *corev1.ConfigMap:
			if src := v.Annotations["helixflow.io/source"]; src != "" {
				dashboards[src] = v
			}
		}
	}
	if on, _ := dig(values, "monitoring", "prometheusRule", "enabled").(bool); on {
		want := ruleFiles(t)
		for path, groups := range want {
			r, ok := rules[path]
			if !ok {
				t.Errorf("rule file %s: no PrometheusRule", path)
				continue
			}
			if len(r.Spec.Groups) != groups {
				t.Errorf("rule file %s: %d groups in the PrometheusRule, %d in the file", path, len(r.Spec.Groups), groups)
			}
		}
		if len(rules) != len(want) {
			t.Errorf("%d PrometheusRules for %d rule files", len(rules), len(want))
		}
	} else if len(rules) > 0 {
		t.Errorf("PrometheusRules rendered with monitoring.prometheusRule.enabled false")
	}
	if on, _ := dig(values, "monitoring", "dashboards", "enabled").(bool); on {
		want := dashboardFiles(t)
		for _, path := range want {
			if _, ok := dashboards[path]; !ok {
				t.Errorf("dashboard %s: no ConfigMap", path)
			}
		}
		if len(dashboards) != len(want) {
			t.Errorf("%d dashboard ConfigMaps for %d dashboards", len(dashboards), len(want))
		}
	}
}

// ruleFiles finds the Prometheus rule files under alerts/ independently of
// the chart: YAML files with a top-level groups list. Keys are paths as the
// chart names them (alerts/...).
func ruleFiles(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	walkRepo(t, "alerts", func(rel string, b []byte) {
		if ext := filepath.Ext(rel); ext != ".yml" && ext != ".yaml" {
			return
		}
		var doc struct {
			Groups []any `json:"groups"`
		}
		if err := yaml.Unmarshal(b, &doc); err == nil && doc.Groups != nil {
			out[rel] = len(doc.Groups)
		}
	})
	return out
}

func dashboardFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	walkRepo(t, "grafana", func(rel string, b []byte) {
		if filepath.Ext(rel) != ".json" {
			return
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err == nil {
			if _, ok := doc["panels"]; ok {
				out = append(out, rel)
			}
		}
	})
	return out
}

func walkRepo(t *testing.T, dir string, fn func(rel string, b []byte)) {
	t.Helper()
	root := filepath.Join(repoRoot, dir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		fn(filepath.ToSlash(rel), b)
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}

// TestChartBadValues renders each file in deploy/helm/test-values/bad on
// top of minimal.yaml; each must fail with the messages its "# want:"
// lines name.
func TestChartBadValues(t *testing.T) {
	base, err := ReadValues(filepath.Join(testValuesDir, "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range valueFiles(t, filepath.Join(testValuesDir, "bad")) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for line := range strings.Lines(string(b)) {
				if w, ok := strings.CutPrefix(strings.TrimSpace(line), "# want:"); ok {
					wants = append(wants, strings.TrimSpace(w))
				}
			}
			if len(wants) == 0 {
				t.Fatalf("%s: no '# want:' line", file)
			}
			overlay, err := ReadValues(file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Render(context.Background(), chartDir, mergeValues(base, overlay))
			if err == nil {
				t.Fatalf("rendered; want an error naming %q", wants)
			}
			for _, w := range wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestChartDefaultsNeedSettings: the chart's own defaults name what must
// be set instead of rendering something that cannot run.
func TestChartDefaultsNeedSettings(t *testing.T) {
	_, err := Render(context.Background(), chartDir, nil)
	if err == nil || !strings.Contains(err.Error(), "images.registry: required") {
		t.Fatalf("defaults: got %v, want an error naming images.registry", err)
	}
}

// TestPolicyCatchesViolations feeds the policy objects that break each rule.
func TestPolicyCatchesViolations(t *testing.T) {
	base, err := ReadValues(filepath.Join(testValuesDir, "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type mutate func(d *appsv1.Deployment)
	cases := []struct {
		name string
		mut  mutate
		want string
	}{
		{"root", func(d *appsv1.Deployment) { zero := int64(0); d.Spec.Template.Spec.SecurityContext.RunAsUser = &zero }, "runAsUser is 0"},
		{"writable root fs", func(d *appsv1.Deployment) {
			f := false
			d.Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = &f
		}, "readOnlyRootFilesystem"},
		{"privileged", func(d *appsv1.Deployment) {
			p := true
			d.Spec.Template.Spec.Containers[0].SecurityContext.Privileged = &p
		}, "privileged"},
		{"latest", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "registry.example.com/x:latest" }, "not a version"},
		{"untagged", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "registry.example.com:5000/x" }, "no tag and no digest"},
		{"no requests", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Resources = corev1.ResourceRequirements{}
		}, "resources.requests.cpu"},
		{"no probes", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].StartupProbe = nil }, "probes are all required"},
		{"host network", func(d *appsv1.Deployment) { d.Spec.Template.Spec.HostNetwork = true }, "hostNetwork"},
		{"literal secret", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Env = append(d.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "REDIS_PASSWORD", Value: "hunter2"})
		}, "literal value"},
		{"gpu without toleration", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Tolerations = nil
			c := &d.Spec.Template.Spec.Containers[0]
			c.Resources.Limits[GPUResource] = c.Resources.Limits["memory"]
		}, "does not tolerate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderObjects(t, base)
			if errs := Policy(objs); len(errs) > 0 {
				t.Fatalf("the unmodified render already fails: %v", errs)
			}
			mutated := false
			for _, o := range objs {
				if d, ok := o.Obj.(*appsv1.Deployment); ok && strings.Contains(d.Name, "-worker-") {
					tc.mut(d)
					mutated = true
				}
			}
			if !mutated {
				t.Fatal("no worker Deployment to mutate")
			}
			errs := Policy(objs)
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), tc.want) }) {
				t.Errorf("policy did not report %q; got %v", tc.want, errs)
			}
		})
	}
}

// TestStrictDecoding: an unknown field fails the decoder.
func TestStrictDecoding(t *testing.T) {
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]string{
		"core":         "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80, targetPrt: 8080}]}\n",
		"cert-manager": "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: x}\nspec: {secretName: s, issuerRef: {name: i}, dnsName: [a]}\n",
		"monitoring":   "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {selector: {}, endpoint: []}\n",
		"unknown kind": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n",
		"duplicate":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := dec.Decode("# Source: t.yaml\n" + doc); !errors.Is(err, ErrDecode) {
				t.Errorf("decoded without error (%v)", err)
			}
		})
	}
}

func dig(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func findSuffix(m map[string]*appsv1.Deployment, suffix string) *appsv1.Deployment {
	for k, v := range m {
		if strings.HasSuffix(k, suffix) {
			return v
		}
	}
	return nil
}

// mergeValues overlays b on a as repeated -f flags do: maps merge, the
// rest is replaced.
func mergeValues(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = mergeValues(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}
