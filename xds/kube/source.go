// Package kube keeps helix-xds's worker table from Kubernetes: worker pools
// are Services labelled helixflow.io/component=worker whose
// helixflow.io/models annotation names the models they serve (and
// helixflow.io/sequence-models those of them that use sequence batching),
// and their EndpointSlices give the endpoints. Readers take a Snapshot and Subscribe
// to changes, as with the worker registry (xds/registry).
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/helixflow/helixflow/xds/registry"
)

// ErrSyncTimeout: the informers did not list Services and EndpointSlices in
// time (API server unreachable, or RBAC missing).
var ErrSyncTimeout = errors.New("kubernetes: informer caches did not sync")

// DefaultSyncTimeout is Config.SyncTimeout when unset.
const DefaultSyncTimeout = 30 * time.Second

// Config configures a Source.
type Config struct {
	// Client talks to the API server (kubernetes.NewForConfig, or the fake
	// clientset in tests).
	Client kubernetes.Interface
	// Namespace is the one namespace watched (required).
	Namespace string
	// SyncTimeout bounds Start's wait for the first list (default 30s).
	SyncTimeout time.Duration
	// Registerer, when set, receives the source's metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Source is the worker table built from one namespace's worker Services
// and their EndpointSlices. It is safe for concurrent use.
type Source struct {
	cfg       Config
	log       *slog.Logger
	services  corelisters.ServiceLister
	epSlices  discoverylisters.EndpointSliceLister
	svcSel    labels.Selector
	sliceSel  labels.Selector
	factories []informers.SharedInformerFactory
	pending   chan struct{} // an informer saw an event; buffer of one
	done      chan struct{}
	workers   *prometheus.GaugeVec
	rejected  *prometheus.GaugeVec

	buildMu  sync.Mutex        // one rebuild at a time
	problems map[string]string // last logged problem per object

	mu      sync.Mutex
	table   []registry.Worker
	started bool
	subs    map[chan struct{}]struct{}
}

// New returns a Source; Start fills it.
func New(cfg Config) (*Source, error) {
	if cfg.Client == nil {
		return nil, errors.New("kube: Config.Client is required")
	}
	if cfg.Namespace == "" {
		return nil, errors.New("kube: Config.Namespace is required")
	}
	if err := ValidNamespace(cfg.Namespace); err != nil {
		return nil, err
	}
	if cfg.SyncTimeout == 0 {
		cfg.SyncTimeout = DefaultSyncTimeout
	}
	if cfg.SyncTimeout < 0 {
		return nil, fmt.Errorf("kube: SyncTimeout %v: want a positive duration", cfg.SyncTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	hasService, err := labels.NewRequirement(discoveryv1.LabelServiceName, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	s := &Source{
		cfg:      cfg,
		log:      cfg.Logger,
		svcSel:   labels.SelectorFromSet(labels.Set{ComponentLabel: WorkerComponent}),
		sliceSel: labels.NewSelector().Add(*hasService),
		pending:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		problems: map[string]string{},
		table:    []registry.Worker{},
		subs:     map[chan struct{}]struct{}{},
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "helix_xds_kube_workers",
			Help: "Workers found in the EndpointSlices of worker Services, by state (routable, unroutable).",
		}, []string{"state"}),
		rejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "helix_xds_kube_rejected_objects",
			Help: "Worker Services and their EndpointSlices left out, wholly or in part, for breaking the contract (see the log), by kind.",
		}, []string{"kind"}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.workers, s.rejected} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("kube: register metrics: %w", err)
			}
		}
	}
	// One factory per label selector: both restricted to the namespace.
	svcFactory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithNamespace(cfg.Namespace), informers.WithTransform(dropManagedFields),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = s.svcSel.String() }))
	sliceFactory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithNamespace(cfg.Namespace), informers.WithTransform(dropManagedFields),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = s.sliceSel.String() }))
	svcInformer := svcFactory.Core().V1().Services()
	sliceInformer := sliceFactory.Discovery().V1().EndpointSlices()
	poke := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.poke() },
		UpdateFunc: func(any, any) { s.poke() },
		DeleteFunc: func(any) { s.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{svcInformer.Informer(), sliceInformer.Informer()} {
		if _, err := inf.AddEventHandler(poke); err != nil {
			return nil, fmt.Errorf("kube: %w", err)
		}
	}
	s.services, s.epSlices = svcInformer.Lister(), sliceInformer.Lister()
	s.factories = []informers.SharedInformerFactory{svcFactory, sliceFactory}
	return s, nil
}

