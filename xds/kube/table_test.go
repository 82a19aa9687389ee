package kube

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/registry"
)

// wk is a worker as the table should hold it, in the default pool; a
// model written "name+seq" is a sequence model.
func wk(id, addr string, grpc, http uint32, routable bool, models ...string) registry.Worker {
	w := registry.Worker{ID: id, Address: addr, GRPCPort: grpc, HTTPPort: http, Ready: routable, Pool: wire.DefaultPool, Models: []registry.Model{}}
	for _, m := range models {
		name, seq := strings.CutSuffix(m, "+seq")
		w.Models = append(w.Models, registry.Model{Name: name, Ready: true, Sequence: seq})
	}
	return w
}

// inPool is w in pool.
func inPool(w registry.Worker, pool string) registry.Worker {
	w.Pool = pool
	return w
}

func TestBuildTable(t *testing.T) {
	tests := []struct {
		name     string
		services []*corev1.Service
		slices   []*discoveryv1.EndpointSlice
		want     []registry.Worker
		// problems as "<kind> <namespace/name>: <part of the error>"
		problems []string
	}{
		{
			name:     "one pool, two pods",
			services: []*corev1.Service{service(testNS, "workers", "simple,mlp")},
			slices: []*discoveryv1.EndpointSlice{v4("workers-abc", "workers", grpcHTTP,
				endpoint("10.0.0.2", "worker-1", ready), endpoint("10.0.0.1", "worker-0", readyNil))},
			want: []registry.Worker{
				wk("worker-0", "10.0.0.1", 8001, 8000, true, "mlp", "simple"),
				wk("worker-1", "10.0.0.2", 8001, 8000, true, "mlp", "simple"),
			},
		},
		{
			name:     "readiness and terminating",
			services: []*corev1.Service{service(testNS, "workers", "simple")},
			slices: []*discoveryv1.EndpointSlice{v4("workers-abc", "workers", grpcHTTP,
				endpoint("10.0.0.1", "a-ready", ready), endpoint("10.0.0.2", "b-not-ready", notReady),
				endpoint("10.0.0.3", "c-draining", terminating), endpoint("10.0.0.4", "d-terminating-but-ready", terminatingReady),
				endpoint("10.0.0.5", "e-no-conditions", readyNil))},
			want: []registry.Worker{
				wk("a-ready", "10.0.0.1", 8001, 8000, true, "simple"),
				wk("b-not-ready", "10.0.0.2", 8001, 8000, false, "simple"),
				wk("c-draining", "10.0.0.3", 8001, 8000, false, "simple"),
				wk("d-terminating-but-ready", "10.0.0.4", 8001, 8000, false, "simple"),
				wk("e-no-conditions", "10.0.0.5", 8001, 8000, true, "simple"),
			},
		},
		{
			name:     "no http port is fine",
			services: []*corev1.Service{service(testNS, "workers", "simple")},
			slices:   []*discoveryv1.EndpointSlice{v4("workers-abc", "workers", grpcOnly, endpoint("10.0.0.1", "w", ready))},
			want:     []registry.Worker{wk("w", "10.0.0.1", 8001, 0, true, "simple")},
		},
		{
			name:     "missing grpc port skips the slice, not the pool",
			services: []*corev1.Service{service(testNS, "workers", "simple")},
			slices: []*discoveryv1.EndpointSlice{
				v4("workers-a", "workers", []port{{"http", 8000, ""}, {"metrics", 8002, ""}}, endpoint("10.0.0.1", "w1", ready)),
				v4("workers-b", "workers", grpcOnly, endpoint("10.0.0.2", "w2", ready)),
			},
			want:     []registry.Worker{wk("w2", "10.0.0.2", 8001, 0, true, "simple")},
			problems: []string{`EndpointSlice helix/workers-a: no port named "grpc"`},
		},
		{
			name:     "grpc port over UDP",
			services: []*corev1.Service{service(testNS, "workers", "simple")},
			slices:   []*discoveryv1.EndpointSlice{v4("workers-a", "workers", []port{{"grpc", 8001, corev1.ProtocolUDP}}, endpoint("10.0.0.1", "w1", ready))},
			problems: []string{`EndpointSlice helix/workers-a: ports[0] "grpc": protocol UDP`},
		},
		{
			name: "a bad model name is left out of its Service; a bad annotation skips that Service only",
			services: []*corev1.Service{
				service(testNS, "bad", "simple,a/b"), service(testNS, "none", "<none>"), service(testNS, "good", "mlp"),
				service(testNS, "spaced", "my model"),
			},
			slices: []*discoveryv1.EndpointSlice{
				v4("bad-1", "bad", grpcHTTP, endpoint("10.0.0.1", "b", ready)),
				v4("none-1", "none", grpcHTTP, endpoint("10.0.0.3", "n", ready)),
				v4("good-1", "good", grpcHTTP, endpoint("10.0.0.2", "g", ready)),
				v4("spaced-1", "spaced", grpcHTTP, endpoint("10.0.0.4", "s", ready)),
			},
			want: []registry.Worker{wk("b", "10.0.0.1", 8001, 8000, true, "simple"), wk("g", "10.0.0.2", 8001, 8000, true, "mlp")},
			problems: []string{
				`Service helix/bad: annotation helixflow.io/models: entry 2 "a/b" left out`,
				`Service helix/none: annotation helixflow.io/models: missing`,
				`Service helix/spaced: annotation helixflow.io/models: entry 1 "my model" left out: not a valid model name: byte 2 is ' ', white space`,
			},
		},
		{
			name:     "multiple slices per Service",
			services: []*corev1.Service{service(testNS, "workers", "simple")},
			slices: []*discoveryv1.EndpointSlice{
				v4("workers-b", "workers", grpcHTTP, endpoint("10.0.1.1", "w3", ready)),
				v4("workers-a", "workers", grpcHTTP, endpoint("10.0.0.1", "w1", ready), endpoint("10.0.0.2", "w2", notReady)),
			},
			want: []registry.Worker{
				wk("w1", "10.0.0.1", 8001, 8000, true, "simple"),
				wk("w2", "10.0.0.2", 8001, 8000, false, "simple"),
				wk("w3", "10.0.1.1", 8001, 8000, true, "simple"),
			},
		},
		{
			name:     "an endpoint in two slices of its Service is one worker, routable only if both say so",
			services: []*corev1.Service{service(testNS, "workers", "simple")},
			slices: []*discoveryv1.EndpointSlice{
				v4("workers-a", "workers", grpcHTTP, endpoint("10.0.0.1", "w1", ready)),
				v4("workers-b", "workers", grpcHTTP, endpoint("10.0.0.1", "w1", terminating)),
			},
			want: []registry.Worker{wk("w1", "10.0.0.1", 8001, 8000, false, "simple")},
		},
		{
			name:     "a pod behind two worker Services serves both pools' models",
			services: []*corev1.Service{service(testNS, "vision", "resnet"), service(testNS, "tabular", "simple,mlp")},
			slices: []*discoveryv1.EndpointSlice{
				v4("vision-1", "vision", grpcHTTP, endpoint("10.0.0.1", "w1", ready)),
				v4("tabular-1", "tabular", grpcHTTP, endpoint("10.0.0.1", "w1", ready), endpoint("10.0.0.2", "w2", ready)),
			},
			want: []registry.Worker{
				wk("w1", "10.0.0.1", 8001, 8000, true, "mlp", "resnet", "simple"),
				wk("w2", "10.0.0.2", 8001, 8000, true, "mlp", "simple"),
			},
		},
		{
			name: "Services without the worker label and slices of other Services are ignored",
			services: []*corev1.Service{
				unlabelled(service(testNS, "db", "simple")), service(testNS, "workers", "simple"),
			},
			slices: []*discoveryv1.EndpointSlice{
				v4("db-1", "db", grpcHTTP, endpoint("10.0.9.1", "db-0", ready)),
				v4("kubernetes", "kubernetes", []port{{"https", 443, ""}}, endpoint("10.0.9.9", "", ready)),
				v4("workers-1", "workers", grpcHTTP, endpoint("10.0.0.1", "w1", ready)),
			},
			want: []registry.Worker{wk("w1", "10.0.0.1", 8001, 8000, true, "simple")},
		},
		{
			name:     "other namespaces are ignored",
			services: []*corev1.Service{service("other", "workers", "simple"), service(testNS, "workers", "mlp")},
			slices: []*discoveryv1.EndpointSlice{
				slice("other", "workers-1", "workers", discoveryv1.AddressTypeIPv4, grpcHTTP, endpoint("10.1.0.1", "x", ready)),
				v4("workers-1", "workers", grpcHTTP, endpoint("10.0.0.1", "w1", ready)),
			},
			want: []registry.Worker{wk("w1", "10.0.0.1", 8001, 8000, true, "mlp")},
		},
		{
			name:     "IPv6, and a dual-stack pod is one worker on its IPv4 address",
			services: []*corev1.Service{service(testNS, "workers", "simple")},
			slices: []*discoveryv1.EndpointSlice{
				slice(testNS, "workers-v6", "workers", discoveryv1.AddressTypeIPv6, grpcHTTP,
					endpoint("fd00::1", "dual", ready), endpoint("fd00::2", "v6-only", ready)),
				v4("workers-v4", "workers", grpcHTTP, endpoint("10.0.0.1", "dual", ready)),
			},
			want: []registry.Worker{
				wk("dual", "10.0.0.1", 8001, 8000, true, "simple"),
				wk("v6-only", "fd00::2", 8001, 8000, true, "simple"),
			},
		},
		{
			name:     "FQDN slices are refused",
			services: []*corev1.Service{service(testNS, "workers", "simple")},
			slices: []*discoveryv1.EndpointSlice{
				slice(testNS, "workers-dns", "workers", discoveryv1.AddressTypeFQDN, grpcHTTP, endpoint("worker.example.com", "", ready)),
			},
			problems: []string{`EndpointSlice helix/workers-dns: addressType "FQDN"`},
		},
		{
			name:     "bad addresses leave out those endpoints only",
			services: []*corev1.Service{service(testNS, "workers", "simple")},
			slices: []*discoveryv1.EndpointSlice{v4("workers-1", "workers", grpcHTTP,
				endpoint("fd00::1", "a", ready), endpoint("not-an-ip", "b", ready), endpoint("0.0.0.0", "c", ready),
				discoveryv1.Endpoint{}, endpoint("10.0.0.4", "d", ready))},
			want:     []registry.Worker{wk("d", "10.0.0.4", 8001, 8000, true, "simple")},
			problems: []string{`EndpointSlice helix/workers-1: endpoints[0]: address "fd00::1": not IPv4 in an IPv4 slice (and 3 more)`},
		},
		{
			name:     "no pod named: the address is the id",
			services: []*corev1.Service{service(testNS, "external", "simple")},
			slices:   []*discoveryv1.EndpointSlice{v4("external-1", "external", grpcOnly, endpoint("192.0.2.10", "", ready))},
			want:     []registry.Worker{wk("192.0.2.10", "192.0.2.10", 8001, 0, true, "simple")},
		},
		{
			name:     "a pod with two gRPC ports is two workers",
			services: []*corev1.Service{service(testNS, "a", "simple"), service(testNS, "b", "mlp")},
			slices: []*discoveryv1.EndpointSlice{
				v4("a-1", "a", []port{{"grpc", 8001, ""}}, endpoint("10.0.0.1", "w", ready)),
				v4("b-1", "b", []port{{"grpc", 9001, ""}}, endpoint("10.0.0.1", "w", ready)),
			},
			want: []registry.Worker{
				wk("w:8001", "10.0.0.1", 8001, 0, true, "simple"),
				wk("w:9001", "10.0.0.1", 9001, 0, true, "mlp"),
			},
		},
		{
			name:     "sequence-models lists the sequence models",
			services: []*corev1.Service{withSequence(service(testNS, "workers", "acc,simple"), " acc ")},
			slices:   []*discoveryv1.EndpointSlice{v4("workers-a", "workers", grpcHTTP, endpoint("10.0.0.1", "w", ready))},
			want:     []registry.Worker{wk("w", "10.0.0.1", 8001, 8000, true, "acc+seq", "simple")},
		},
		{
			name:     "without sequence-models every model gets sequence routing",
			services: []*corev1.Service{withSequence(service(testNS, "workers", "acc,simple"), "<none>")},
			slices:   []*discoveryv1.EndpointSlice{v4("workers-a", "workers", grpcHTTP, endpoint("10.0.0.1", "w", ready))},
			want:     []registry.Worker{wk("w", "10.0.0.1", 8001, 8000, true, "acc+seq", "simple+seq")},
		},
		{
			name:     "sequence-models * is every model",
			services: []*corev1.Service{withSequence(service(testNS, "workers", "acc,simple"), "*")},
			slices:   []*discoveryv1.EndpointSlice{v4("workers-a", "workers", grpcHTTP, endpoint("10.0.0.1", "w", ready))},
			want:     []registry.Worker{wk("w", "10.0.0.1", 8001, 8000, true, "acc+seq", "simple+seq")},
		},
		{
			name: "a sequence model not among the models is reported; a pod behind two Services is a sequence model's if either says so",
			services: []*corev1.Service{
				withSequence(service(testNS, "a", "acc,simple"), "acc,nope"), service(testNS, "b", "acc,mlp"),
			},
			slices: []*discoveryv1.EndpointSlice{
				v4("a-1", "a", grpcHTTP, endpoint("10.0.0.1", "w", ready)),
				v4("b-1", "b", grpcHTTP, endpoint("10.0.0.1", "w", ready)),
			},
			want:     []registry.Worker{wk("w", "10.0.0.1", 8001, 8000, true, "acc+seq", "mlp", "simple")},
			problems: []string{`Service helix/a: annotation helixflow.io/sequence-models: entry 2 "nope" left out: not one of the Service's models`},
		},
		{
			name:     "the pool label is the workers' pool; absent or empty, the default pool",
			services: []*corev1.Service{withPool(service(testNS, "canary", "simple"), "canary"), service(testNS, "main", "simple"), withPool(service(testNS, "empty", "simple"), "")},
			slices: []*discoveryv1.EndpointSlice{
				v4("canary-1", "canary", grpcHTTP, endpoint("10.0.0.2", "c", ready)),
				v4("main-1", "main", grpcHTTP, endpoint("10.0.0.1", "m", ready)),
				v4("empty-1", "empty", grpcHTTP, endpoint("10.0.0.3", "e", ready)),
			},
			want: []registry.Worker{
				inPool(wk("c", "10.0.0.2", 8001, 8000, true, "simple"), "canary"),
				wk("e", "10.0.0.3", 8001, 8000, true, "simple"),
				wk("m", "10.0.0.1", 8001, 8000, true, "simple"),
			},
		},
		{
			name:     "a bad pool label leaves the Service out",
			services: []*corev1.Service{withPool(service(testNS, "gpu", "simple"), "GPU_pool"), service(testNS, "main", "mlp")},
			slices: []*discoveryv1.EndpointSlice{
				v4("gpu-1", "gpu", grpcHTTP, endpoint("10.0.0.2", "g", ready)),
				v4("main-1", "main", grpcHTTP, endpoint("10.0.0.1", "m", ready)),
			},
			want:     []registry.Worker{wk("m", "10.0.0.1", 8001, 8000, true, "mlp")},
			problems: []string{`Service helix/gpu: label helixflow.io/pool "GPU_pool": not a valid pool name: byte 0 is 'G'`},
		},
		{
			name:     "a pod behind two pools' Services is in the lower-named pool",
			services: []*corev1.Service{withPool(service(testNS, "a", "simple"), "zeta"), withPool(service(testNS, "b", "mlp"), "alpha")},
			slices: []*discoveryv1.EndpointSlice{
				v4("a-1", "a", grpcHTTP, endpoint("10.0.0.1", "w", ready)),
				v4("b-1", "b", grpcHTTP, endpoint("10.0.0.1", "w", ready)),
			},
			want: []registry.Worker{inPool(wk("w", "10.0.0.1", 8001, 8000, true, "mlp", "simple"), "alpha")},
		},
		{
			name:     "a reused pod address listed twice is one endpoint",
			services: []*corev1.Service{service(testNS, "workers", "simple")},
			slices: []*discoveryv1.EndpointSlice{
				v4("workers-a", "workers", grpcHTTP, endpoint("10.0.0.1", "old", terminating)),
				v4("workers-b", "workers", grpcHTTP, endpoint("10.0.0.1", "new", ready)),
			},
			want: []registry.Worker{wk("new", "10.0.0.1", 8001, 8000, false, "simple")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := buildTable(testNS, tt.services, tt.slices)
			if tt.want == nil {
				tt.want = []registry.Worker{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("workers:\n got %+v\nwant %+v", got, tt.want)
			}
			if len(problems) != len(tt.problems) {
				t.Fatalf("problems = %v, want %d", problems, len(tt.problems))
			}
			for i, p := range problems {
				s := fmt.Sprintf("%s: %s", p.key(), strings.TrimPrefix(p.err.Error(), ErrInvalid.Error()+": "))
				if !strings.Contains(s, tt.problems[i]) || !errors.Is(p.err, ErrInvalid) {
					t.Errorf("problems[%d] = %q, want an ErrInvalid with %q", i, s, tt.problems[i])
				}
			}
		})
	}
}
