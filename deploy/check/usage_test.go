package check

import (
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// workerIdentityPrefix: internal/identity.Worker(name) is this + name, the
// only identities helix-authz's Ledger admits (identity.AuthzWorkerCaller).
const workerIdentityPrefix = "spiffe://helixflow.local/worker/"

// workerDeployments maps each worker pool's name to its Deployment.
func workerDeployments(t *testing.T, objs []Object) map[string]*appsv1.Deployment {
	t.Helper()
	out := map[string]*appsv1.Deployment{}
	for _, o := range objs {
		if d, ok := o.Obj.(*appsv1.Deployment); ok && d.Spec.Template.Labels[WorkerLabel] == WorkerValue {
			out[d.Spec.Template.Labels["helixflow.io/pool"]] = d
		}
	}
	if len(out) == 0 {
		t.Fatal("no worker Deployment rendered")
	}
	return out
}

// argValue returns the value of --name=value in args.
func argValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// certificateFor returns the Certificate that writes secret, or nil.
func certificateFor(objs []Object, secret string) *certmanagerv1.Certificate {
	for _, o := range objs {
		if c, ok := o.Obj.(*certmanagerv1.Certificate); ok && c.Spec.SecretName == secret {
			return c
		}
	}
	return nil
}

// TestWorkersReportUsage: each worker pool reports to helix-authz's
// usage Ledger: --usage-address is helix-authz's Service on the port that
// leads to its --grpc-listen, the client certificate is the pool's own
// (from cert-manager, identity worker/<pool>, client auth; or the
// existing Secret tls.secrets.workerUsage.<pool>), and helix-authz's
// certificate is checked for a name it carries, against the CA that signs
// it.
func TestWorkersReportUsage(t *testing.T) {
	authzAddr := ReleaseName + "-helixflow-authz." + Namespace + ".svc:9001"
	for _, tc := range []struct {
		file    string
		secret  func(pool string) string
		public  bool // helix-authz's certificate from tls.certManager.publicIssuerRef
		issuers bool // cert-manager writes the Secrets
	}{
		{file: "minimal.yaml", secret: func(p string) string { return ReleaseName + "-helixflow-worker-" + p + "-usage-tls" }, issuers: true},
		{file: "full.yaml", secret: func(p string) string { return ReleaseName + "-helixflow-worker-" + p + "-usage-tls" }, public: true, issuers: true},
		{file: "existing-secrets.yaml", secret: func(p string) string { return "worker-" + p + "-usage-tls" }},
	} {
		t.Run(tc.file, func(t *testing.T) {
			values, err := ReadValues(filepath.Join(testValuesDir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			objs := renderObjects(t, values)
			issuer, err := url.Parse(dig(values, "authz", "issuer").(string))
			if err != nil {
				t.Fatal(err)
			}
			authzHost := issuer.Hostname()
			checkAuthzGRPCService(t, objs)
			for pool, d := range workerDeployments(t, objs) {
				spec := &d.Spec.Template.Spec
				c := &spec.Containers[0]
				if got, _ := argValue(c.Args, "usage-address"); got != authzAddr {
					t.Errorf("pool %s: --usage-address=%q, want %q", pool, got, authzAddr)
				}
				if got, _ := argValue(c.Args, "usage-flush-interval"); got != "10s" {
					t.Errorf("pool %s: --usage-flush-interval=%q, want the default 10s", pool, got)
				}
				if got, _ := argValue(c.Args, "usage-server-name"); got != authzHost {
					t.Errorf("pool %s: --usage-server-name=%q, want %q (the name Envoy checks helix-authz's certificate for)", pool, got, authzHost)
				}
				for _, f := range []struct{ flag, key string }{{"usage-cert-file", "tls.crt"}, {"usage-key-file", "tls.key"}, {"usage-ca-file", "ca.crt"}} {
					file, _ := argValue(c.Args, f.flag)
					if f.flag == "usage-ca-file" && tc.public {
						if file != "/etc/ssl/certs/ca-certificates.crt" {
							t.Errorf("pool %s: --usage-ca-file=%q, want the system roots (helix-authz's certificate is publicly issued)", pool, file)
						}
						continue
					}
					if secret, key := secretFile(spec, c, file); secret != tc.secret(pool) || key != f.key {
						t.Errorf("pool %s: --%s=%s is Secret %q key %q, want %q key %q", pool, f.flag, file, secret, key, tc.secret(pool), f.key)
					}
				}
				if !tc.issuers {
					continue
				}
				cert := certificateFor(objs, tc.secret(pool))
				if cert == nil {
					t.Errorf("pool %s: no Certificate writes %s", pool, tc.secret(pool))
					continue
				}
				if want := []string{workerIdentityPrefix + pool}; !slices.Equal(cert.Spec.URIs, want) {
					t.Errorf("pool %s: usage certificate URIs %v, want %v (a worker identity)", pool, cert.Spec.URIs, want)
				}
				if !slices.Contains(cert.Spec.Usages, certmanagerv1.UsageClientAuth) || slices.Contains(cert.Spec.Usages, certmanagerv1.UsageServerAuth) {
					t.Errorf("pool %s: usage certificate usages %v, want client auth only", pool, cert.Spec.Usages)
				}
				if len(cert.Spec.DNSNames) > 0 {
					t.Errorf("pool %s: usage certificate has DNS names %v (a client certificate)", pool, cert.Spec.DNSNames)
				}
				if cert.Spec.IssuerRef.Name != ReleaseName+"-helixflow-ca" {
					t.Errorf("pool %s: usage certificate issued by %s, want the internal CA", pool, cert.Spec.IssuerRef.Name)
				}
				authzCert := certificateFor(objs, ReleaseName+"-helixflow-authz-tls")
				if authzCert == nil || !slices.Contains(authzCert.Spec.DNSNames, authzHost) {
					t.Errorf("helix-authz's certificate lacks %s, the name the workers check", authzHost)
				}
			}
		})
	}
}

// checkAuthzGRPCService: the authz Service's port 9001 leads to the
// container port helix-authz's --grpc-listen binds.
func checkAuthzGRPCService(t *testing.T, objs []Object) {
	t.Helper()
	var svc *corev1.Service
	for _, o := range objs {
		if s, ok := o.Obj.(*corev1.Service); ok && s.Name == ReleaseName+"-helixflow-authz" {
			svc = s
		}
	}
	if svc == nil {
		t.Fatal("no helix-authz Service")
	}
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 9001 })
	if i < 0 {
		t.Fatalf("helix-authz's Service has no port 9001: %v", svc.Spec.Ports)
	}
	target := svc.Spec.Ports[i].TargetPort
	c := deploymentOf(t, objs, "-authz").Spec.Template.Spec.Containers[0]
	listen, _ := argValue(c.Args, "grpc-listen")
	port := -1
	for _, p := range c.Ports {
		if (target.Type == intstr.String && p.Name == target.StrVal) || (target.Type == intstr.Int && p.ContainerPort == target.IntVal) {
			port = int(p.ContainerPort)
		}
	}
	if ap, err := netip.ParseAddrPort(listen); err != nil || int(ap.Port()) != port {
		t.Errorf("helix-authz's Service port 9001 leads to container port %d, --grpc-listen=%q", port, listen)
	}
}

// TestUsagePath: with NetworkPolicies on, the workers reach helix-authz's
// gRPC port and nothing else of the chart (nor any address outside it);
// helix-authz's gRPC port admits Envoy and the workers alone. With
// usage.enabled and limits.enabled false the path is closed and nothing of
// it is rendered.
func TestUsagePath(t *testing.T) {
	base, err := ReadValues(filepath.Join(testValuesDir, "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, enabled := range []bool{true, false} {
		name := map[bool]string{true: "enabled", false: "disabled"}[enabled]
		t.Run(name, func(t *testing.T) {
			// The per-message plan limits use the same path: off too.
			objs := renderObjects(t, mergeValues(base, map[string]any{"usage": map[string]any{"enabled": enabled}, "limits": map[string]any{"enabled": enabled}}))
			if errs := Policy(objs); len(errs) > 0 {
				t.Fatalf("policy: %v", errs)
			}
			nps := networkPolicies(objs)
			wls := workloads(objs)
			for _, to := range wls {
				for _, c := range to.pod.Spec.Containers {
					for _, p := range c.Ports {
						for _, from := range wls {
							isWorker := from.pod.Labels[WorkerLabel] == WorkerValue
							if !isWorker && !(to.obj.Name == ReleaseName+"-helixflow-authz" && p.ContainerPort == 9001) {
								continue
							}
							toAuthzGRPC := to.obj.Name == ReleaseName+"-helixflow-authz" && p.ContainerPort == 9001
							want := toAuthzGRPC && (isWorker && enabled || strings.HasSuffix(from.obj.Name, "-gateway"))
							if got := allows(nps, labels.Set(from.pod.Labels), peer{pod: labels.Set(to.pod.Labels)}, p.ContainerPort); got != want {
								t.Errorf("%s -> %s:%d allowed: %t, want %t", from.obj, to.obj.Name, p.ContainerPort, got, want)
							}
						}
					}
				}
			}
			for pool, d := range workerDeployments(t, objs) {
				from := labels.Set(d.Spec.Template.Labels)
				for _, ip := range []string{"10.0.32.5", "1.1.1.1", "169.254.169.254"} {
					for _, port := range []int32{443, 5432, 9001} {
						if egressAllows(nps, from, peer{ip: netip.MustParseAddr(ip)}, port) {
							t.Errorf("pool %s -> %s:%d allowed", pool, ip, port)
						}
					}
				}
				if _, ok := argValue(d.Spec.Template.Spec.Containers[0].Args, "usage-address"); ok != enabled {
					t.Errorf("pool %s: --usage-address present: %t, want %t", pool, ok, enabled)
				}
				if enabled != slices.ContainsFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "usage-tls" }) {
					t.Errorf("pool %s: usage-tls volume present: %t", pool, !enabled)
				}
			}
			if !enabled {
				for _, o := range objs {
					if c, ok := o.Obj.(*certmanagerv1.Certificate); ok && slices.ContainsFunc(c.Spec.URIs, func(u string) bool { return strings.HasPrefix(u, workerIdentityPrefix) }) {
						t.Errorf("%s rendered with usage off", o)
					}
				}
			}
		})
	}
}