// Start lists and watches Services and EndpointSlices until ctx ends, and
// returns once the first lists are in (the table is then complete), or
// with an error wrapping ErrSyncTimeout after SyncTimeout, having stopped
// what it started. Done is closed when everything Start began has stopped.
// Start may be called once.
func (s *Source) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("kube: Start called twice")
	}
	s.started = true
	s.mu.Unlock()

	runCtx, cancel := context.WithCancel(ctx)
	for _, f := range s.factories {
		f.StartWithContext(runCtx)
	}
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		s.loop(runCtx)
	}()
	go func() {
		<-runCtx.Done()
		cancel() // releases runCtx's resources once ctx ended
		for _, f := range s.factories {
			f.Shutdown()
		}
		<-loopDone
		s.closeSubs()
		close(s.done)
	}()

	syncCtx, stop := context.WithTimeoutCause(runCtx, s.cfg.SyncTimeout, ErrSyncTimeout)
	defer stop()
	for _, f := range s.factories {
		if err := f.WaitForCacheSyncWithContext(syncCtx).AsError(); err != nil {
			cancel()
			<-s.done // a failed Start leaves nothing running
			if errors.Is(err, ErrSyncTimeout) {
				return fmt.Errorf("kube: no list of Services and EndpointSlices in namespace %q within %v (is the API server reachable, and may this service account get/list/watch services and endpointslices.discovery.k8s.io there?): %w",
					s.cfg.Namespace, s.cfg.SyncTimeout, err)
			}
			return fmt.Errorf("kube: %w", err)
		}
	}
	s.rebuild()
	n := len(s.Snapshot())
	s.log.Info("watching worker Services and EndpointSlices", "namespace", s.cfg.Namespace, "workers", n)
	return nil
}

// Done is closed once the informers stopped after ctx of Start ended.
func (s *Source) Done() <-chan struct{} { return s.done }

// Snapshot returns a copy of the table, ordered by worker id. A worker's
// Ready is its endpoint's (ready, not terminating); its models are those
// its Services declare, each Ready, without versions or Info (the contract
// names models only): the model catalogue (xds/catalog) lists Kubernetes
// workers' models by name, with their worker counts.
func (s *Source) Snapshot() []registry.Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]registry.Worker, len(s.table))
	for i, w := range s.table {
		out[i] = w
		out[i].Models = slices.Clone(w.Models)
	}
	return out
}

// Subscribe returns a channel that receives a value after the table
// changed. Signals are coalesced (buffer of one); the channel is closed
// when ctx ends or the Source stops.
func (s *Source) Subscribe(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		close(ch)
		return ch
	default:
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.subs[ch]; ok {
			delete(s.subs, ch)
			close(ch)
		}
	})
	return ch
}

func (s *Source) closeSubs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		delete(s.subs, ch)
		close(ch)
	}
}

// poke is called by the informers' handlers: it must not block them.
func (s *Source) poke() {
	select {
	case s.pending <- struct{}{}:
	default:
	}
}

func (s *Source) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.pending:
			s.rebuild()
		}
	}
}

// rebuild recomputes the table from the informers' caches, logs what is
// newly left out or fixed, and signals subscribers if the table changed.
func (s *Source) rebuild() {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	ns := s.cfg.Namespace
	svcs, err := s.services.Services(ns).List(s.svcSel)
	if err != nil {
		s.log.Error("listing cached Services failed", "error", err)
		return
	}
	eps, err := s.epSlices.EndpointSlices(ns).List(s.sliceSel)
	if err != nil {
		s.log.Error("listing cached EndpointSlices failed", "error", err)
		return
	}
	table, problems := buildTable(ns, svcs, eps)
	s.report(problems)
	var routable int
	for _, w := range table {
		if w.Ready {
			routable++
		}
	}
	s.workers.WithLabelValues("routable").Set(float64(routable))
	s.workers.WithLabelValues("unroutable").Set(float64(len(table) - routable))

	s.mu.Lock()
	defer s.mu.Unlock()
	if reflect.DeepEqual(s.table, table) {
		return
	}
	s.table = table
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// report logs each problem once (again when its message changes) and
// each fix; the problem list is rebuilt on every event.
func (s *Source) report(problems []problem) {
	seen := make(map[string]struct{}, len(problems))
	counts := map[string]int{"Service": 0, "EndpointSlice": 0}
	for _, p := range problems {
		k := p.key()
		seen[k] = struct{}{}
		counts[p.kind]++
		msg := p.err.Error()
		if s.problems[k] == msg {
			continue
		}
		s.problems[k] = msg
		switch {
		case p.partial:
			s.log.Warn("models of a worker Service left out; its other models serve", "service", p.name, "error", p.err)
		case p.kind == "Service":
			s.log.Error("worker Service skipped; its pods get no traffic until it is fixed", "service", p.name, "error", p.err)
		default:
			s.log.Error("EndpointSlice of a worker Service left out, wholly or in part", "endpointslice", p.name, "service", p.service, "error", p.err)
		}
	}
	for k := range s.problems {
		if _, ok := seen[k]; !ok {
			delete(s.problems, k)
			s.log.Info("fixed or removed; no longer left out", "object", k)
		}
	}
	for kind, n := range counts {
		s.rejected.WithLabelValues(kind).Set(float64(n))
	}
}

// dropManagedFields keeps server-side-apply bookkeeping out of the caches.
func dropManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
