package credentials

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/store"
)

// ClientStore is what the client directory reads.
type ClientStore interface {
	ListClients(ctx context.Context) ([]store.Client, error)
	GetClient(ctx context.Context, id string) (*store.Client, error)
}

// Clients is the directory of OAuth2 clients: every client's record, in
// memory, complete once loaded and kept current by notifications, so that
// Check, API-key checks and the OAuth2 endpoints read clients without a
// database query, for unknown ids too. Disabling, deleting or changing a
// client reaches every answer within the notification delay. Until the
// first load succeeds, after a lost notification connection until the
// resync reload succeeds, and for a client whose change could not be read
// back, answers come from the database (and an unreachable database is an
// error, which callers answer by denying).
type Clients struct {
	dir *directory[store.Client]
}

var _ check.ClientChecker = (*Clients)(nil)

// NewClients returns a client directory that is not yet loaded. lookups
// (optional) counts the database lookups its answers needed.
func NewClients(s ClientStore, log *slog.Logger, lookups prometheus.Counter) *Clients {
	return &Clients{dir: newDirectory(dirConfig[store.Client]{
		what: "client", list: s.ListClients, get: s.GetClient,
		id:  func(c *store.Client) string { return c.ID },
		log: log, lookups: lookups,
	})}
}

// Load replaces the copy with the clients as they are now.
func (c *Clients) Load(ctx context.Context) error { return c.dir.Load(ctx) }

// GetClient returns the client with id, enabled or not: callers check
// Enabled. The record is shared and read-only. An unknown or malformed id
// is an error wrapping store.ErrNotFound, answered without a database query
// once the directory is loaded; an error wrapping store.ErrUnavailable
// means the database was needed and could not be reached. It has the
// store's method's name so that the directory stands in for the store
// where clients are read (the OAuth2 endpoints).
func (c *Clients) GetClient(ctx context.Context, id string) (*store.Client, error) {
	return c.dir.Get(ctx, id)
}

// ClientTokens implements check.ClientChecker: an unknown client is not
// enabled.
func (c *Clients) ClientTokens(ctx context.Context, id string) (check.ClientTokens, error) {
	cl, err := c.dir.Get(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return check.ClientTokens{}, nil
	case err != nil:
		return check.ClientTokens{}, err
	}
	return check.ClientTokens{Enabled: cl.Enabled, ValidAfter: cl.TokensValidAfter}, nil
}

// Changed applies a store notification: a changed client is read back.
func (c *Clients) Changed(ctx context.Context, ch store.Change) {
	switch ch.Kind {
	case store.ChangeClient:
		c.dir.changed(ctx, ch.ID)
	case store.ChangeResync:
		c.dir.resync(ctx)
	}
}