// TestPolicyCatchesWorkerEgress: the policy reports a worker NetworkPolicy
// that opens more than the usage ledger's path.
func TestPolicyCatchesWorkerEgress(t *testing.T) {
	base, err := ReadValues(filepath.Join(testValuesDir, "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tcp := corev1.ProtocolTCP
	port := func(n int) []networkingv1.NetworkPolicyPort {
		p := intstr.FromInt(n)
		return []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}}
	}
	for _, tc := range []struct {
		name string
		rule func(authz networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule
		want string
	}{
		{"anyone", func(networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
			return networkingv1.NetworkPolicyEgressRule{Ports: port(443)}
		}, "lets a worker reach anyone"},
		{"ip block", func(networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
			return networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}}
		}, "lets a worker reach an IP block"},
		{"authz public port", func(authz networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
			return networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{authz}, Ports: port(8090)}
		}, "a port other than its gRPC port 9001"},
		{"authz any port", func(authz networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
			return networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{authz}}
		}, "helix-authz on any port"},
		{"xds", func(authz networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
			xds := *authz.DeepCopy()
			xds.PodSelector.MatchLabels["app.kubernetes.io/component"] = "xds"
			return networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{xds}, Ports: port(9001)}
		}, "pods other than helix-authz's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderObjects(t, base)
			var np *networkingv1.NetworkPolicy
			for _, n := range networkPolicies(objs) {
				if n.Name == ReleaseName+"-helixflow-workers" {
					np = n
				}
			}
			if np == nil || len(np.Spec.Egress) != 1 || len(np.Spec.Egress[0].To) != 1 {
				t.Fatalf("the workers' NetworkPolicy has not one egress rule to helix-authz: %+v", np)
			}
			np.Spec.Egress = append(np.Spec.Egress, tc.rule(np.Spec.Egress[0].To[0]))
			errs := Policy(objs)
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), tc.want) }) {
				t.Errorf("policy did not report %q; got %v", tc.want, errs)
			}
		})
	}
}
