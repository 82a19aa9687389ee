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
	// Identify, when set, names the caller of every request (helix-xds:
	// WorkerIdentity, the SPIFFE ID of its client certificate). A worker id
	// belongs to the identity that registered it while its lease lives:
	// another identity can neither renew, end nor replace it, nor take its
	// gRPC endpoint. An error refuses the request (PERMISSION_DENIED unless
	// it carries its own gRPC status). nil: callers are anonymous (plaintext
	// on loopback, development) and nothing is bound.
	Identify func(ctx context.Context) (string, error)
	// Registerer, when set, receives the registry's metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Model is a model a worker has, versions ascending.
type Model struct {
	Name     string
	Versions []string
	Ready    bool
	// Sequence: the model uses sequence batching (its info's
	// sequence_batching, read even when the rest of the info failed the
	// check), so the gateway keeps each sequence on one worker. From
	// Kubernetes: the Service's sequence-models annotation (xds/kube).
	Sequence bool
	// Info describes the model for the catalogue (xds/catalog): what the
	// worker reported, checked (checkInfo); nil when it sent none or one
	// that failed the check, and always from Kubernetes. Read-only.
	Info *registryv1.ModelInfo
}

// Worker is one registered worker as seen in a Snapshot.
type Worker struct {
	ID       string
	Address  string
	GRPCPort uint32
	HTTPPort uint32 // 0: no HTTP
	Ready    bool
	// Pool is the worker pool it belongs to (RegisterRequest.pool, or the
	// Kubernetes Service's pool label); "" reads as wire.DefaultPool (the
	// registry and xds/kube write it out).
	Pool string
	// Models, sorted by name, are shared by every Snapshot until the
	// worker's models change (then replaced, never modified): read-only.
	Models []Model
	// Identity registered it (Config.Identify; "" without one).
	Identity string
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

// clone copies w for a Snapshot; Models are shared (read-only, see
// Worker): with 100 workers of 1,000 models, copying them was most of a
// snapshot, and the builder tells an unchanged worker by them.
func (w *Worker) clone() Worker { return *w }

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
	// models restricts what identities may advertise (SetModels).
	models map[string][]string
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
// readiness or models (sequence batching included). A change in a model's
// Info alone is not signalled (nothing else is routed by it; the
// catalogue reads Snapshot when asked). Signals are coalesced (buffer of one): a reader that
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
// a new id: two entries cannot both be listening there), provided the same
// identity registered it or its lease lapsed.
func (r *Registry) register(w Worker) (string, error) {
	lease := newLeaseID()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.admitLocked(w.Identity, w.Models); err != nil {
		return "", err
	}
	old := r.byID[w.ID]
	other := r.byEndpoint[endpointKey{w.Address, w.GRPCPort}]
	if other == old {
		other = nil
	}
	now := r.cfg.Now()
	if old != nil && old.worker.Identity != w.Identity && now.Before(old.worker.Expires) {
		return "", fmt.Errorf("%w: worker_id %q is held by another identity (%s) under a live lease: a worker id belongs to the identity that registered it until it deregisters or its lease lapses", ErrDenied, w.ID, old.worker.Identity)
	}
	if other != nil && other.worker.Identity != w.Identity && now.Before(other.worker.Expires) {
		return "", fmt.Errorf("%w: address %s grpc_port %d is held by worker_id %q of another identity (%s) under a live lease", ErrDenied, w.Address, w.GRPCPort, other.worker.ID, other.worker.Identity)
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

// renew extends a lease of caller's and records the worker's current state.
func (r *Registry) renew(lease, caller string, models []Model, ready bool) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, err := r.liveLocked(lease)
	if err != nil {
		return "", err
	}
	if err := ownedLocked(e, caller); err != nil {
		return "", err
	}
	if err := r.admitLocked(caller, models); err != nil {
		return e.worker.ID, err
	}
	e.worker.Expires = r.cfg.Now().Add(r.cfg.TTL)
	if e.worker.Ready == ready && slices.EqualFunc(e.worker.Models, models, equalModel) {
		// The same routing; a new Info replaces the models without a
		// signal. Unchanged, they stay the same array, by which the
		// builder tells an unchanged worker.
		if !slices.EqualFunc(e.worker.Models, models, func(a, b Model) bool { return equalInfo(a.Info, b.Info) }) {
			e.worker.Models = models
		}
		return e.worker.ID, nil
	}
	r.endpoints -= e.worker.readyEndpoints()
	e.worker.Ready, e.worker.Models = ready, models
	r.endpoints += e.worker.readyEndpoints()
	r.changedLocked()
	return e.worker.ID, nil
}

// deregister ends a lease of caller's and returns the worker id it held.
func (r *Registry) deregister(lease, caller string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byLease[lease]
	if e == nil {
		return "", fmt.Errorf("%w: lease_id: no such lease", ErrUnknownLease)
	}
	if err := ownedLocked(e, caller); err != nil {
		return "", err
	}
	r.removeLocked(e)
	r.changedLocked()
	return e.worker.ID, nil
}

// ownedLocked refuses a lease to any identity but the one that took it.
func ownedLocked(e *entry, caller string) error {
	if e.worker.Identity != caller {
		return fmt.Errorf("%w: worker_id %q was registered by another identity (%s)", ErrDenied, e.worker.ID, e.worker.Identity)
	}
	return nil
}

// SetModels restricts which models identities may advertise: an identity
// listed in allowed may register or renew with those models only (by
// name); one not listed, any model. Entries the new rules no longer admit
// are removed at once (their next renewal is refused, so they would go
// anyway, a lease later). helix-xds calls it with the gateway config's
// worker_identities on every config (re)load.
func (r *Registry) SetModels(allowed map[string][]string) {
	m := make(map[string][]string, len(allowed))
	for id, models := range allowed {
		m[id] = slices.Clone(models)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.models = m
	removed := 0
	for _, e := range r.byID {
		if err := r.admitLocked(e.worker.Identity, e.worker.Models); err != nil {
			r.removeLocked(e)
			removed++
			r.log.Warn("worker removed: the gateway config no longer lets its identity advertise its models", "worker_id", e.worker.ID, "error", err)
		}
	}
	if removed > 0 {
		r.changedLocked()
	}
}

// admitLocked refuses models the identity may not advertise.
func (r *Registry) admitLocked(id string, models []Model) error {
	allowed, restricted := r.models[id]
	if !restricted {
		return nil
	}
	for _, m := range models {
		if !slices.Contains(allowed, m.Name) {
			return fmt.Errorf("%w: models: identity %s may not advertise model %q (the gateway config's worker_identities allows %v)", ErrDenied, id, m.Name, allowed)
		}
	}
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
	return a.Name == b.Name && a.Ready == b.Ready && a.Sequence == b.Sequence && slices.Equal(a.Versions, b.Versions)
}

func newLeaseID() string {
	var b [leaseIDLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24+)
	return hex.EncodeToString(b[:])
}
