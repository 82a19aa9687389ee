package credentials

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/extauthz/store"
)

// directory is a complete in-memory copy of one table (clients, API keys),
// keyed by id: complete once loaded and then kept current by the store's
// notifications, so that a lookup, of an unknown id too, costs no database
// query. Until the first load succeeds, after a lost notification
// connection until the resync reload succeeds, and for a row whose change
// could not be read back, lookups go to the database (and an unreachable
// database is an error: callers deny).
type directory[V any] struct {
	dirConfig[V]

	mu    sync.RWMutex
	items map[string]*V
	// unsure holds ids whose last change could not be read: their answers
	// come from the database until a read succeeds.
	unsure map[string]struct{}
	synced bool
	// loads counts Loads in flight; during holds what notifications said
	// meanwhile (id -> row, nil when gone), which a Load's older read must
	// not undo.
	loads  int
	during map[string]*V
}

// dirConfig says where a directory's rows come from.
type dirConfig[V any] struct {
	what string // "client", "api key": for logs and errors
	list func(context.Context) ([]V, error)
	// get returns the row or an error wrapping store.ErrNotFound.
	get func(context.Context, string) (*V, error)
	id  func(*V) string
	// keep says whether a row belongs in the copy; one that does not is
	// answered as unknown (revoked API keys).
	keep    func(*V) bool
	log     *slog.Logger
	lookups prometheus.Counter // database lookups made by Get; may be nil
}

func newDirectory[V any](cfg dirConfig[V]) *directory[V] {
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	if cfg.keep == nil {
		cfg.keep = func(*V) bool { return true }
	}
	return &directory[V]{dirConfig: cfg, items: make(map[string]*V), unsure: make(map[string]struct{})}
}

// Load replaces the copy with the table as it is now.
func (d *directory[V]) Load(ctx context.Context) error {
	d.mu.Lock()
	if d.loads == 0 {
		d.during = make(map[string]*V)
	}
	d.loads++
	d.mu.Unlock()

	all, err := d.list(ctx)

	d.mu.Lock()
	defer d.mu.Unlock()
	during := d.during
	if d.loads--; d.loads == 0 {
		d.during = nil
	}
	if err != nil {
		return fmt.Errorf("load %ss: %w", d.what, err)
	}
	m := make(map[string]*V, len(all))
	for i := range all {
		if v := &all[i]; d.keep(v) {
			m[d.id(v)] = v
		}
	}
	for id, v := range during {
		if v != nil {
			m[id] = v
		} else {
			delete(m, id)
		}
	}
	d.items, d.synced = m, true
	return nil
}

// Get returns the row with id (shared: read-only), or an error wrapping
// store.ErrNotFound.
func (d *directory[V]) Get(ctx context.Context, id string) (*V, error) {
	d.mu.RLock()
	v := d.items[id]
	_, unsure := d.unsure[id]
	synced := d.synced
	d.mu.RUnlock()
	if synced && !unsure {
		if v == nil {
			return nil, fmt.Errorf("%s %q: %w", d.what, id, store.ErrNotFound)
		}
		return v, nil
	}
	if d.lookups != nil {
		d.lookups.Inc()
	}
	v, err := d.read(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("look up %s: %w", d.what, err)
	}
	if unsure {
		// Read back at last: the copy holds it again (unless a
		// notification, which is newer, already did).
		d.mu.Lock()
		if _, still := d.unsure[id]; still {
			delete(d.unsure, id)
			d.set(id, v)
		}
		d.mu.Unlock()
	}
	if v == nil {
		return nil, fmt.Errorf("%s %q: %w", d.what, id, store.ErrNotFound)
	}
	return v, nil
}

// read reads id from the database: nil (and no error) when there is no such
// row, or it is one the copy does not keep; malformed ids count as unknown.
func (d *directory[V]) read(ctx context.Context, id string) (*V, error) {
	v, err := d.get(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		return nil, nil
	case err != nil:
		return nil, err
	case !d.keep(v):
		return nil, nil
	}
	return v, nil
}

// set records id's row (nil: gone); d.mu held.
func (d *directory[V]) set(id string, v *V) {
	if v != nil {
		d.items[id] = v
	} else {
		delete(d.items, id)
	}
	if d.during != nil {
		d.during[id] = v
	}
}

// changed applies a notification that id changed: the row is read back.
func (d *directory[V]) changed(ctx context.Context, id string) {
	v, err := d.read(ctx, id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.log.Warn("read back a changed "+d.what+"; asking the database for it until that works", "id", id, "error", err)
		d.unsure[id] = struct{}{}
		return
	}
	delete(d.unsure, id)
	d.set(id, v)
}

// resync reloads the copy after a lost notification connection; until the
// reload succeeds, lookups go to the database.
func (d *directory[V]) resync(ctx context.Context) {
	d.mu.Lock()
	d.synced = false
	d.mu.Unlock()
	if err := d.Load(ctx); err != nil {
		d.log.Warn("reload "+d.what+"s after reconnect", "error", err)
	}
}
