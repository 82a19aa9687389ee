package check

import (
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// TestRateLimitInAuthz: helix-authz takes the rate-limit decisions and
// counts in Redis (issue 13), so it gets the Redis connection (address,
// password file from redis.auth, TLS and CA), the gateway config's
// ratelimit section has no helix-ratelimit address or TLS, and nothing of
// helix-ratelimit is rendered.
func TestRateLimitInAuthz(t *testing.T) {
	const internalAddr = ReleaseName + "-helixflow-redis." + Namespace + ".svc:6379"
	cases := []struct {
		name    string
		file    string
		overlay string
		args    []string // helix-authz's --redis-* flags, in order
		files   map[string][2]string
	}{
		{
			name: "internal Redis", file: "minimal.yaml",
			args: []string{
				"--redis-address=" + internalAddr,
				"--redis-password-file=/etc/helixflow/secrets/redis/password",
				"--redis-tls",
				"--redis-ca-file=/etc/helixflow/tls/redis-ca/ca.crt",
			},
			files: map[string][2]string{
				"/etc/helixflow/secrets/redis/password": {"helixflow-redis", "password"},
				"/etc/helixflow/tls/redis-ca/ca.crt":    {ReleaseName + "-helixflow-redis-tls", "ca.crt"},
			},
		},
		{
			name: "managed Redis, system roots", file: "full.yaml",
			args: []string{
				"--redis-address=master.helixflow.abc123.euw1.cache.amazonaws.com:6379",
				"--redis-password-file=/etc/helixflow/secrets/redis/password",
				"--redis-tls",
			},
			files: map[string][2]string{"/etc/helixflow/secrets/redis/password": {"helixflow-redis", "password"}},
		},
		{
			name: "managed Redis with its CA", file: "full.yaml",
			overlay: "redis: {external: {caSecret: {name: redis-ca, key: bundle.pem}}, auth: {name: rl-redis, key: pw}}",
			args: []string{
				"--redis-address=master.helixflow.abc123.euw1.cache.amazonaws.com:6379",
				"--redis-password-file=/etc/helixflow/secrets/redis/pw",
				"--redis-tls",
				"--redis-ca-file=/etc/helixflow/tls/redis-ca/bundle.pem",
			},
			files: map[string][2]string{
				"/etc/helixflow/secrets/redis/pw":        {"rl-redis", "pw"},
				"/etc/helixflow/tls/redis-ca/bundle.pem": {"redis-ca", "bundle.pem"},
			},
		},
		{
			name: "managed Redis without TLS", file: "full.yaml", overlay: "redis: {external: {tls: false}}",
			args: []string{
				"--redis-address=master.helixflow.abc123.euw1.cache.amazonaws.com:6379",
				"--redis-password-file=/etc/helixflow/secrets/redis/password",
			},
			files: map[string][2]string{"/etc/helixflow/secrets/redis/password": {"helixflow-redis", "password"}},
		},
		{name: "rate limits off", file: "existing-secrets.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			values, err := ReadValues(filepath.Join(testValuesDir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if tc.overlay != "" {
				var overlay map[string]any
				if err := yaml.Unmarshal([]byte(tc.overlay), &overlay); err != nil {
					t.Fatal(err)
				}
				values = mergeValues(values, overlay)
			}
			objs := renderObjects(t, values)
			for _, o := range objs {
				if strings.Contains(o.Name, "ratelimit") || componentOf(o) == "ratelimit" {
					t.Errorf("%s: helix-ratelimit is retired", o)
				}
				for _, w := range workloads([]Object{o}) {
					for _, c := range w.pod.Spec.Containers {
						if strings.Contains(c.Image, "helix-ratelimit") {
							t.Errorf("%s: runs image %s", o, c.Image)
						}
					}
				}
			}
			authz := deploymentOf(t, objs, "-authz")
			c := authz.Spec.Template.Spec.Containers[0]
			var got []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--redis-") {
					got = append(got, a)
				}
			}
			if !slices.Equal(got, tc.args) {
				t.Errorf("helix-authz's Redis flags:\n got %q\nwant %q", got, tc.args)
			}
			for file, want := range tc.files {
				if secret, key := secretFile(&authz.Spec.Template.Spec, &c, file); secret != want[0] || key != want[1] {
					t.Errorf("%s: from Secret %q key %q, want %q key %q", file, secret, key, want[0], want[1])
				}
			}
			rl, on := gatewayConfig(t, objs)["ratelimit"].(map[string]any)
			if on != (len(tc.args) > 0) {
				t.Fatalf("gateway config has a ratelimit section: %t, helix-authz has Redis: %t", on, len(tc.args) > 0)
			}
			if on {
				keys := slices.Sorted(func(yield func(string) bool) {
					for k := range rl {
						if !yield(k) {
							return
						}
					}
				})
				if want := []string{"default_plan", "domain", "failure_mode", "timeout"}; !slices.Equal(keys, want) {
					t.Errorf("gateway config ratelimit fields %v, want %v", keys, want)
				}
			}
		})
	}
}

