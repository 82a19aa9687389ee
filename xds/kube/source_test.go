package kube

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/helixflow/helixflow/xds/registry"
)

// syncBuffer is a log sink the informer goroutines may write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	client *fake.Clientset
	src    *Source
	sub    <-chan struct{}
	log    *syncBuffer
	reg    *prometheus.Registry
	cancel context.CancelFunc
}

// start runs a Source on a fake clientset holding objs, and stops it at
// the end of the test.
func start(t *testing.T, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{client: fake.NewClientset(objs...), log: &syncBuffer{}, reg: prometheus.NewRegistry()}
	src, err := New(Config{
		Client: h.client, Namespace: testNS, SyncTimeout: 10 * time.Second, Registerer: h.reg,
		Logger: slog.New(slog.NewTextHandler(h.log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.src, h.cancel = src, cancel
	h.sub = src.Subscribe(ctx)
	if err := src.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-src.Done():
		case <-time.After(10 * time.Second):
			t.Error("the source did not stop")
		}
	})
	return h
}

// await waits for the table to become want, checking after each signal
// of the subscription: a change that does not signal fails the test.
func (h *harness) await(t *testing.T, want []registry.Worker) {
	t.Helper()
	if want == nil {
		want = []registry.Worker{}
	}
	timeout := time.After(10 * time.Second)
	for {
		got := h.src.Snapshot()
		if reflect.DeepEqual(got, want) {
			return
		}
		select {
		case _, ok := <-h.sub:
			if !ok {
				t.Fatal("subscription closed")
			}
		case <-timeout:
			t.Fatalf("no signal for the table:\n got %+v\nwant %+v", got, want)
		}
	}
}

func TestSourceFollowsTheCluster(t *testing.T) {
	ctx := context.Background()
	type step struct {
		name string
		do   func(c *fake.Clientset) error
		want []registry.Worker
	}
	createSvc := func(s *corev1.Service) func(*fake.Clientset) error {
		return func(c *fake.Clientset) error {
			_, err := c.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
			return err
		}
	}
	updateSvc := func(s *corev1.Service) func(*fake.Clientset) error {
		return func(c *fake.Clientset) error {
			_, err := c.CoreV1().Services(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
			return err
		}
	}
	createSlice := func(es *discoveryv1.EndpointSlice) func(*fake.Clientset) error {
		return func(c *fake.Clientset) error {
			_, err := c.DiscoveryV1().EndpointSlices(es.Namespace).Create(ctx, es, metav1.CreateOptions{})
			return err
		}
	}
	updateSlice := func(es *discoveryv1.EndpointSlice) func(*fake.Clientset) error {
		return func(c *fake.Clientset) error {
			_, err := c.DiscoveryV1().EndpointSlices(es.Namespace).Update(ctx, es, metav1.UpdateOptions{})
			return err
		}
	}
	deleteSlice := func(name string) func(*fake.Clientset) error {
		return func(c *fake.Clientset) error {
			return c.DiscoveryV1().EndpointSlices(testNS).Delete(ctx, name, metav1.DeleteOptions{})
		}
	}
	deleteSvc := func(name string) func(*fake.Clientset) error {
		return func(c *fake.Clientset) error {
			return c.CoreV1().Services(testNS).Delete(ctx, name, metav1.DeleteOptions{})
		}
	}
	w0 := endpoint("10.0.0.1", "worker-0", ready)
	w1 := endpoint("10.0.0.2", "worker-1", ready)
	w2 := endpoint("10.0.1.1", "worker-2", ready)
	steps := []step{
		{"a worker Service without slices has no workers", createSvc(service(testNS, "workers", "simple")), nil},
		{"its slice adds the workers", createSlice(v4("workers-a", "workers", grpcHTTP, w0, w1)), []registry.Worker{
			wk("worker-0", "10.0.0.1", 8001, 8000, true, "simple"), wk("worker-1", "10.0.0.2", 8001, 8000, true, "simple"),
		}},
		{"a pod going unready", updateSlice(v4("workers-a", "workers", grpcHTTP, w0, endpoint("10.0.0.2", "worker-1", notReady))), []registry.Worker{
			wk("worker-0", "10.0.0.1", 8001, 8000, true, "simple"), wk("worker-1", "10.0.0.2", 8001, 8000, false, "simple"),
		}},
		{"a pod terminating", updateSlice(v4("workers-a", "workers", grpcHTTP, endpoint("10.0.0.1", "worker-0", terminating))), []registry.Worker{
			wk("worker-0", "10.0.0.1", 8001, 8000, false, "simple"),
		}},
		{"a second slice", createSlice(v4("workers-b", "workers", grpcHTTP, w2)), []registry.Worker{
			wk("worker-0", "10.0.0.1", 8001, 8000, false, "simple"), wk("worker-2", "10.0.1.1", 8001, 8000, true, "simple"),
		}},
		{"the first slice deleted", deleteSlice("workers-a"), []registry.Worker{
			wk("worker-2", "10.0.1.1", 8001, 8000, true, "simple"),
		}},
		{"models changed", updateSvc(service(testNS, "workers", "simple,mlp")), []registry.Worker{
			wk("worker-2", "10.0.1.1", 8001, 8000, true, "mlp", "simple"),
		}},
		{"a bad model name is left out, the others serve", updateSvc(service(testNS, "workers", "simple,bad model")), []registry.Worker{
			wk("worker-2", "10.0.1.1", 8001, 8000, true, "simple"),
		}},
		{"no valid model skips the Service", updateSvc(service(testNS, "workers", "bad model")), nil},
		{"fixed", updateSvc(service(testNS, "workers", "mlp")), []registry.Worker{
			wk("worker-2", "10.0.1.1", 8001, 8000, true, "mlp"),
		}},
		{"a slice without a grpc port", updateSlice(v4("workers-b", "workers", []port{{"http", 8000, ""}}, w2)), nil},
		{"the port back", updateSlice(v4("workers-b", "workers", grpcOnly, w2)), []registry.Worker{
			wk("worker-2", "10.0.1.1", 8001, 0, true, "mlp"),
		}},
		{"the worker label removed", updateSvc(unlabelled(service(testNS, "workers", "mlp"))), nil},
		{"the label back", updateSvc(service(testNS, "workers", "mlp")), []registry.Worker{
			wk("worker-2", "10.0.1.1", 8001, 0, true, "mlp"),
		}},
		{"the Service deleted", deleteSvc("workers"), nil},
	}
	h := start(t)
	for _, s := range steps {
		if err := s.do(h.client); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		t.Run(s.name, func(t *testing.T) { h.await(t, s.want) })
		if t.Failed() {
			return
		}
	}
	log := h.log.String()
	for _, want := range []string{
		`level=WARN msg="models of a worker Service left out; its other models serve" service=helix/workers error="invalid: annotation helixflow.io/models: entry 2 \"bad model\" left out: not a valid model name: byte 3 is ' ', white space"`,
		`msg="worker Service skipped; its pods get no traffic until it is fixed" service=helix/workers error="invalid: annotation helixflow.io/models: entry 1 \"bad model\" left out`,
		`endpointslice=helix/workers-b service=helix/workers error="invalid: no port named \"grpc\"`,
		`msg="fixed or removed; no longer left out" object="Service helix/workers"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	for _, msg := range []string{"worker Service skipped", "models of a worker Service left out"} {
		if n := strings.Count(log, msg); n != 1 {
			t.Errorf("%q logged %d times, want once", msg, n)
		}
	}
}

func TestSourceStartsWithWhatIsThere(t *testing.T) {
	// Another namespace holds the same objects, and more; none of it shows.
	other := func(o metav1.Object) runtime.Object { o.SetNamespace("other"); return o.(runtime.Object) }
	h := start(t,
		service(testNS, "workers", "simple"),
		v4("workers-a", "workers", grpcHTTP, endpoint("10.0.0.1", "worker-0", ready)),
		slice(testNS, "workers-v6", "workers", discoveryv1.AddressTypeIPv6, grpcHTTP, endpoint("fd00::7", "worker-6", ready)),
		service(testNS, "bad", "a/b"),
		v4("bad-a", "bad", grpcHTTP, endpoint("10.0.0.9", "bad-0", ready)),
		other(service(testNS, "workers", "mlp")),
		other(v4("workers-a", "workers", grpcHTTP, endpoint("10.9.0.1", "worker-0", ready))),
		other(v4("workers-b", "workers", grpcHTTP, endpoint("10.9.0.2", "other-1", ready))),
	)
	// Start returned: the table is complete without waiting.
	want := []registry.Worker{
		wk("worker-0", "10.0.0.1", 8001, 8000, true, "simple"),
		wk("worker-6", "fd00::7", 8001, 8000, true, "simple"),
	}
	if got := h.src.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Start:\n got %+v\nwant %+v", got, want)
	}
	// Changes in the other namespace are not seen either.
	if _, err := h.client.DiscoveryV1().EndpointSlices("other").Create(context.Background(),
		other(v4("workers-c", "workers", grpcHTTP, endpoint("10.9.0.3", "other-2", ready))).(*discoveryv1.EndpointSlice), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.DiscoveryV1().EndpointSlices(testNS).Create(context.Background(),
		v4("workers-c", "workers", grpcHTTP, endpoint("10.0.0.3", "worker-3", notReady)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.await(t, append(want[:1:1], wk("worker-3", "10.0.0.3", 8001, 8000, false, "simple"), want[1]))

	metrics := `
# HELP helix_xds_kube_rejected_objects Worker Services and their EndpointSlices left out, wholly or in part, for breaking the contract (see the log), by kind.
# TYPE helix_xds_kube_rejected_objects gauge
helix_xds_kube_rejected_objects{kind="EndpointSlice"} 0
helix_xds_kube_rejected_objects{kind="Service"} 1
# HELP helix_xds_kube_workers Workers found in the EndpointSlices of worker Services, by state (routable, unroutable).
# TYPE helix_xds_kube_workers gauge
helix_xds_kube_workers{state="routable"} 2
helix_xds_kube_workers{state="unroutable"} 1
`
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(metrics)); err != nil {
		t.Fatal(err)
	}
}

func TestSourceSignalsChangesOnly(t *testing.T) {
	h := start(t, service(testNS, "workers", "simple"), v4("workers-a", "workers", grpcHTTP, endpoint("10.0.0.1", "w", ready)))
	// Start filled the table (one signal); nothing changed since.
	select {
	case <-h.sub:
	default:
		t.Fatal("filling the table did not signal")
	}
	select {
	case <-h.sub:
		t.Fatal("a signal without a change")
	default:
	}
	ctx := context.Background()
	// Objects that do not change the table: a Service without the label,
	// another Service's slice, a label on the worker Service.
	if _, err := h.client.CoreV1().Services(testNS).Create(ctx, unlabelled(service(testNS, "db", "simple")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.DiscoveryV1().EndpointSlices(testNS).Create(ctx, v4("db-a", "db", grpcHTTP, endpoint("10.0.0.5", "db-0", ready)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := service(testNS, "workers", "simple")
	s.Labels["team"] = "ml"
	if _, err := h.client.CoreV1().Services(testNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Then one that does: the signal that follows must be its only one.
	if _, err := h.client.DiscoveryV1().EndpointSlices(testNS).Update(ctx, v4("workers-a", "workers", grpcHTTP, endpoint("10.0.0.1", "w", notReady)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []registry.Worker{wk("w", "10.0.0.1", 8001, 8000, false, "simple")}
	select {
	case <-h.sub:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal for the change")
	}
	if got := h.src.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("the first signal came before the change: %+v", got)
	}
}

func TestSourceStopsWithItsContext(t *testing.T) {
	client := fake.NewClientset(service(testNS, "workers", "simple"))
	src, err := New(Config{Client: client, Namespace: testNS, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	subCtx, subCancel := context.WithCancel(context.Background())
	defer subCancel()
	early := src.Subscribe(subCtx)
	ended, endSub := context.WithCancel(context.Background())
	short := src.Subscribe(ended)
	if err := src.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx); err == nil {
		t.Error("a second Start succeeded")
	}
	endSub()
	closed := make(chan struct{})
	go func() {
		for range short {
		}
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("a subscription whose context ended is still open")
	}
	cancel()
	select {
	case <-src.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the source did not stop after its context ended")
	}
	for range early { // ends when the source closes it
	}
	if _, ok := <-src.Subscribe(subCtx); ok {
		t.Fatal("a subscription to a stopped source is open")
	}
}

func TestSourceSyncTimeout(t *testing.T) {
	client := fake.NewClientset()
	// RBAC without list on endpointslices looks like this to the informer.
	client.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(`endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:helix:helix-xds" cannot list resource "endpointslices"`)
	})
	src, err := New(Config{Client: client, Namespace: testNS, SyncTimeout: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = src.Start(ctx)
	if !errors.Is(err, ErrSyncTimeout) || !strings.Contains(err.Error(), `namespace "helix"`) || !strings.Contains(err.Error(), "endpointslices") {
		t.Fatalf("Start = %v, want ErrSyncTimeout naming the namespace and the resources", err)
	}
	// A failed Start stops what it started, without waiting for ctx.
	select {
	case <-src.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the informers of a failed Start kept running")
	}
}

func TestNewRejects(t *testing.T) {
	client := fake.NewClientset()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no client", Config{Namespace: testNS}, "Client is required"},
		{"no namespace", Config{Client: client}, "Namespace is required"},
		{"bad namespace", Config{Client: client, Namespace: "Helix_NS"}, `namespace "Helix_NS"`},
		{"negative timeout", Config{Client: client, Namespace: testNS, SyncTimeout: -time.Second}, "SyncTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
