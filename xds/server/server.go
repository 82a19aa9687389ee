package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Errors Publish returns; the resources are not served in either case and
// the last published snapshot stays in force.
var (
	// ErrInvalidResource: a resource failed its protobuf validation, has
	// no name, a duplicate name, or the wrong type for its list.
	ErrInvalidResource = errors.New("invalid xDS resource")
	// ErrInconsistent: the resources refer to routes or endpoints that are
	// not in the snapshot, or carry ones that nothing refers to.
	ErrInconsistent = errors.New("inconsistent xDS snapshot")
)

// Cache names, as used in Status and in metric labels.
const (
	CacheConfig    = "config"    // listeners, routes, clusters
	CacheEndpoints = "endpoints" // cluster load assignments
	CacheSecrets   = "secrets"   // SDS secrets
)

// snapshotKey is the one key every node's snapshot is stored under (see
// "Node ids" in the package documentation).
const snapshotKey = "helix"

// allNodes maps every Envoy node to the same snapshot.
type allNodes struct{}

func (allNodes) ID(*core.Node) string { return snapshotKey }

// Options configure a Server.
type Options struct {
	// Logger receives NACKs, stream events and publishes; nil discards.
	Logger *slog.Logger
	// Registerer receives the helix_xds_* metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// NodeCluster, when not empty, is the only Envoy node cluster served:
	// streams from other node clusters are refused.
	NodeCluster string
	// WarmTimeout bounds each make-before-break step of a publish that
	// adds or removes clusters: how long to wait for every connected Envoy
	// to warm the new clusters, or to drop its routes to the removed ones,
	// before going on without the laggards (logged). 0: DefaultWarmTimeout.
	WarmTimeout time.Duration
	// Readers, when set, are the identities (internal/identity) that may
	// subscribe; any other caller's stream is refused (PERMISSION_DENIED)
	// as it opens. nil: streams are not checked (plaintext on loopback,
	// development).
	Readers []string
}

// DefaultWarmTimeout is Options.WarmTimeout's default: ample for an Envoy
// that answers at all (a step takes a round trip or two, milliseconds).
const DefaultWarmTimeout = 5 * time.Second

// Server is the ADS server. Create it with New, register it on a
// grpc.Server with Register, and feed it with Publish.
type Server struct {
	log         *slog.Logger
	nodeCluster string
	metrics     *metrics

	readers []string

	caches map[string]cachev3.SnapshotCache
	xds    serverv3.Server

	warmTimeout time.Duration

	pubMu   sync.Mutex  // serializes Publish; guards current and sums
	current resourceSet // last published in full (not a bridge)
	// sums are the digests of current's resources, by identity: the next
	// Publish hashes only the resources it does not share with current;
	// digests are current's, by type.
	sums    sums
	digests map[string][]digest

	mu        sync.Mutex // guards what follows
	versions  map[string]CacheVersion
	published map[string]time.Time // version -> when it was set, for push latency
	streams   map[int64]*stream
	nacks     uint64
	lastNACK  *NACK
	// changed is closed (and replaced) whenever a stream acknowledges,
	// rejects or goes: make-before-break waits on it.
	changed chan struct{}
	// trafficStatus gives Status its traffic policies (SetTrafficStatus).
	trafficStatus func() []TrafficPolicy
}

// New returns a Server whose streams end when ctx ends.
func New(ctx context.Context, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("xds server metrics: %w", err)
	}
	s := &Server{
		log:         log,
		nodeCluster: opts.NodeCluster,
		readers:     slices.Clone(opts.Readers),
		metrics:     m,
		versions:    make(map[string]CacheVersion),
		published:   make(map[string]time.Time),
		streams:     make(map[int64]*stream),
		warmTimeout: opts.WarmTimeout,
		changed:     make(chan struct{}),
	}
	if s.warmTimeout <= 0 {
		s.warmTimeout = DefaultWarmTimeout
	}
	cl := cacheLogger{log: log}
	s.caches = map[string]cachev3.SnapshotCache{
		// ADS mode keeps response order within the config types.
		CacheConfig: cachev3.NewSnapshotCache(true, allNodes{}, cl),
		// Not ADS mode: answer requests for a subset of the names held (a
		// cluster not yet known to Envoy, secrets of clusters before those
		// of listeners) with the names requested instead of not at all.
		CacheEndpoints: cachev3.NewSnapshotCache(false, allNodes{}, cl),
		CacheSecrets:   cachev3.NewSnapshotCache(false, allNodes{}, cl),
	}
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return cacheFor(r.GetTypeUrl()) },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return cacheFor(r.GetTypeUrl()) },
		Caches: map[string]cachev3.Cache{
			CacheConfig: s.caches[CacheConfig], CacheEndpoints: s.caches[CacheEndpoints], CacheSecrets: s.caches[CacheSecrets],
		},
	}
	s.xds = serverv3.NewServer(ctx, mux, &callbacks{s: s})
	return s, nil
}

func cacheFor(typeURL string) string {
	switch typeURL {
	case resourcev3.EndpointType:
		return CacheEndpoints
	case resourcev3.SecretType:
		return CacheSecrets
	default:
		return CacheConfig
	}
}

// Register serves ADS (state-of-the-world and delta) on gs.
func (s *Server) Register(gs grpc.ServiceRegistrar) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, s.xds)
}

