package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults for Config's zero values.
const (
	DefaultQueryTimeout    = 2 * time.Second
	DefaultConnectTimeout  = 2 * time.Second
	DefaultListenKeepalive = 15 * time.Second
)

// maxAttempts bounds the tries of one call (first try included).
const maxAttempts = 3

// Config configures Open.
type Config struct {
	// DSN is a postgres:// URL or a key=value string.
	DSN string
	// MaxConns caps the pool (0: pgxpool's default, max(4, CPUs)).
	MaxConns int32
	// ConnectTimeout bounds one connection attempt (default 2 s).
	ConnectTimeout time.Duration
	// QueryTimeout bounds one store call, retries included (default 2 s).
	QueryTimeout time.Duration
	// ListenKeepalive: how long Listen's connection may stay quiet before
	// it is pinged, to notice a server that vanished without closing it
	// (default 15 s).
	ListenKeepalive time.Duration
	// Logger gets retries and listener events (default slog.Default()).
	Logger *slog.Logger
}

// Store is helix-authz's state in Postgres. It is safe for concurrent use.
type Store struct {
	pool      *pgxpool.Pool
	timeout   time.Duration
	keepalive time.Duration
	log       *slog.Logger
	// closed ends listeners when the store is closed.
	closed context.Context
	close  context.CancelFunc
}

// Open connects a pool to cfg.DSN and checks that Postgres answers. A
// database that cannot be reached gives an error wrapping ErrUnavailable.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ListenKeepalive <= 0 {
		cfg.ListenKeepalive = DefaultListenKeepalive
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// The parse error may quote the DSN, password included.
		return nil, fmt.Errorf("store: invalid DSN: %w", ErrInvalid)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	closed, cancel := context.WithCancel(context.Background())
	s := &Store{
		pool: pool, timeout: cfg.QueryTimeout, keepalive: cfg.ListenKeepalive,
		log: cfg.Logger, closed: closed, close: cancel,
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Ping checks that Postgres answers within the query timeout.
func (s *Store) Ping(ctx context.Context) error {
	return s.do(ctx, "ping", true, func(ctx context.Context) error {
		return s.pool.Ping(ctx)
	})
}

// Pool is the connection pool, for the packages that keep their own tables
// in the same database (the people's sessions, accounts, orgs, audit).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool and stops every Listen.
func (s *Store) Close() {
	s.close()
	s.pool.Close()
}

// do runs fn under the query timeout, retrying transient failures with
// exponential backoff, and maps what is left to the package's errors.
// Only idempotent operations are retried when a failure leaves unknown
// whether the statement ran.
func (s *Store) do(ctx context.Context, op string, idempotent bool, fn func(context.Context) error) error {
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	backoff := 10 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		err = fn(qctx)
		if err == nil {
			return nil
		}
		if attempt == maxAttempts || !retryable(err, idempotent) || qctx.Err() != nil {
			break
		}
		wait := backoff/2 + rand.N(backoff)
		s.log.DebugContext(ctx, "store: retrying", "op", op, "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-qctx.Done():
			t.Stop()
		}
		if qctx.Err() != nil {
			break
		}
		backoff *= 4
	}
	return classify(ctx, op, err)
}

// Codes of errors that a later try may not see.
var transientCodes = map[string]bool{
	"40001": true, // serialization_failure
	"40P01": true, // deadlock_detected
	"57P01": true, // admin_shutdown
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now
	"53300": true, // too_many_connections
}

// answered reports whether err is one of the package's answers (a
// decision, not a failure): never retried, passed on as it is.
func answered(err error) bool {
	for _, e := range []error{ErrNotFound, ErrInvalid, ErrConflict, ErrLimit, ErrLastOwner, ErrRevoked, ErrRotated} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func retryable(err error, idempotent bool) bool {
	if answered(err) {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server rolled the statement back (or refused the
		// connection for now): safe to run again.
		return transientCodes[pgErr.Code] || strings.HasPrefix(pgErr.Code, "08")
	}
	// Failing to connect sends no statement.
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	// A failure on the way to or from the server: retried where nothing
	// was sent, or where running twice changes nothing.
	return idempotent || pgconn.SafeToRetry(err)
}

// classify turns a final error into one wrapping a sentinel callers act on.
// Messages name the operation and Postgres' reason, never field values.
func classify(ctx context.Context, op string, err error) error {
	if answered(err) || errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	}
	// The caller gave up: its own cancellation, not the database's fault.
	if ctx.Err() != nil {
		return fmt.Errorf("store: %s: %w", op, ctx.Err())
	}
	// Not connected (server down, wrong password, no such database):
	// nothing can be answered.
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return fmt.Errorf("store: %s: %w: %w", op, ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			return fmt.Errorf("store: %s: %w", op, ErrConflict)
		case pgErr.Code == "23503": // foreign_key_violation
			return fmt.Errorf("store: %s: referenced row: %w", op, ErrNotFound)
		case strings.HasPrefix(pgErr.Code, "22"), // data exception: bad encoding, too long, bad json
			pgErr.Code == "23502", // not_null_violation
			pgErr.Code == "23514": // check_violation
			return fmt.Errorf("store: %s: %w: %s", op, ErrInvalid, pgErr.Message)
		case transientCodes[pgErr.Code], strings.HasPrefix(pgErr.Code, "08"),
			pgErr.Code == "57014": // query_canceled: too slow for the query timeout
			return fmt.Errorf("store: %s: %w: %w", op, ErrUnavailable, err)
		}
		return fmt.Errorf("store: %s: %w", op, err)
	}
	// Timeouts, refused connections, broken sockets, a closed pool: the
	// database cannot be reached.
	return fmt.Errorf("store: %s: %w: %w", op, ErrUnavailable, err)
}
