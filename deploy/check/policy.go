package check

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The worker-pool contract with helix-xds's Kubernetes source (xds/kube).
const (
	WorkerLabel      = "helixflow.io/component"
	WorkerValue      = "worker"
	ModelsAnnotation = "helixflow.io/models"
	GPUResource      = corev1.ResourceName("nvidia.com/gpu")
)

// workload is a pod template and what owns it.
type workload struct {
	obj        Object
	pod        *corev1.PodTemplateSpec
	longRunner bool // a Deployment (probes required), not a Job
	replicas   int32
}

func workloads(objs []Object) []workload {
	var out []workload
	for _, o := range objs {
		switch t := o.Obj.(type) {
		case *appsv1.Deployment:
			r := int32(1)
			if t.Spec.Replicas != nil {
				r = *t.Spec.Replicas
			}
			out = append(out, workload{obj: o, pod: &t.Spec.Template, longRunner: true, replicas: r})
		case *appsv1.StatefulSet:
			out = append(out, workload{obj: o, pod: &t.Spec.Template, longRunner: true, replicas: 1})
		case *appsv1.DaemonSet:
			out = append(out, workload{obj: o, pod: &t.Spec.Template, longRunner: true, replicas: 1})
		case *batchv1.Job:
			out = append(out, workload{obj: o, pod: &t.Spec.Template})
		case *batchv1.CronJob:
			out = append(out, workload{obj: o, pod: &t.Spec.JobTemplate.Spec.Template})
		}
	}
	return out
}