// TestRedisReachableOnlyByAuthz: with the NetworkPolicies on, helix-authz
// reaches Redis (the chart's or the managed one) and no other pod of the
// chart does.
func TestRedisReachableOnlyByAuthz(t *testing.T) {
	t.Run("internal", func(t *testing.T) {
		values, err := ReadValues(filepath.Join(testValuesDir, "minimal.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		objs := renderObjects(t, values)
		nps := networkPolicies(objs)
		redis := podLabelsOf(t, objs, "-redis")
		for _, w := range workloads(objs) {
			from := labels.Set(w.pod.Labels)
			want := strings.HasSuffix(w.obj.Name, "-authz")
			if got := allows(nps, from, peer{pod: redis}, 6379); got != want {
				t.Errorf("%s -> Redis:6379 allowed: %t, want %t", w.obj, got, want)
			}
		}
	})
	t.Run("external", func(t *testing.T) {
		values, err := ReadValues(filepath.Join(testValuesDir, "full.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		objs := renderObjects(t, values)
		nps := networkPolicies(objs)
		redis := peer{ip: netip.MustParseAddr("10.0.64.7")} // in networkPolicy.externalRedis.cidrs
		for _, w := range workloads(objs) {
			want := strings.HasSuffix(w.obj.Name, "-authz")
			if got := egressAllows(nps, labels.Set(w.pod.Labels), redis, 6379); got != want {
				t.Errorf("%s -> managed Redis 10.0.64.7:6379 allowed: %t, want %t", w.obj, got, want)
			}
		}
	})
}

func componentOf(o Object) string {
	m, ok := o.Obj.(interface{ GetLabels() map[string]string })
	if !ok {
		return ""
	}
	return m.GetLabels()["app.kubernetes.io/component"]
}

func deploymentOf(t *testing.T, objs []Object, suffix string) *appsv1.Deployment {
	t.Helper()
	for _, o := range objs {
		if d, ok := o.Obj.(*appsv1.Deployment); ok && strings.HasSuffix(d.Name, suffix) {
			return d
		}
	}
	t.Fatalf("no Deployment *%s rendered", suffix)
	return nil
}

func podLabelsOf(t *testing.T, objs []Object, suffix string) labels.Set {
	t.Helper()
	return labels.Set(deploymentOf(t, objs, suffix).Spec.Template.Labels)
}

// gatewayConfig is the gateway config file the chart renders, decoded.
func gatewayConfig(t *testing.T, objs []Object) map[string]any {
	t.Helper()
	for _, o := range objs {
		if cm, ok := o.Obj.(*corev1.ConfigMap); ok && strings.HasSuffix(cm.Name, "-gateway-config") {
			var out map[string]any
			if err := yaml.Unmarshal([]byte(cm.Data["gateway.yaml"]), &out); err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	t.Fatal("no gateway config ConfigMap rendered")
	return nil
}

// secretFile resolves a file path in container c to the Secret and key it
// is mounted from ("", "" if it is not a mounted Secret's file).
func secretFile(pod *corev1.PodSpec, c *corev1.Container, file string) (secret, key string) {
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" || path.Dir(file) != path.Clean(m.MountPath) {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			name := path.Base(file)
			if len(v.Secret.Items) == 0 {
				return v.Secret.SecretName, name
			}
			for _, it := range v.Secret.Items {
				if it.Path == name {
					return v.Secret.SecretName, it.Key
				}
			}
		}
	}
	return "", ""
}

func networkPolicies(objs []Object) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, o := range objs {
		if np, ok := o.Obj.(*networkingv1.NetworkPolicy); ok {
			out = append(out, np)
		}
	}
	return out
}

// peer is the other end of a connection: a pod of the release's namespace
// (its labels) or an address outside the cluster.
type peer struct {
	pod labels.Set
	ip  netip.Addr
}

// allows reports whether NetworkPolicies let a pod labeled from open a
// TCP connection to the pod to on port: the sender's egress and the
// receiver's ingress must both allow it.
func allows(nps []*networkingv1.NetworkPolicy, from labels.Set, to peer, port int32) bool {
	return egressAllows(nps, from, to, port) && admits(nps, to.pod, networkingv1.PolicyTypeIngress, peer{pod: from}, port)
}

func egressAllows(nps []*networkingv1.NetworkPolicy, from labels.Set, to peer, port int32) bool {
	return admits(nps, from, networkingv1.PolicyTypeEgress, to, port)
}

// admits applies Kubernetes' semantics in one direction: a pod that no
// policy of that type selects is not isolated; otherwise some rule of a
// policy selecting it must match the peer and the port. An ipBlock is
// taken to match any pod too (pod addresses are the CNI's), so that a
// check that a pod may NOT connect errs on the safe side.
func admits(nps []*networkingv1.NetworkPolicy, pod labels.Set, typ networkingv1.PolicyType, other peer, port int32) bool {
	isolated := false
	for _, np := range nps {
		if !selects(&np.Spec.PodSelector, pod) || !slices.Contains(np.Spec.PolicyTypes, typ) {
			continue
		}
		isolated = true
		type rule struct {
			peers []networkingv1.NetworkPolicyPeer
			ports []networkingv1.NetworkPolicyPort
		}
		var rules []rule
		if typ == networkingv1.PolicyTypeEgress {
			for _, r := range np.Spec.Egress {
				rules = append(rules, rule{r.To, r.Ports})
			}
		} else {
			for _, r := range np.Spec.Ingress {
				rules = append(rules, rule{r.From, r.Ports})
			}
		}
		for _, r := range rules {
			if portMatches(r.ports, port) && (len(r.peers) == 0 || slices.ContainsFunc(r.peers, func(p networkingv1.NetworkPolicyPeer) bool { return peerMatches(p, other) })) {
				return true
			}
		}
	}
	return !isolated
}

func peerMatches(p networkingv1.NetworkPolicyPeer, other peer) bool {
	if p.IPBlock != nil {
		if other.pod != nil {
			return true
		}
		prefix, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil || !prefix.Contains(other.ip) {
			return false
		}
		for _, e := range p.IPBlock.Except {
			if ex, err := netip.ParsePrefix(e); err == nil && ex.Contains(other.ip) {
				return false
			}
		}
		return true
	}
	if other.pod == nil {
		return false
	}
	if p.NamespaceSelector != nil && !selects(p.NamespaceSelector, labels.Set{"kubernetes.io/metadata.name": Namespace}) {
		return false
	}
	return p.PodSelector == nil || selects(p.PodSelector, other.pod)
}

func portMatches(ports []networkingv1.NetworkPolicyPort, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	return slices.ContainsFunc(ports, func(p networkingv1.NetworkPolicyPort) bool {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			return false
		}
		if p.Port == nil {
			return true
		}
		if p.EndPort != nil {
			return p.Port.IntVal <= port && port <= *p.EndPort
		}
		return p.Port.IntVal == port
	})
}

func selects(sel *metav1.LabelSelector, l labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(l)
}
