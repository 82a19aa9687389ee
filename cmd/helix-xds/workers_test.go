package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/helixflow/helixflow/xds/catalog"
	"github.com/helixflow/helixflow/xds/kube"
	"github.com/helixflow/helixflow/xds/registry"
)

func TestParseWorkerFlags(t *testing.T) {
	base := []string{"--config=g.yaml", "--plaintext-loopback"}
	tests := []struct {
		name    string
		args    []string
		want    func(*options) bool
		wantErr string
	}{
		{"registry by default", nil, func(o *options) bool { return o.workersSource == sourceRegistry }, ""},
		{"kubernetes in-cluster", []string{"--workers-source=kubernetes"}, func(o *options) bool {
			return o.workersSource == sourceKubernetes && o.kubeconfig == "" && o.kubeNamespace == "" && o.kubeSyncTimeout == kube.DefaultSyncTimeout
		}, ""},
		{"kubernetes with kubeconfig and namespace", []string{"--workers-source=kubernetes", "--kubeconfig=/k", "--kube-namespace=helix", "--kube-sync-timeout=5s"}, func(o *options) bool {
			return o.kubeconfig == "/k" && o.kubeNamespace == "helix" && o.kubeSyncTimeout == 5*time.Second
		}, ""},
		{"unknown source", []string{"--workers-source=consul"}, nil, `--workers-source "consul": want registry or kubernetes`},
		{"kubeconfig without kubernetes", []string{"--kubeconfig=/k"}, nil, "--kubeconfig needs --workers-source=kubernetes"},
		{"namespace without kubernetes", []string{"--kube-namespace=helix"}, nil, "--kube-namespace needs --workers-source=kubernetes"},
		{"bad namespace", []string{"--workers-source=kubernetes", "--kube-namespace=Helix"}, nil, `--kube-namespace: invalid: namespace "Helix"`},
		{"lease TTL with kubernetes", []string{"--workers-source=kubernetes", "--lease-ttl=5s"}, nil, "--lease-ttl is for --workers-source=registry"},
		// Workers are known by their identity (a SPIFFE ID), not by names.
		{"worker names flag is gone", []string{"--worker-client-names=w"}, nil, "flag provided but not defined: -worker-client-names"},
		{"zero sync timeout", []string{"--workers-source=kubernetes", "--kube-sync-timeout=0s"}, nil, "--kube-sync-timeout 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(append(slices.Clone(base), tt.args...))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseFlags = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.want(o) {
				t.Fatalf("parseFlags = %+v, %v", o, err)
			}
		})
	}
}

// apiServer is the smallest Kubernetes API server the informers need:
// lists, and watches that (for the watch-list protocol client-go uses by
// default) replay the objects and mark the end of the initial events.
type apiServer struct {
	services  []corev1.Service
	slices    []discoveryv1.EndpointSlice
	mu        sync.Mutex
	selectors map[string]string // resource: label selector asked for
	other     []string          // requests for anything else
}