// secretEnv names environment variables that must come from a Secret.
var secretEnv = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|KEK|PEPPER|DATABASE_URL|DSN|API_KEY|PRIVATE_KEY)`)

// Policy checks the rendered objects against HelixFlow's deployment rules
// and returns every violation, each naming the object.
func Policy(objs []Object) []error {
	var errs []error
	add := func(o Object, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, a...)))
	}
	errs = append(errs, checkNames(objs)...)
	wls := workloads(objs)
	for _, w := range wls {
		errs = append(errs, podPolicy(w)...)
	}
	for _, o := range objs {
		switch t := o.Obj.(type) {
		case *corev1.Secret:
			add(o, "the chart renders a Secret: secrets are referenced, never inlined")
		case *corev1.ConfigMap:
			for k, v := range t.Data {
				if strings.Contains(v, "PRIVATE KEY-----") {
					add(o, "data[%s] holds a private key", k)
				}
			}
		case *corev1.Service:
			if t.Spec.Selector == nil {
				add(o, "Service without a selector")
			} else if !anyPodMatches(wls, t.Spec.Selector) {
				add(o, "selector %v matches no pod template of the chart", t.Spec.Selector)
			}
			if t.Labels[WorkerLabel] == WorkerValue {
				errs = append(errs, workerServicePolicy(o, t, wls)...)
			}
		}
	}
	errs = append(errs, pdbPolicy(objs, wls)...)
	errs = append(errs, hpaPolicy(objs)...)
	errs = append(errs, networkPolicyCoverage(objs, wls)...)
	errs = append(errs, certificatePolicy(objs, wls)...)
	errs = append(errs, serviceMonitorPolicy(objs)...)
	return errs
}

func podPolicy(w workload) []error {
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", w.obj, fmt.Sprintf(format, a...)))
	}
	spec := w.pod.Spec
	psc := spec.SecurityContext
	podNonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		add("pod securityContext.seccompProfile.type must be RuntimeDefault")
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		add("pod securityContext.runAsUser is 0 (root)")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		add("hostNetwork, hostPID and hostIPC must be false")
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			add("volume %s is a hostPath", v.Name)
		}
	}
	if spec.AutomountServiceAccountToken == nil || (*spec.AutomountServiceAccountToken && spec.ServiceAccountName == "") {
		add("automountServiceAccountToken must be set, and true only with a dedicated service account")
	}
	gpuPod := false
	containers := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for i, c := range containers {
		init := i < len(spec.InitContainers)
		where := "container " + c.Name
		if init {
			where = "init container " + c.Name
		}
		if msg := imagePolicy(c.Image); msg != "" {
			add("%s: image %q: %s", where, c.Image, msg)
		}
		sc := c.SecurityContext
		switch {
		case sc == nil:
			add("%s: no securityContext", where)
		default:
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				add("%s: readOnlyRootFilesystem must be true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				add("%s: allowPrivilegeEscalation must be false", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				add("%s: privileged", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				add("%s: capabilities.drop must contain ALL", where)
			} else if len(sc.Capabilities.Add) > 0 {
				add("%s: adds capabilities %v", where, sc.Capabilities.Add)
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				add("%s: runAsUser is 0 (root)", where)
			}
			if !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
				add("%s: runAsNonRoot must be true (pod or container)", where)
			}
		}
		req, lim := c.Resources.Requests, c.Resources.Limits
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := req[r]; !ok || q.IsZero() {
				add("%s: resources.requests.%s must be set", where, r)
			}
		}
		if q, ok := lim[corev1.ResourceMemory]; !ok || q.IsZero() {
			add("%s: resources.limits.memory must be set", where)
		} else if r, ok := req[corev1.ResourceMemory]; ok && r.Cmp(q) > 0 {
			add("%s: memory request %s above its limit %s", where, r.String(), q.String())
		}
		if q, ok := lim[GPUResource]; ok && !q.IsZero() {
			gpuPod = true
		}
		if w.longRunner && !init {
			if c.StartupProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe == nil {
				add("%s: startup, readiness and liveness probes are all required", where)
			}
		}
		for _, e := range c.Env {
			if e.Value != "" && secretEnv.MatchString(e.Name) {
				add("%s: env %s has a literal value; take it from a Secret", where, e.Name)
			}
		}
		for _, a := range append(slices.Clone(c.Command), c.Args...) {
			if strings.Contains(strings.ToLower(a), "password=") || strings.Contains(a, "://") && strings.Contains(a, "@") {
				add("%s: argument %q looks like it holds a credential", where, a)
			}
		}
	}
	if gpuPod {
		tolerated := slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool {
			return t.Key == string(GPUResource) || (t.Key == "" && t.Operator == corev1.TolerationOpExists)
		})
		if !tolerated {
			add("asks for %s but does not tolerate the GPU nodes' %s taint", GPUResource, GPUResource)
		}
	}
	return errs
}

// imagePolicy: a tag or digest, never "latest".
func imagePolicy(ref string) string {
	if ref == "" {
		return "empty"
	}
	name, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest && !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest) {
		return "digest is not sha256:<64 hex digits>"
	}
	slash := strings.LastIndex(name, "/")
	colon := strings.LastIndex(name, ":")
	if colon <= slash {
		if !hasDigest {
			return "no tag and no digest"
		}
		return ""
	}
	if tag := name[colon+1:]; tag == "latest" || tag == "" {
		return "the tag " + tag + " is not a version"
	}
	return ""
}

func anyPodMatches(wls []workload, sel map[string]string) bool {
	s := labels.SelectorFromSet(sel)
	return slices.ContainsFunc(wls, func(w workload) bool { return s.Matches(labels.Set(w.pod.Labels)) })
}

// workerServicePolicy checks a worker pool's Service against the contract
// helix-xds reads, and that its pods load the models it announces.
func workerServicePolicy(o Object, svc *corev1.Service, wls []workload) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, a...))) }
	models := strings.Split(svc.Annotations[ModelsAnnotation], ",")
	if svc.Annotations[ModelsAnnotation] == "" {
		add("worker Service without annotation %s", ModelsAnnotation)
	}
	var names []string
	for _, p := range svc.Spec.Ports {
		names = append(names, p.Name)
	}
	if !slices.Contains(names, "grpc") || !slices.Contains(names, "http") {
		add("worker Service ports %v: want ports named grpc and http", names)
	}
	s := labels.SelectorFromSet(svc.Spec.Selector)
	for _, w := range wls {
		if !s.Matches(labels.Set(w.pod.Labels)) {
			continue
		}
		for _, c := range w.pod.Spec.Containers {
			var loaded []string
			explicit := false
			for _, a := range c.Args {
				if m, ok := strings.CutPrefix(a, "--load-model="); ok {
					loaded = append(loaded, m)
				}
				explicit = explicit || a == "--model-control-mode=explicit"
			}
			if explicit {
				slices.Sort(loaded)
				want := slices.Clone(models)
				slices.Sort(want)
				if !slices.Equal(loaded, want) {
					add("pods of %s load %v but the Service announces %v", w.obj, loaded, want)
				}
			}
		}
	}
	return errs
}

// pdbPolicy: every Deployment that runs more than one pod (or autoscales)
// has a PodDisruptionBudget selecting its pods, and every PDB selects some.
func pdbPolicy(objs []Object, wls []workload) []error {
	var errs []error
	var pdbs []*policyv1.PodDisruptionBudget
	hpa := map[string]bool{}
	for _, o := range objs {
		switch t := o.Obj.(type) {
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, t)
			sel, err := metav1.LabelSelectorAsSelector(t.Spec.Selector)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: selector: %w", o, err))
				continue
			}
			if !slices.ContainsFunc(wls, func(w workload) bool { return w.longRunner && sel.Matches(labels.Set(w.pod.Labels)) }) {
				errs = append(errs, fmt.Errorf("%s: selects no pod of the chart", o))
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpa[t.Spec.ScaleTargetRef.Name] = true
		}
	}
	for _, w := range wls {
		if !w.longRunner || (w.replicas < 2 && !hpa[w.obj.Name]) {
			continue
		}
		covered := slices.ContainsFunc(pdbs, func(p *policyv1.PodDisruptionBudget) bool {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			return err == nil && sel.Matches(labels.Set(w.pod.Labels))
		})
		if !covered {
			errs = append(errs, fmt.Errorf("%s: %d replicas and no PodDisruptionBudget", w.obj, w.replicas))
		}
	}
	return errs
}

// hpaPolicy: each HorizontalPodAutoscaler targets a Deployment of the
// chart whose containers request CPU (utilization needs requests).
func hpaPolicy(objs []Object) []error {
	var errs []error
	deps := map[string]*appsv1.Deployment{}
	for _, o := range objs {
		if d, ok := o.Obj.(*appsv1.Deployment); ok {
			deps[d.Name] = d
		}
	}
	for _, o := range objs {
		h, ok := o.Obj.(*autoscalingv2.HorizontalPodAutoscaler)
		if !ok {
			continue
		}
		d, ok := deps[h.Spec.ScaleTargetRef.Name]
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || !ok {
			errs = append(errs, fmt.Errorf("%s: scaleTargetRef %s/%s is not a Deployment of the chart", o, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name))
			continue
		}
		if d.Spec.Replicas != nil {
			errs = append(errs, fmt.Errorf("%s: its Deployment sets replicas, which the autoscaler and every helm upgrade would fight over", o))
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			errs = append(errs, fmt.Errorf("%s: minReplicas/maxReplicas out of order", o))
		}
	}
	return errs
}

// networkPolicyCoverage: when the chart renders NetworkPolicies, each pod
// is selected by one with Ingress and one with Egress, and worker pods
// accept traffic on their inference ports only from the gateway.
func networkPolicyCoverage(objs []Object, wls []workload) []error {
	var nps []*networkingv1.NetworkPolicy
	for _, o := range objs {
		if np, ok := o.Obj.(*networkingv1.NetworkPolicy); ok {
			nps = append(nps, np)
		}
	}
	if len(nps) == 0 {
		return nil
	}
	var errs []error
	for _, w := range wls {
		var ingress, egress bool
		podLabels := labels.Set(w.pod.Labels)
		for _, np := range nps {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || !sel.Matches(podLabels) {
				continue
			}
			ingress = ingress || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
			egress = egress || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			if podLabels[WorkerLabel] == WorkerValue {
				for _, rule := range np.Spec.Ingress {
					if len(rule.From) == 0 {
						errs = append(errs, fmt.Errorf("%s: NetworkPolicy %s lets anyone reach a worker", w.obj, np.Name))
					}
					for _, peer := range rule.From {
						if peer.IPBlock != nil {
							errs = append(errs, fmt.Errorf("%s: NetworkPolicy %s lets an IP block reach a worker", w.obj, np.Name))
						}
						if peer.PodSelector != nil && peer.PodSelector.MatchLabels["app.kubernetes.io/component"] != "gateway" {
							errs = append(errs, fmt.Errorf("%s: NetworkPolicy %s lets pods other than the gateway reach a worker", w.obj, np.Name))
						}
					}
				}
				errs = append(errs, workerEgressPolicy(w, np)...)
			}
		}
		if !ingress || !egress {
			errs = append(errs, fmt.Errorf("%s: not covered by NetworkPolicies for both ingress (%t) and egress (%t)", w.obj, ingress, egress))
		}
	}
	return errs
}

// workerEgressPolicy: a worker reaches helix-authz's pods (the usage
// ledger on its gRPC port), DNS in another namespace and, with tracing, the
// OpenTelemetry Collector on its one OTLP port (the chart's -otlp policy);
// nothing else, so a compromised model cannot call out.
func workerEgressPolicy(w workload, np *networkingv1.NetworkPolicy) []error {
	var errs []error
	for _, rule := range np.Spec.Egress {
		if otlpCollectorRule(np, rule) {
			continue
		}
		if len(rule.To) == 0 {
			errs = append(errs, fmt.Errorf("%s: NetworkPolicy %s lets a worker reach anyone", w.obj, np.Name))
		}
		for _, peer := range rule.To {
			switch {
			case peer.IPBlock != nil:
				errs = append(errs, fmt.Errorf("%s: NetworkPolicy %s lets a worker reach an IP block", w.obj, np.Name))
			case peer.PodSelector != nil && peer.PodSelector.MatchLabels["app.kubernetes.io/component"] != "authz":
				errs = append(errs, fmt.Errorf("%s: NetworkPolicy %s lets a worker reach pods other than helix-authz's", w.obj, np.Name))
			case peer.PodSelector == nil && (len(rule.Ports) == 0 || slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool {
				return p.Port == nil || p.Port.IntVal != 53 || p.EndPort != nil
			})):
				errs = append(errs, fmt.Errorf("%s: NetworkPolicy %s lets a worker reach a namespace on ports other than DNS", w.obj, np.Name))
			}
		}
		if slices.ContainsFunc(rule.To, func(p networkingv1.NetworkPolicyPeer) bool { return p.PodSelector != nil }) {
			for _, p := range rule.Ports {
				if p.Port == nil || p.Port.IntVal != 9001 || p.EndPort != nil {
					errs = append(errs, fmt.Errorf("%s: NetworkPolicy %s lets a worker reach helix-authz on a port other than its gRPC port 9001", w.obj, np.Name))
				}
			}
			if len(rule.Ports) == 0 {
				errs = append(errs, fmt.Errorf("%s: NetworkPolicy %s lets a worker reach helix-authz on any port", w.obj, np.Name))
			}
		}
	}
	return errs
}

// certificatePolicy: every Secret a pod mounts that a Certificate of the
// chart should write is written by one, and every Certificate's issuer
// is an Issuer of the chart or named outside it.
func certificatePolicy(objs []Object, wls []workload) []error {
	var errs []error
	certSecrets := map[string]bool{}
	issuers := map[string]bool{}
	var certs []Object
	for _, o := range objs {
		switch t := o.Obj.(type) {
		case *certmanagerv1.Certificate:
			certSecrets[t.Spec.SecretName] = true
			certs = append(certs, o)
		case *certmanagerv1.Issuer:
			issuers[t.Name] = true
		}
	}
	if len(certs) == 0 {
		return nil
	}
	for _, o := range certs {
		c := o.Obj.(*certmanagerv1.Certificate)
		if c.Spec.IssuerRef.Kind == "Issuer" && !issuers[c.Spec.IssuerRef.Name] && strings.HasPrefix(c.Spec.IssuerRef.Name, ReleaseName) {
			errs = append(errs, fmt.Errorf("%s: issuer %s is not rendered", o, c.Spec.IssuerRef.Name))
		}
		if c.Spec.PrivateKey == nil || c.Spec.PrivateKey.RotationPolicy != certmanagerv1.RotationPolicyAlways {
			errs = append(errs, fmt.Errorf("%s: privateKey.rotationPolicy must be Always (a renewal rotates the key)", o))
		}
		// The listeners admit clients by the SPIFFE ID in their certificate
		// (internal/identity): a client certificate without one is refused
		// everywhere.
		if slices.Contains(c.Spec.Usages, certmanagerv1.UsageClientAuth) {
			n := 0
			for _, u := range c.Spec.URIs {
				if strings.HasPrefix(u, "spiffe://") {
					n++
				}
			}
			if n != 1 {
				errs = append(errs, fmt.Errorf("%s: a client certificate needs exactly one spiffe:// URI (its identity, _identity.tpl), has %d", o, n))
			}
		}
	}
	for _, w := range wls {
		for _, v := range w.pod.Spec.Volumes {
			if v.Secret == nil || !strings.HasSuffix(v.Secret.SecretName, "-tls") {
				continue
			}
			if !certSecrets[v.Secret.SecretName] {
				errs = append(errs, fmt.Errorf("%s: volume %s mounts Secret %s, which no Certificate writes", w.obj, v.Name, v.Secret.SecretName))
			}
		}
	}
	return errs
}

// serviceMonitorPolicy: each ServiceMonitor selects a Service of the chart
// that has the port it scrapes.
func serviceMonitorPolicy(objs []Object) []error {
	var errs []error
	var svcs []*corev1.Service
	for _, o := range objs {
		if s, ok := o.Obj.(*corev1.Service); ok {
			svcs = append(svcs, s)
		}
	}
	for _, o := range objs {
		sm, ok := o.Obj.(*monitoringv1.ServiceMonitor)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: selector: %w", o, err))
			continue
		}
		for _, ep := range sm.Spec.Endpoints {
			found := slices.ContainsFunc(svcs, func(s *corev1.Service) bool {
				return sel.Matches(labels.Set(s.Labels)) && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port })
			})
			if !found {
				errs = append(errs, fmt.Errorf("%s: no Service of the chart matches its selector with a port named %q", o, ep.Port))
			}
		}
	}
	return errs
}

// gpuLimit is the GPUs one pod template asks for.
func gpuLimit(p *corev1.PodTemplateSpec) int64 {
	var n int64
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Limits[GPUResource]; ok {
			n += q.Value()
		}
	}
	return n
}

// otlpCollectorRule: the chart's tracing egress (NetworkPolicy <release>-otlp):
// named peers (IP blocks or namespaces, never everyone) on one TCP port.
func otlpCollectorRule(np *networkingv1.NetworkPolicy, rule networkingv1.NetworkPolicyEgressRule) bool {
	if !strings.HasSuffix(np.Name, "-otlp") || len(rule.To) == 0 || len(rule.Ports) != 1 {
		return false
	}
	p := rule.Ports[0]
	return p.Port != nil && p.Port.IntVal > 0 && p.EndPort == nil && (p.Protocol == nil || *p.Protocol == "TCP")
}
