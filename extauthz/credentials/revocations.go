package credentials

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/store"
)

// RevocationStore is what the revocation list reads.
type RevocationStore interface {
	RevokedSince(ctx context.Context, since time.Time) ([]string, error)
	IsRevoked(ctx context.Context, jti string) (bool, error)
}

// Revocations answers IsRevoked from a copy of the revoked-token list. The
// copy is complete once loaded and then kept current by notifications;
// until the first load succeeds, and after a lost notification connection
// until the resync reload succeeds, answers come from the database (and
// an unreachable database denies).
type Revocations struct {
	store   RevocationStore
	log     *slog.Logger
	lookups prometheus.Counter // may be nil

	mu      sync.RWMutex
	revoked map[string]struct{}
	synced  bool
	// loads counts Loads in flight; during holds what notifications
	// revoked meanwhile, which a Load's (older) read may lack and must
	// not drop.
	loads  int
	during map[string]struct{}
}

var _ check.RevocationChecker = (*Revocations)(nil)

// NewRevocations returns a revocation list that is not yet loaded. lookups
// (optional) counts the database lookups its answers needed.
func NewRevocations(s RevocationStore, log *slog.Logger, lookups prometheus.Counter) *Revocations {
	if log == nil {
		log = slog.Default()
	}
	return &Revocations{store: s, log: log, lookups: lookups, revoked: make(map[string]struct{})}
}

// Load replaces the copy with every revocation still in force.
func (r *Revocations) Load(ctx context.Context) error {
	r.mu.Lock()
	if r.loads == 0 {
		r.during = make(map[string]struct{})
	}
	r.loads++
	r.mu.Unlock()

	jtis, err := r.store.RevokedSince(ctx, time.Time{})

	r.mu.Lock()
	defer r.mu.Unlock()
	during := r.during
	if r.loads--; r.loads == 0 {
		r.during = nil
	}
	if err != nil {
		return fmt.Errorf("load revoked tokens: %w", err)
	}
	m := make(map[string]struct{}, len(jtis)+len(during))
	for _, j := range jtis {
		m[j] = struct{}{}
	}
	for j := range during {
		m[j] = struct{}{}
	}
	r.revoked, r.synced = m, true
	return nil
}

// IsRevoked implements check.RevocationChecker.
func (r *Revocations) IsRevoked(ctx context.Context, jti string) (bool, error) {
	r.mu.RLock()
	_, revoked := r.revoked[jti]
	synced := r.synced
	r.mu.RUnlock()
	if revoked || synced {
		return revoked, nil
	}
	if r.lookups != nil {
		r.lookups.Inc()
	}
	return r.store.IsRevoked(ctx, jti)
}

// Changed applies a store notification. Expired entries need no removal
// from the copy: a token past its expiry is refused anyway, and the copy is
// rebuilt on every resync.
func (r *Revocations) Changed(ctx context.Context, c store.Change) {
	switch c.Kind {
	case store.ChangeRevoked:
		r.mu.Lock()
		r.revoked[c.ID] = struct{}{}
		if r.during != nil {
			r.during[c.ID] = struct{}{}
		}
		r.mu.Unlock()
	case store.ChangeResync:
		r.mu.Lock()
		r.synced = false
		r.mu.Unlock()
		if err := r.Load(ctx); err != nil {
			r.log.Warn("reload revoked tokens after reconnect", "error", err)
		}
	}
}
