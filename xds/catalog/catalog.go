// Package catalog is helix-xds's model catalogue: the Catalog gRPC service
// (proto/catalog/v1), which lists the models the gateway serves, built
// from the same worker source the builder programs Envoy from (the worker
// registry, or Kubernetes EndpointSlices). helix-authz is its one caller
// (identity.CatalogReaders): it filters the list by each person's or
// client's scopes and serves it as GET /api/v1/models. The list itself is
// for no one else, so every call is checked, not only the handshake (the
// listener also serves Envoy's ADS and the workers' registry).
//
// Build is pure; Server answers from a fresh Snapshot per call (helix-authz
// caches the answer for a moment).
package catalog

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/internal/identity"
	catalogv1 "github.com/helixflow/helixflow/proto/catalog/v1"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/xds/registry"
)

// MaxResponseBytes bounds a ListModelsResponse: over it, Build leaves out
// the models' config_json, then their info (names, versions and counts
// stay). helix-authz's client accepts at least twice this.
const MaxResponseBytes = 16 << 20

// Source is where the workers come from: *registry.Registry or
// *kube.Source (the builder's Source).
type Source interface {
	Snapshot() []registry.Worker
}

// Build lists the models of workers (a Source's Snapshot): one entry per
// model that at least one worker has loaded (a version, or ready: the
// models Envoy gets a pool for), sorted by name. versions are those of
// the workers that serve the model (ready, and ready for it), sorted
// numerically; info is the first such worker's report (by worker id),
// else the first report of any worker that has the model. The infos are
// the source's own (read-only), shared with the answer.
func Build(workers []registry.Worker) *catalogv1.ListModelsResponse {
	type acc struct {
		m         *catalogv1.CatalogModel
		versions  []string
		readyInfo bool // m.Info came from a serving worker
	}
	// By id, so that the info chosen does not depend on the source's order.
	workers = slices.SortedFunc(slices.Values(workers), func(a, b registry.Worker) int { return cmp.Compare(a.ID, b.ID) })
	byName := map[string]*acc{}
	for i := range workers {
		w := &workers[i]
		for _, m := range w.Models {
			if len(m.Versions) == 0 && !m.Ready {
				continue // loaded nowhere on this worker
			}
			a := byName[m.Name]
			if a == nil {
				a = &acc{m: &catalogv1.CatalogModel{Name: m.Name}}
				byName[m.Name] = a
			}
			a.m.Workers++
			serves := w.Serves(m.Name)
			if serves {
				a.m.ReadyWorkers++
				a.versions = append(a.versions, m.Versions...)
			}
			if m.Info != nil && (a.m.Info == nil || serves && !a.readyInfo) {
				a.m.Info, a.readyInfo = m.Info, serves
			}
		}
	}
	out := &catalogv1.ListModelsResponse{Models: make([]*catalogv1.CatalogModel, 0, len(byName))}
	for _, a := range byName {
		slices.SortFunc(a.versions, compareVersions)
		a.m.Versions = slices.Compact(a.versions)
		out.Models = append(out.Models, a.m)
	}
	slices.SortFunc(out.Models, func(a, b *catalogv1.CatalogModel) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// compareVersions orders canonical decimal versions (no leading zeros, as
// the registry keeps them) numerically: shorter is smaller, then by digits.
func compareVersions(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
}

// bound keeps resp within limit bytes, first without the models'
// config_json, then without their info; it reports what it left out ("" if
// nothing). The infos are shared with the source: they are replaced by
// trimmed copies, never modified.
func bound(resp *catalogv1.ListModelsResponse, limit int) string {
	if proto.Size(resp) <= limit {
		return ""
	}
	for _, m := range resp.Models {
		if m.Info != nil && m.Info.ConfigJson != "" {
			i := m.Info
			m.Info = &registryv1.ModelInfo{Platform: i.Platform, MaxBatchSize: i.MaxBatchSize, Inputs: i.Inputs, Outputs: i.Outputs}
		}
	}
	if proto.Size(resp) <= limit {
		return "config_json"
	}
	for _, m := range resp.Models {
		m.Info = nil
	}
	return "info"
}

// Config configures a Server.
type Config struct {
	Source Source
	// Readers are the identities that may call ListModels
	// (identity.CatalogReaders() in helix-xds with TLS). Empty: anyone, for
	// a plaintext listener on loopback (development), which has no
	// identities to check.
	Readers []string
	// Registerer, when set, receives helix_xds_catalog_requests_total.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Server implements catalogv1.CatalogServer.
type Server struct {
	catalogv1.UnimplementedCatalogServer
	cfg      Config
	log      *slog.Logger
	requests *prometheus.CounterVec
	limit    int // MaxResponseBytes; tests lower it
}

var _ catalogv1.CatalogServer = (*Server)(nil)

// New returns a Server over cfg.Source.
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, fmt.Errorf("catalog: Source is required")
	}
	for _, id := range cfg.Readers {
		if !strings.HasPrefix(id, "spiffe://"+identity.TrustDomain+"/") {
			return nil, fmt.Errorf("catalog: Readers: %q is not an identity of %s", id, identity.TrustDomain)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, limit: MaxResponseBytes,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helix_xds_catalog_requests_total",
			Help: "Catalog.ListModels calls, by result (ok, denied).",
		}, []string{"result"}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.requests); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
	}
	return s, nil
}

// ListModels implements catalogv1.CatalogServer: PERMISSION_DENIED to any
// caller but Config.Readers, else the catalogue of the source's workers
// now.
func (s *Server) ListModels(ctx context.Context, _ *catalogv1.ListModelsRequest) (*catalogv1.ListModelsResponse, error) {
	if err := s.authorize(ctx); err != nil {
		s.requests.WithLabelValues("denied").Inc()
		s.log.Warn("catalogue request refused", "error", err)
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	resp := Build(s.cfg.Source.Snapshot())
	if left := bound(resp, s.limit); left != "" {
		s.log.Warn("model catalogue over its size bound; models' "+left+" left out", "models", len(resp.Models), "limit_bytes", s.limit)
	}
	s.requests.WithLabelValues("ok").Inc()
	return resp, nil
}

func (s *Server) authorize(ctx context.Context) error {
	if len(s.cfg.Readers) == 0 {
		return nil
	}
	id, err := identity.FromContext(ctx)
	if err != nil {
		return fmt.Errorf("catalogue: %w", err)
	}
	if !slices.Contains(s.cfg.Readers, id) {
		return fmt.Errorf("catalogue: %w: %s may not list the models (accepted: %s)", identity.ErrDenied, id, strings.Join(s.cfg.Readers, ", "))
	}
	return nil
}
