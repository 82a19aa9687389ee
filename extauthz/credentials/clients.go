package credentials

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/store"
)

// ClientStore is what the client list reads.
type ClientStore interface {
	ListClients(ctx context.Context) ([]store.Client, error)
	GetClient(ctx context.Context, id string) (*store.Client, error)
}

// Clients answers whether a client's tokens still count: the client exists
// and is enabled, so that disabling or deleting a client ends its tokens at
// once rather than when they expire. Answers come from a copy of the
// enabled clients' ids, complete once loaded and then kept current by
// notifications; until the first load succeeds, after a lost notification
// connection until the resync reload succeeds, and for a client whose
// change could not be read back, they come from the database (and an
// unreachable database denies).
type Clients struct {
	store ClientStore
	log   *slog.Logger

	mu      sync.RWMutex
	enabled map[string]struct{}
	// unsure holds clients whose last change could not be read: their
	// answers come from the database until a read succeeds.
	unsure map[string]struct{}
	synced bool
	// loads counts Loads in flight; during holds what notifications said
	// meanwhile (id -> enabled), which a Load's older read must not undo.
	loads  int
	during map[string]bool
}

var _ check.ClientChecker = (*Clients)(nil)

// NewClients returns a client list that is not yet loaded.
func NewClients(s ClientStore, log *slog.Logger) *Clients {
	if log == nil {
		log = slog.Default()
	}
	return &Clients{store: s, log: log, enabled: make(map[string]struct{}), unsure: make(map[string]struct{})}
}

// Load replaces the copy with the clients enabled now.
func (c *Clients) Load(ctx context.Context) error {
	c.mu.Lock()
	if c.loads == 0 {
		c.during = make(map[string]bool)
	}
	c.loads++
	c.mu.Unlock()

	all, err := c.store.ListClients(ctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	during := c.during
	if c.loads--; c.loads == 0 {
		c.during = nil
	}
	if err != nil {
		return fmt.Errorf("load clients: %w", err)
	}
	m := make(map[string]struct{}, len(all))
	for _, cl := range all {
		if cl.Enabled {
			m[cl.ID] = struct{}{}
		}
	}
	for id, on := range during {
		if on {
			m[id] = struct{}{}
		} else {
			delete(m, id)
		}
	}
	c.enabled, c.synced = m, true
	return nil
}

// ClientEnabled implements check.ClientChecker.
func (c *Clients) ClientEnabled(ctx context.Context, id string) (bool, error) {
	c.mu.RLock()
	_, on := c.enabled[id]
	_, unsure := c.unsure[id]
	synced := c.synced
	c.mu.RUnlock()
	if synced && !unsure {
		return on, nil
	}
	cl, err := c.store.GetClient(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		on = false
	case err != nil:
		return false, fmt.Errorf("look up client: %w", err)
	default:
		on = cl.Enabled
	}
	if unsure {
		// Read back at last: the copy holds it again (unless a
		// notification, which is newer, already did).
		c.mu.Lock()
		if _, still := c.unsure[id]; still {
			delete(c.unsure, id)
			c.set(id, on)
		}
		c.mu.Unlock()
	}
	return on, nil
}

// set records whether id is enabled; c.mu held.
func (c *Clients) set(id string, on bool) {
	if on {
		c.enabled[id] = struct{}{}
	} else {
		delete(c.enabled, id)
	}
	if c.during != nil {
		c.during[id] = on
	}
}

// Changed applies a store notification: a changed client is read back
// (a deleted one counts as disabled).
func (c *Clients) Changed(ctx context.Context, ch store.Change) {
	switch ch.Kind {
	case store.ChangeClient:
		cl, err := c.store.GetClient(ctx, ch.ID)
		on := err == nil && cl.Enabled
		known := err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid)
		c.mu.Lock()
		defer c.mu.Unlock()
		if !known {
			c.log.Warn("read back a changed client; asking the database for it until that works", "client_id", ch.ID, "error", err)
			c.unsure[ch.ID] = struct{}{}
			return
		}
		delete(c.unsure, ch.ID)
		c.set(ch.ID, on)
	case store.ChangeResync:
		c.mu.Lock()
		c.synced = false
		c.mu.Unlock()
		if err := c.Load(ctx); err != nil {
			c.log.Warn("reload clients after reconnect", "error", err)
		}
	}
}
