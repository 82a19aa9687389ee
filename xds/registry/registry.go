// Package registry is helix-xds's table of workers: workers register over
// gRPC with their address, models and readiness and hold a lease they renew;
// a lapsed lease or a deregistration removes them. Readers take a Snapshot
// and Subscribe to learn when it changed.
package registry

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
)

// Sentinel errors; the gRPC methods turn them into status codes.
var (
	ErrInvalid      = errors.New("invalid request")       // INVALID_ARGUMENT
	ErrTooMany      = errors.New("over a registry limit") // RESOURCE_EXHAUSTED
	ErrUnknownLease = errors.New("unknown lease")         // NOT_FOUND
	ErrDenied       = errors.New("not authorized")        // PERMISSION_DENIED
)

// Default lease TTL.
const DefaultTTL = 10 * time.Second

// Config configures a Registry. The zero value is usable.
type Config struct {
	// TTL is how long a lease lasts after Register or Renew (default 10s,
	// between 100ms and 1h).
	TTL time.Duration
	// SweepInterval is how often Run looks for lapsed leases (default TTL/10,
	// at least 10ms).
	SweepInterval time.Duration
	// MaxWorkers bounds the table (default 10000).
	MaxWorkers int
	// Now is the clock (default time.Now); tests pass a fake one.
	Now func() time.Time
	// Authorize, when set, is asked before any change to a worker's entry,
	// with the worker id the request is about; an error denies the request
	// (PERMISSION_DENIED unless it carries its own gRPC status). Use it to
	// tie worker ids to client certificates.
	Authorize func(ctx context.Context, workerID string) error
	// Registerer, when set, receives the registry's metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Model is a model a worker has, versions ascending.
type Model struct {
	Name     string
	Versions []string
	Ready    bool
}

// Worker is one registered worker as seen in a Snapshot.
type Worker struct {
	ID       string
	Address  string
	GRPCPort uint32
	HTTPPort uint32 // 0: no HTTP
	Ready    bool
	Models   []Model // sorted by name
	// Registered is when this entry was created (the worker's last Register).
	Registered time.Time
	// Expires is when the lease lapses unless renewed.
	Expires time.Time
}

// Serves reports whether requests for model may be routed to w: the worker
// is ready and has the model ready.
func (w *Worker) Serves(model string) bool {
	if !w.Ready {
		return false
	}
	i, ok := slices.BinarySearchFunc(w.Models, model, func(m Model, name string) int { return cmp.Compare(m.Name, name) })
	// The registry refuses a ready model without versions; the Kubernetes
	// source's models have none.
	return ok && w.Models[i].Ready
}

// readyEndpoints counts the (worker, model) pairs that can take requests.
func (w *Worker) readyEndpoints() int {
	if !w.Ready {
		return 0
	}
	n := 0
	for _, m := range w.Models {
		if m.Ready && len(m.Versions) > 0 {
			n++
		}
	}
	return n
}

func (w *Worker) clone() Worker {
	c := *w
	c.Models = make([]Model, len(w.Models))
	for i, m := range w.Models {
		c.Models[i] = Model{Name: m.Name, Versions: slices.Clone(m.Versions), Ready: m.Ready}
	}
	return c
}

type endpointKey struct {
	address string
	port    uint32
}

type entry struct {
	worker Worker
	lease  string
}

// Registry is the worker table. It implements registryv1.RegistryServer and
// is safe for concurrent use.
type Registry struct {
	registryv1.UnimplementedRegistryServer

	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu         sync.Mutex
	byID       map[string]*entry
	byLease    map[string]*entry
	byEndpoint map[endpointKey]*entry
	endpoints  int // ready (worker, model) pairs, for the gauge
	subs       map[*chan struct{}]struct{}
}

var _ registryv1.RegistryServer = (*Registry)(nil)

// New returns an empty registry. Call Run to expire lapsed leases.
func New(cfg Config) (*Registry, error) {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < 100*time.Millisecond || cfg.TTL > time.Hour {
		return nil, fmt.Errorf("registry: TTL %v: want 100ms to 1h", cfg.TTL)
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = max(cfg.TTL/10, 10*time.Millisecond)
	}
	if cfg.SweepInterval < 10*time.Millisecond {
		return nil, fmt.Errorf("registry: SweepInterval %v: want at least 10ms", cfg.SweepInterval)
	}
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = DefaultMaxWorkers
	}
	if cfg.MaxWorkers < 0 {
		return nil, fmt.Errorf("registry: MaxWorkers %d: want a positive number", cfg.MaxWorkers)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Registry{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "registry"),
		byID:       make(map[string]*entry),
		byLease:    make(map[string]*entry),
		byEndpoint: make(map[endpointKey]*entry),
		subs:       make(map[*chan struct{}]struct{}),
	}
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer)
		if err != nil {
			return nil, err
		}
		r.metrics = m
	}
	return r, nil
}

// TTL is the lease duration granted to workers.
func (r *Registry) TTL() time.Duration { return r.cfg.TTL }

// Snapshot returns a copy of the table, ordered by worker id.
func (r *Registry) Snapshot() []Worker {
	r.mu.Lock()
	out := make([]Worker, 0, len(r.byID))
	for _, e := range r.byID {
		out = append(out, e.worker.clone())
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Worker) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Subscribe returns a channel that receives a value after the table changes
// in anything but lease times: a worker added or removed, its address, ports,
// readiness or models. Signals are coalesced (buffer of one): a reader that
// falls behind sees one signal for many changes and then reads Snapshot. The
// subscription ends when ctx does.
func (r *Registry) Subscribe(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	r.subs[&ch] = struct{}{}
	r.mu.Unlock()
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		delete(r.subs, &ch)
		r.mu.Unlock()
	})
	return ch
}

