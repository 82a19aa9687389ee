// Package usage is helix-authz's usage ledger: it takes the counts
// workers (and helix-authz itself) report in numbered batches
// (proto/usage/v1) into usage_hourly exactly once, and answers the
// organizations', machine callers' and platform admins' questions about
// them (per hour or day, client and model, as JSON or CSV).
//
// Exactly once: a reporter numbers its batches and resends each unchanged
// until it is acknowledged. Store.Apply inserts (reporter, seq) into
// usage_batches and adds the batch's rows in the same transaction, so a
// batch is either counted and remembered, or neither; a resend after a lost
// answer finds (reporter, seq) and is acknowledged without counting again.
package usage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

// Retention of the ledger's side tables: applied batches are remembered
// for BatchRetention (a reporter that has not had a batch acknowledged for
// that long has long been restarted, with a new reporter id), and the API
// keys' daily use counts (api_key_usage_daily) for KeyUseRetention.
const (
	BatchRetention  = 7 * 24 * time.Hour
	KeyUseRetention = 400 * 24 * time.Hour
)

// ErrUnavailable wraps database failures (the caller should retry).
var ErrUnavailable = errors.New("usage: database unavailable")

// Store is the ledger in Postgres (tables usage_hourly and usage_batches).
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// NewStore returns the ledger on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool, now: time.Now} }

// maxApplyAttempts: a deadlock or serialization failure between two
// batches touching the same rows is retried (rows are applied in key
// order, which makes deadlocks rare, not impossible with the index).
const maxApplyAttempts = 3

// Apply adds the batch's rows to the ledger and records (reporter, seq) in
// one transaction; dup is true when the batch had been applied before (it
// is then not counted again). orgOf names a client's organization ("" for
// none, such as an operator's client); a row keeps the organization its
// first write named. req must have passed Validate.
func (s *Store) Apply(ctx context.Context, req *usagev1.RecordRequest, orgOf func(clientID string) string) (dup bool, err error) {
	if err := Validate(req); err != nil {
		return false, err
	}
	rows := merge(req.GetRows())
	orgs := make([]string, len(rows))
	for i, r := range rows {
		if orgOf != nil {
			orgs[i] = orgOf(r.GetClientId())
		}
	}
	for attempt := 1; ; attempt++ {
		dup, err = s.apply(ctx, req.GetReporter(), req.GetSeq(), rows, orgs)
		var pgErr *pgconn.PgError
		if err != nil && errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") && attempt < maxApplyAttempts {
			continue
		}
		return dup, err
	}
}

const upsertRow = `
INSERT INTO usage_hourly AS u (hour, org_id, client_id, model, requests, inferences, errors, throttled, compute_ns, latency_buckets)
VALUES (to_timestamp($1), NULLIF($2, '')::uuid, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (hour, client_id, model) DO UPDATE SET
    org_id          = COALESCE(u.org_id, EXCLUDED.org_id),
    requests        = u.requests + EXCLUDED.requests,
    inferences      = u.inferences + EXCLUDED.inferences,
    errors          = u.errors + EXCLUDED.errors,
    throttled       = u.throttled + EXCLUDED.throttled,
    compute_ns      = u.compute_ns + EXCLUDED.compute_ns,
    latency_buckets = ARRAY(
        SELECT COALESCE(a, 0) + COALESCE(b, 0)
        FROM unnest(u.latency_buckets, EXCLUDED.latency_buckets) WITH ORDINALITY AS t(a, b, i)
        ORDER BY i)`

