package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Channel is the LISTEN/NOTIFY channel the schema's triggers announce on.
const Channel = "helix_authz_changes"

// ListenerApplicationName names Listen's connections in pg_stat_activity.
const ListenerApplicationName = "helix-authz-listener"

// Backoff of Listen's reconnections.
const (
	listenMinBackoff = 50 * time.Millisecond
	listenMaxBackoff = 5 * time.Second
)

// Listen calls fn for every change announced on Channel until ctx ends or
// the store is closed, on a connection of its own (outside the pool). It
// reconnects with backoff when the connection fails, and calls
// fn(Change{Kind: ChangeResync}) after every (re)connection, once LISTEN is
// in place, because changes made while it was away were not seen. fn runs
// on Listen's goroutine: keep it short. Unknown kinds are logged and
// dropped. Listen returns nil when ctx ends or the store closes.
func (s *Store) Listen(ctx context.Context, fn func(Change)) error {
	if fn == nil {
		return errors.New("store: listen: nil callback")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.closed, cancel)
	defer stop()

	backoff := listenMinBackoff
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, fn, func() { backoff = listenMinBackoff })
		if ctx.Err() != nil {
			break
		}
		wait := backoff/2 + rand.N(backoff)
		s.log.WarnContext(ctx, "store: change listener lost its connection; reconnecting",
			"err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(backoff*2, listenMaxBackoff)
	}
	return nil
}

// listenOnce connects, listens and delivers until the connection fails.
// connected runs once LISTEN is in place.
func (s *Store) listenOnce(ctx context.Context, fn func(Change), connected func()) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = ListenerApplicationName
	cctx, cancel := context.WithTimeout(ctx, s.timeout+cfg.ConnectTimeout)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		cancel()
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	_, err = conn.Exec(cctx, "LISTEN "+Channel)
	cancel()
	if err != nil {
		return err
	}
	connected()
	s.log.DebugContext(ctx, "store: listening for changes", "channel", Channel)
	fn(Change{Kind: ChangeResync})

	for {
		wctx, cancel := context.WithTimeout(ctx, s.keepalive)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if conn.IsClosed() || !(pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded)) {
				return err
			}
			// Quiet for a while: make sure the server is still there, since
			// a vanished peer may never close the socket.
			pctx, cancel := context.WithTimeout(ctx, s.timeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			continue
		}
		change, ok := parseChange(n.Payload)
		if !ok {
			s.log.WarnContext(ctx, "store: ignoring unknown change notification", "payload", truncate(n.Payload, 80))
			continue
		}
		fn(change)
	}
}

// parseChange reads '<kind>:<id>'.
func parseChange(payload string) (Change, bool) {
	kind, id, ok := strings.Cut(payload, ":")
	if !ok {
		return Change{}, false
	}
	switch k := ChangeKind(kind); k {
	case ChangeClient, ChangeAPIKey, ChangeRevoked, ChangeKeys, ChangeMark:
		return Change{Kind: k, ID: id}, true
	}
	return Change{}, false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Mark announces Change{Kind: ChangeMark, ID: id} on Channel. Notifications
// arrive in commit order, so a listener that receives the mark has received
// every change committed before Mark was called.
func (s *Store) Mark(ctx context.Context, id string) error {
	if err := checkID("mark id", id); err != nil {
		return err
	}
	return s.do(ctx, "mark", true, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, string(ChangeMark)+":"+id)
		return err
	})
}