// Run removes lapsed leases until ctx ends. Without Run, leases never lapse.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.sweep()
		}
	}
}

// sweep removes every entry whose lease has lapsed and reports how many.
func (r *Registry) sweep() int {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.byID {
		if now.Before(e.worker.Expires) {
			continue
		}
		r.removeLocked(e)
		n++
		r.log.Warn("worker lease lapsed", "worker_id", e.worker.ID, "address", e.worker.Address, "expired", e.worker.Expires)
	}
	if n > 0 {
		r.metrics.expired(n)
		r.changedLocked()
	}
	return n
}

// register adds w under a new lease, replacing any entry with the same id
// (the worker restarted) or the same gRPC endpoint (a restarted worker under
// a new id: two entries cannot both be listening there).
func (r *Registry) register(w Worker) (string, error) {
	lease := newLeaseID()
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.byID[w.ID]
	other := r.byEndpoint[endpointKey{w.Address, w.GRPCPort}]
	if other == old {
		other = nil
	}
	replaced := 0
	if old != nil {
		replaced++
	}
	if other != nil {
		replaced++
	}
	if len(r.byID)-replaced >= r.cfg.MaxWorkers {
		return "", fmt.Errorf("%w: registry holds %d workers, the limit", ErrTooMany, r.cfg.MaxWorkers)
	}
	if old != nil {
		r.removeLocked(old)
		r.log.Info("worker registered again; replacing its entry", "worker_id", w.ID)
	}
	if other != nil {
		r.removeLocked(other)
		r.log.Warn("worker registered at an endpoint held by another worker id; replacing it",
			"worker_id", w.ID, "replaced_worker_id", other.worker.ID, "address", w.Address, "grpc_port", w.GRPCPort)
	}
	now := r.cfg.Now()
	w.Registered = now
	w.Expires = now.Add(r.cfg.TTL)
	e := &entry{worker: w, lease: lease}
	r.byID[w.ID] = e
	r.byLease[lease] = e
	r.byEndpoint[endpointKey{w.Address, w.GRPCPort}] = e
	r.endpoints += w.readyEndpoints()
	r.changedLocked()
	return lease, nil
}

// lookup returns the worker id holding a live lease.
func (r *Registry) lookup(lease string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, err := r.liveLocked(lease)
	if err != nil {
		return "", err
	}
	return e.worker.ID, nil
}

// liveLocked finds a lease that has not lapsed; a lapsed one the sweep has
// not reached yet is removed here, so that the answer never depends on when
// the sweep last ran.
func (r *Registry) liveLocked(lease string) (*entry, error) {
	e := r.byLease[lease]
	if e == nil {
		return nil, fmt.Errorf("%w: lease_id: no such lease (lapsed, deregistered, replaced, or the registry restarted); register again", ErrUnknownLease)
	}
	if !r.cfg.Now().Before(e.worker.Expires) {
		r.removeLocked(e)
		r.metrics.expired(1)
		r.changedLocked()
		r.log.Warn("worker lease lapsed", "worker_id", e.worker.ID, "address", e.worker.Address, "expired", e.worker.Expires)
		return nil, fmt.Errorf("%w: lease_id: the lease lapsed; register again", ErrUnknownLease)
	}
	return e, nil
}

// renew extends the lease held by workerID and records its current state.
func (r *Registry) renew(lease, workerID string, models []Model, ready bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, err := r.liveLocked(lease)
	if err != nil {
		return err
	}
	if e.worker.ID != workerID {
		// Replaced between the authorization and now.
		return fmt.Errorf("%w: lease_id: the lease was replaced; register again", ErrUnknownLease)
	}
	e.worker.Expires = r.cfg.Now().Add(r.cfg.TTL)
	if e.worker.Ready == ready && slices.EqualFunc(e.worker.Models, models, equalModel) {
		return nil
	}
	r.endpoints -= e.worker.readyEndpoints()
	e.worker.Ready, e.worker.Models = ready, models
	r.endpoints += e.worker.readyEndpoints()
	r.changedLocked()
	return nil
}

func (r *Registry) deregister(lease, workerID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byLease[lease]
	if e == nil || e.worker.ID != workerID {
		return fmt.Errorf("%w: lease_id: no such lease", ErrUnknownLease)
	}
	r.removeLocked(e)
	r.changedLocked()
	return nil
}

func (r *Registry) removeLocked(e *entry) {
	delete(r.byID, e.worker.ID)
	delete(r.byLease, e.lease)
	delete(r.byEndpoint, endpointKey{e.worker.Address, e.worker.GRPCPort})
	r.endpoints -= e.worker.readyEndpoints()
}

// changedLocked updates the gauges and signals subscribers without blocking.
func (r *Registry) changedLocked() {
	r.metrics.set(len(r.byID), r.endpoints)
	for ch := range r.subs {
		select {
		case *ch <- struct{}{}:
		default:
		}
	}
}

func equalModel(a, b Model) bool {
	return a.Name == b.Name && a.Ready == b.Ready && slices.Equal(a.Versions, b.Versions)
}

func newLeaseID() string {
	var b [leaseIDLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24+)
	return hex.EncodeToString(b[:])
}