func (a *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var (
		resource string
		list     any
		items    []any
		kind     string
	)
	switch r.URL.Path {
	case "/api/v1/namespaces/helix/services":
		resource, kind = "services", "Service"
		list = &corev1.ServiceList{TypeMeta: metav1.TypeMeta{Kind: "ServiceList", APIVersion: "v1"}, ListMeta: metav1.ListMeta{ResourceVersion: "10"}, Items: a.services}
		for i := range a.services {
			s := a.services[i]
			s.TypeMeta = metav1.TypeMeta{Kind: kind, APIVersion: "v1"}
			items = append(items, &s)
		}
	case "/apis/discovery.k8s.io/v1/namespaces/helix/endpointslices":
		resource, kind = "endpointslices", "EndpointSlice"
		list = &discoveryv1.EndpointSliceList{TypeMeta: metav1.TypeMeta{Kind: "EndpointSliceList", APIVersion: "discovery.k8s.io/v1"}, ListMeta: metav1.ListMeta{ResourceVersion: "10"}, Items: a.slices}
		for i := range a.slices {
			s := a.slices[i]
			s.TypeMeta = metav1.TypeMeta{Kind: kind, APIVersion: "discovery.k8s.io/v1"}
			items = append(items, &s)
		}
	default:
		a.mu.Lock()
		a.other = append(a.other, r.Method+" "+r.URL.String())
		a.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	a.mu.Lock()
	a.selectors[resource] = q.Get("labelSelector")
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if q.Get("watch") != "true" {
		_ = json.NewEncoder(w).Encode(list)
		return
	}
	enc := json.NewEncoder(w)
	if q.Get("sendInitialEvents") == "true" {
		for _, it := range items {
			_ = enc.Encode(map[string]any{"type": "ADDED", "object": it})
		}
		apiVersion := "v1"
		if kind == "EndpointSlice" {
			apiVersion = "discovery.k8s.io/v1"
		}
		_ = enc.Encode(map[string]any{"type": "BOOKMARK", "object": map[string]any{
			"kind": kind, "apiVersion": apiVersion,
			"metadata": map[string]any{"resourceVersion": "10", "annotations": map[string]string{metav1.InitialEventsAnnotationKey: "true"}},
		}})
	}
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	conf := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
users:
- name: test
  user:
    token: test-token
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, server)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenWorkersKubernetes(t *testing.T) {
	api := &apiServer{selectors: map[string]string{}}
	api.services = []corev1.Service{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "helix", Name: "workers",
			Labels:      map[string]string{kube.ComponentLabel: kube.WorkerComponent},
			Annotations: map[string]string{kube.ModelsAnnotation: "simple,mlp"}},
	}}
	name, grpcPort := "grpc", int32(8001)
	api.slices = []discoveryv1.EndpointSlice{{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "helix", Name: "workers-x", Labels: map[string]string{discoveryv1.LabelServiceName: "workers"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &grpcPort}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "worker-0"}}},
	}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	nsFile := filepath.Join(t.TempDir(), "namespace")
	if err := os.WriteFile(nsFile, []byte("helix\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--config=g.yaml", "--plaintext-loopback", "--workers-source=kubernetes", "--kubeconfig=" + writeKubeconfig(t, srv.URL)})
	if err != nil {
		t.Fatal(err)
	}
	o.kubeNamespaceFile = nsFile // the pod's own namespace
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	src, served, err := openWorkers(ctx, o, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if served != nil {
		t.Error("the worker registry is served with --workers-source=kubernetes")
	}
	t.Cleanup(func() {
		cancel()
		<-src.(*kube.Source).Done()
	})
	// The Service has no helixflow.io/sequence-models annotation, so every
	// model of it gets sequence routing (xds/kube: safe rather than cheap).
	want := []registry.Worker{{ID: "worker-0", Address: "10.0.0.1", GRPCPort: 8001, Ready: true, Pool: "default",
		Models: []registry.Model{{Name: "mlp", Ready: true, Sequence: true}, {Name: "simple", Ready: true, Sequence: true}}}}
	if got := src.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("workers after the start:\n got %+v\nwant %+v", got, want)
	}
	// The catalogue of Kubernetes workers: names and counts only (the
	// contract names models, not versions; no descriptions).
	cat := catalog.Build(src.Snapshot())
	if len(cat.GetModels()) != 2 || cat.GetModels()[1].GetName() != "simple" || cat.GetModels()[1].GetReadyWorkers() != 1 ||
		len(cat.GetModels()[1].GetVersions()) != 0 || cat.GetModels()[1].GetInfo() != nil {
		t.Errorf("catalogue of the Kubernetes workers: %v", cat)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if got := api.selectors; got["services"] != "helixflow.io/component=worker" || got["endpointslices"] != "kubernetes.io/service-name" {
		t.Errorf("label selectors asked for: %v", got)
	}
	if len(api.other) > 0 {
		t.Errorf("requests outside the namespace's services and endpointslices: %v", api.other)
	}
}

func TestOpenWorkersKubernetesErrors(t *testing.T) {
	// Nothing listens here: connections are refused at once.
	lis := httptest.NewServer(http.NotFoundHandler())
	dead := lis.URL
	lis.Close()
	tests := []struct {
		name    string
		args    []string
		nsFile  string
		wantErr string
		is      error
	}{
		{"no namespace", nil, "/nonexistent/namespace", "--kube-namespace is empty and the pod's namespace is unknown", kube.ErrNoNamespace},
		{"no such kubeconfig", []string{"--kube-namespace=helix", "--kubeconfig=/nonexistent/kubeconfig"}, "", "--kubeconfig: kubeconfig /nonexistent/kubeconfig", nil},
		{"API server unreachable", []string{"--kube-namespace=helix", "--kube-sync-timeout=300ms", "--kubeconfig=" + writeKubeconfig(t, dead)}, "",
			`no list of Services and EndpointSlices in namespace "helix" within 300ms`, kube.ErrSyncTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(append([]string{"--config=g.yaml", "--plaintext-loopback", "--workers-source=kubernetes"}, tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			if tt.nsFile != "" {
				o.kubeNamespaceFile = tt.nsFile
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, _, err = openWorkers(ctx, o, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "--workers-source=kubernetes: ") {
				t.Fatalf("openWorkers = %v, want an error with %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("openWorkers = %v, want it to wrap %v", err, tt.is)
			}
		})
	}
}