// resourceSet holds resources by type URL.
type resourceSet map[string][]types.Resource

// cacheTypes lists the types each cache holds, in the order caches are set:
// what listeners and clusters refer to is in place before they arrive.
var cacheTypes = []struct {
	cache string
	types []string
}{
	{CacheSecrets, []string{resourcev3.SecretType}},
	{CacheEndpoints, []string{resourcev3.EndpointType}},
	{CacheConfig, []string{resourcev3.ClusterType, resourcev3.ListenerType, resourcev3.RouteType}},
}

func (s *Server) publish(ctx context.Context, set resourceSet) error {
	start := time.Now()
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	// Types whose resources are current's, one for one, were checked and
	// hashed when published: one worker's change among 1,000 models
	// touches the assignments alone.
	same := map[string]bool{}
	changed := resourceSet{}
	for t, list := range set {
		if cur, ok := s.current[t]; ok && slices.Equal(cur, list) {
			same[t] = true
		} else {
			changed[t] = list
		}
	}
	if err := validateSet(changed, s.sums); err != nil {
		s.metrics.publishErrors.Inc()
		return err
	}
	digests, sums, err := digestSet(changed, s.sums)
	if err != nil {
		s.metrics.publishErrors.Inc()
		return err
	}
	for t := range same {
		digests[t] = s.digests[t]
		for _, r := range set[t] {
			sums[r] = s.sums[r]
		}
	}
	// Consistency is checked over all types at once: EDS and RDS names
	// must match what clusters and listeners refer to, across caches. When
	// clusters, listeners and routes are current's and the assignments'
	// names too, it holds as it did.
	if !same[resourcev3.ClusterType] || !same[resourcev3.ListenerType] || !same[resourcev3.RouteType] ||
		!sameNames(digests[resourcev3.EndpointType], s.digests[resourcev3.EndpointType]) {
		all, err := cachev3.NewSnapshot("check", map[string][]types.Resource(set))
		if err != nil {
			s.metrics.publishErrors.Inc()
			return fmt.Errorf("%w: %w", ErrInvalidResource, err)
		}
		if err := all.Consistent(); err != nil {
			s.metrics.publishErrors.Inc()
			return fmt.Errorf("%w: %w", ErrInconsistent, err)
		}
	}

	if s.current != nil {
		if err := s.makeBeforeBreak(ctx, s.current, set); err != nil {
			return err
		}
	}
	if _, err := s.setCaches(ctx, set, digests); err != nil {
		return err
	}
	s.current, s.sums, s.digests = set, sums, digests
	s.metrics.publishDuration.Observe(time.Since(start).Seconds())
	return nil
}

// setCaches sets each cache whose content differs from what it serves and
// returns the config cache's version; s.pubMu held. digests are set's.
func (s *Server) setCaches(ctx context.Context, set resourceSet, digests map[string][]digest) (configVersion string, err error) {
	changed := 0
	for _, ct := range cacheTypes {
		sub := make(map[string][]types.Resource, len(ct.types))
		n := 0
		for _, t := range ct.types {
			sub[t] = set[t]
			n += len(set[t])
		}
		version := versionOf(digests, ct.types)
		if ct.cache == CacheConfig {
			configVersion = version
		}
		s.mu.Lock()
		cur, ok := s.versions[ct.cache]
		s.mu.Unlock()
		if ok && cur.Version == version {
			continue
		}
		snap, err := cachev3.NewSnapshot(version, sub)
		if err != nil {
			s.metrics.publishErrors.Inc()
			return "", fmt.Errorf("%w: %w", ErrInvalidResource, err)
		}
		now := time.Now()
		// Recorded before SetSnapshot: an ACK may come back before it returns.
		s.mu.Lock()
		s.notePublished(version, now)
		s.mu.Unlock()
		if err := s.caches[ct.cache].SetSnapshot(ctx, snapshotKey, snap); err != nil {
			s.metrics.publishErrors.Inc()
			return "", fmt.Errorf("set %s snapshot: %w", ct.cache, err)
		}
		s.mu.Lock()
		v := CacheVersion{Version: version, Generation: cur.Generation + 1, PublishedAt: now, Resources: n}
		s.versions[ct.cache] = v
		s.mu.Unlock()
		s.metrics.generation.WithLabelValues(ct.cache).Set(float64(v.Generation))
		s.metrics.publishes.WithLabelValues(ct.cache).Inc()
		for _, t := range ct.types {
			s.metrics.resources.WithLabelValues(typeLabel(t)).Set(float64(len(set[t])))
		}
		s.log.Info("xDS snapshot published", "cache", ct.cache, "version", version, "generation", v.Generation, "resources", n)
		changed++
	}
	if changed == 0 {
		s.log.Debug("xDS resources unchanged; nothing published")
	}
	return configVersion, nil
}

// notifyLocked wakes make-before-break waits; s.mu held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// maxPublished bounds the versions remembered for push latency.
const maxPublished = 64

// notePublished remembers when version was set; s.mu held.
func (s *Server) notePublished(version string, at time.Time) {
	s.published[version] = at
	for len(s.published) > maxPublished {
		oldest, first := "", time.Time{}
		for v, t := range s.published {
			if first.IsZero() || t.Before(first) {
				oldest, first = v, t
			}
		}
		delete(s.published, oldest)
	}
}
