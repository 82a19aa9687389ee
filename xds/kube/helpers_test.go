package kube

import (
	"log/slog"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// Builders for the objects the tests feed in, shaped as the API server
// and the EndpointSlice controller write them.

const testNS = "helix"

func service(ns, name, models string) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{ComponentLabel: WorkerComponent},
			// As the chart writes it: no sequence models unless a test
			// says so (withSequence).
			Annotations: map[string]string{ModelsAnnotation: models, SequenceModelsAnnotation: ""},
		},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 8001}, {Name: "http", Port: 8000}}},
	}
	if models == "<none>" {
		s.Annotations = nil
	}
	return s
}

// withSequence sets the sequence-models annotation; "<none>" removes it.
func withSequence(s *corev1.Service, models string) *corev1.Service {
	if models == "<none>" {
		delete(s.Annotations, SequenceModelsAnnotation)
	} else {
		s.Annotations[SequenceModelsAnnotation] = models
	}
	return s
}

// withPool sets the pool label.
func withPool(s *corev1.Service, pool string) *corev1.Service {
	s.Labels[PoolLabel] = pool
	return s
}

func unlabelled(s *corev1.Service) *corev1.Service {
	s.Labels = map[string]string{"app": "other"}
	return s
}

type port struct {
	name  string
	port  int32
	proto corev1.Protocol
}

var (
	grpcHTTP = []port{{"grpc", 8001, ""}, {"http", 8000, ""}}
	grpcOnly = []port{{"grpc", 8001, ""}}
)

func slice(ns, name, svc string, t discoveryv1.AddressType, ports []port, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
		},
		AddressType: t,
		Endpoints:   eps,
	}
	for _, p := range ports {
		ep := discoveryv1.EndpointPort{Name: ptr(p.name), Port: ptr(p.port)}
		if p.proto != "" {
			ep.Protocol = ptr(p.proto)
		} else {
			ep.Protocol = ptr(corev1.ProtocolTCP)
		}
		es.Ports = append(es.Ports, ep)
	}
	return es
}

func v4(name, svc string, ports []port, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return slice(testNS, name, svc, discoveryv1.AddressTypeIPv4, ports, eps...)
}

type cond int

const (
	ready cond = iota
	readyNil
	notReady
	terminating // ready false, serving true, terminating true: a draining pod
	terminatingReady
)

func endpoint(addr, pod string, c cond) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Addresses: []string{addr}}
	if pod != "" {
		ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: testNS, Name: pod}
	}
	switch c {
	case ready:
		ep.Conditions = discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)}
	case notReady:
		ep.Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false), Terminating: ptr(false)}
	case terminating:
		ep.Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
	case terminatingReady:
		ep.Conditions = discoveryv1.EndpointConditions{Ready: ptr(true), Terminating: ptr(true)}
	}
	return ep
}

func ptr[T any](v T) *T { return &v }

func TestMain(m *testing.M) {
	// client-go logs through klog; the sync-timeout test makes it complain.
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}