func (s *Store) apply(ctx context.Context, reporter string, seq uint64, rows []*usagev1.UsageRow, orgs []string) (bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit, a no-op
	// The batch's mark first: a concurrent resend waits on this row's lock
	// and then finds it (or, if this transaction fails, takes over).
	tag, err := tx.Exec(ctx, `INSERT INTO usage_batches (reporter, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING`, reporter, int64(seq))
	if err != nil {
		return false, fmt.Errorf("%w: record batch: %w", ErrUnavailable, err)
	}
	if tag.RowsAffected() == 0 {
		return true, nil
	}
	if len(rows) > 0 {
		b := &pgx.Batch{}
		for i, r := range rows {
			buckets := make([]int64, len(r.GetLatencyBuckets()))
			for j, n := range r.GetLatencyBuckets() {
				buckets[j] = int64(n)
			}
			b.Queue(upsertRow, r.GetHourUnix(), orgs[i], r.GetClientId(), r.GetModel(),
				int64(r.GetRequests()), int64(r.GetInferences()), int64(r.GetErrors()), int64(r.GetThrottled()),
				int64(r.GetComputeNs()), buckets)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return false, fmt.Errorf("%w: add rows: %w", ErrUnavailable, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("%w: commit: %w", ErrUnavailable, err)
	}
	return false, nil
}

// merge sums rows of the same hour, client and model (one statement may
// not update a row twice) and sorts them by that key, so that concurrent
// batches lock rows in one order.
func merge(in []*usagev1.UsageRow) []*usagev1.UsageRow {
	type key struct {
		hour          int64
		client, model string
	}
	byKey := make(map[key]*usagev1.UsageRow, len(in))
	out := make([]*usagev1.UsageRow, 0, len(in))
	for _, r := range in {
		k := key{r.GetHourUnix(), r.GetClientId(), r.GetModel()}
		m, ok := byKey[k]
		if !ok {
			m = &usagev1.UsageRow{HourUnix: k.hour, ClientId: k.client, Model: k.model}
			byKey[k] = m
			out = append(out, m)
		}
		m.Requests = satAdd(m.Requests, r.GetRequests())
		m.Inferences = satAdd(m.Inferences, r.GetInferences())
		m.Errors = satAdd(m.Errors, r.GetErrors())
		m.Throttled = satAdd(m.Throttled, r.GetThrottled())
		m.ComputeNs = satAdd(m.ComputeNs, r.GetComputeNs())
		if lb := r.GetLatencyBuckets(); len(lb) > 0 {
			if len(m.LatencyBuckets) < len(lb) {
				m.LatencyBuckets = append(m.LatencyBuckets, make([]uint64, len(lb)-len(m.LatencyBuckets))...)
			}
			for i, n := range lb {
				m.LatencyBuckets[i] = satAdd(m.LatencyBuckets[i], n)
			}
		}
	}
	slices.SortFunc(out, func(a, b *usagev1.UsageRow) int {
		if a.HourUnix != b.HourUnix {
			if a.HourUnix < b.HourUnix {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.ClientId, b.ClientId); c != 0 {
			return c
		}
		return strings.Compare(a.Model, b.Model)
	})
	return out
}

// satAdd adds, stopping at the largest count a bigint column holds.
func satAdd(a, b uint64) uint64 {
	if a > math.MaxInt64-b || b > math.MaxInt64 {
		return math.MaxInt64
	}
	return a + b
}

// Prune deletes applied-batch marks older than BatchRetention and API-key
// day counts older than KeyUseRetention; it returns how many rows went.
func (s *Store) Prune(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	tag, err := s.pool.Exec(ctx, `DELETE FROM usage_batches WHERE applied_at < $1`, now.Add(-BatchRetention))
	if err != nil {
		return 0, fmt.Errorf("%w: prune usage_batches: %w", ErrUnavailable, err)
	}
	n += tag.RowsAffected()
	tag, err = s.pool.Exec(ctx, `DELETE FROM api_key_usage_daily WHERE day < ($1::timestamptz AT TIME ZONE 'UTC')::date`, now.Add(-KeyUseRetention))
	if err != nil {
		return n, fmt.Errorf("%w: prune api_key_usage_daily: %w", ErrUnavailable, err)
	}
	return n + tag.RowsAffected(), nil
}

// RunPruning prunes at start and every interval until ctx ends.
func (s *Store) RunPruning(ctx context.Context, interval time.Duration, warn func(msg string, args ...any)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Prune(ctx, s.now()); err != nil && ctx.Err() == nil {
			warn("prune the usage ledger's batches and API-key day counts", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
