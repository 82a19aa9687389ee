package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultWriteTimeout bounds one append.
const DefaultWriteTimeout = 5 * time.Second

// Config configures New.
type Config struct {
	// Pool is helix-authz's database (store.Store.Pool), migrated to
	// 00006_audit at least.
	Pool *pgxpool.Pool
	// WriteTimeout bounds one append (default 5 s).
	WriteTimeout time.Duration
	// Registerer receives helix_authz_audit_write_failures_total
	// (optional).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock of the rows' at (default time.Now).
	Now func() time.Time
}

// Store is the audit trail in Postgres. It implements Recorder and is safe
// for concurrent use; appends from every replica take turns on the chain's
// row lock, so the trail is one chain.
type Store struct {
	pool     *pgxpool.Pool
	timeout  time.Duration
	log      *slog.Logger
	now      func() time.Time
	failures prometheus.Counter
}

var _ Recorder = (*Store)(nil)

// New returns the Store over cfg.Pool.
func New(cfg Config) (*Store, error) {
	if cfg.Pool == nil {
		return nil, errors.New("audit: a database pool is required")
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{
		pool: cfg.Pool, timeout: cfg.WriteTimeout, log: cfg.Logger, now: cfg.Now,
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "helix_authz_audit_write_failures_total",
			Help: "Audit events that could not be recorded (database unavailable, invalid event); each is logged.",
		}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.failures); err != nil {
			return nil, fmt.Errorf("audit: register metrics: %w", err)
		}
	}
	return s, nil
}

// Record appends e in a transaction of its own. A failure is logged and
// counted here, so callers only decide what it means for them. The append
// outlives the caller's cancellation (a client that hangs up right after
// acting still leaves its trace), bounded by the write timeout.
func (s *Store) Record(ctx context.Context, e Event) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	err := pgx.BeginFunc(wctx, s.pool, func(tx pgx.Tx) error {
		_, err := s.append(wctx, tx, e)
		return err
	})
	if err != nil {
		s.failed(ctx, e, err)
	}
	return err
}

// RecordTx appends e inside tx, so that an action and its record commit
// or roll back together (erasure does). The caller commits; a failure is
// logged and counted here as in Record.
func (s *Store) RecordTx(ctx context.Context, tx pgx.Tx, e Event) (seq int64, err error) {
	seq, err = s.append(ctx, tx, e)
	if err != nil {
		s.failed(ctx, e, err)
	}
	return seq, err
}

func (s *Store) failed(ctx context.Context, e Event, err error) {
	s.failures.Inc()
	s.log.ErrorContext(ctx, "audit event not recorded",
		"action", e.Action, "actor", e.Actor, "target", e.Target, "result", e.Result, "error", err)
}

// append adds e after the chain's head. The head's row lock serializes
// appends across connections and replicas (a row lock rather than an
// advisory lock: it is held by exactly what it guards, and pruning takes
// the same one); seq is the head's plus one, so seqs have no gaps.
func (s *Store) append(ctx context.Context, tx pgx.Tx, e Event) (int64, error) {
	r, err := prepare(e)
	if err != nil {
		return 0, err
	}
	r.salt = make([]byte, saltSize)
	if _, err := rand.Read(r.salt); err != nil {
		return 0, fmt.Errorf("audit: salt: %w", err)
	}
	r.PersonalDigest = personalDigest(r.salt, r.Operator, r.Source, r.UserAgent)
	var headSeq int64
	if err := tx.QueryRow(ctx, `SELECT head_seq, head_hash FROM audit_chain FOR UPDATE`).Scan(&headSeq, (*[]byte)(&r.PrevHash)); err != nil {
		return 0, fmt.Errorf("audit: lock the chain: %w", err)
	}
	r.Seq = headSeq + 1
	r.At = s.now().UTC().Truncate(time.Microsecond)
	r.Hash = rowHash(r)
	if _, err := tx.Exec(ctx, `INSERT INTO audit_log
		(seq, at, actor, action, target, result, detail, operator, source, user_agent,
		 personal_salt, personal_digest, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		r.Seq, r.At, r.Actor, r.Action, r.Target, r.Result, r.Detail, r.Operator, r.Source, r.UserAgent,
		r.salt, []byte(r.PersonalDigest), []byte(r.PrevHash), []byte(r.Hash)); err != nil {
		return 0, fmt.Errorf("audit: append: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_chain SET head_seq = $1, head_hash = $2`, r.Seq, []byte(r.Hash)); err != nil {
		return 0, fmt.Errorf("audit: move the head: %w", err)
	}
	return r.Seq, nil
}

// maintenance lets tx change audit_log (the trigger's setting), for this
// transaction only; end turns it off again.
func maintenance(ctx context.Context, tx pgx.Tx, on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('helix.audit_maintenance', $1, true)`, v); err != nil {
		return fmt.Errorf("audit: maintenance %s: %w", v, err)
	}
	return nil
}

// Pseudonymise erases the personal fields (operator, source, user agent)
// and their salt from every row whose actor or target is one of refs
// ("user:<uuid>", "session:<uuid>"), inside tx: erasure's one
// transaction. Rows stay, and the chain still verifies: it covers the
// fields' digest, not the fields. It returns how many rows changed.
func Pseudonymise(ctx context.Context, tx pgx.Tx, refs ...string) (int64, error) {
	if len(refs) == 0 {
		return 0, nil
	}
	if err := maintenance(ctx, tx, true); err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, `UPDATE audit_log
		SET operator = NULL, source = NULL, user_agent = NULL, personal_salt = NULL
		WHERE (actor = ANY($1) OR target = ANY($1)) AND personal_salt IS NOT NULL`, refs)
	if err != nil {
		return 0, fmt.Errorf("audit: pseudonymise: %w", err)
	}
	if err := maintenance(ctx, tx, false); err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
