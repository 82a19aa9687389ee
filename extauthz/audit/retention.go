package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultRetention is how long rows are kept (--audit-retention).
const DefaultRetention = 365 * 24 * time.Hour

// pruneBatch bounds the rows one pruning transaction deletes, so that
// appends (which wait for the same lock) never wait long.
const pruneBatch = 5000

// ErrChainBroken: pruning found rows that do not verify and kept them, so
// that the evidence is not deleted with them.
var ErrChainBroken = errors.New("audit: the chain does not verify")

// Prune deletes the rows recorded before the cutoff, oldest first, and
// moves the anchor to the last deleted row (its seq and hash), so that
// Verify starts there. The rows it deletes are verified first: a broken
// chain is never pruned away (ErrChainBroken). Only a prefix of the chain
// goes: a row is kept while an older-numbered one is kept.
func (s *Store) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		n, err := s.pruneBatch(ctx, before, pruneBatch)
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
	}
}

func (s *Store) pruneBatch(ctx context.Context, before time.Time, limit int) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var anchorSeq int64
		var anchorHash []byte
		if err := tx.QueryRow(ctx, `SELECT anchor_seq, anchor_hash FROM audit_chain FOR UPDATE`).Scan(&anchorSeq, &anchorHash); err != nil {
			return fmt.Errorf("audit: prune: lock the chain: %w", err)
		}
		// The prefix: rows from the anchor on, up to the first one that
		// is young enough to keep.
		rows, err := tx.Query(ctx, `SELECT `+rowColumns+` FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`,
			anchorSeq, limit)
		if err != nil {
			return fmt.Errorf("audit: prune: %w", err)
		}
		l := link{seq: anchorSeq, hash: anchorHash}
		for rows.Next() {
			r, err := scanRow(rows)
			if err != nil {
				rows.Close()
				return err
			}
			if !r.At.Before(before) {
				break
			}
			if bad, reason := l.next(r); reason != "" {
				rows.Close()
				return fmt.Errorf("%w at row %d: %s; nothing pruned", ErrChainBroken, bad, reason)
			}
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit: prune: %w", err)
		}
		if n == 0 {
			return nil
		}
		if err := maintenance(ctx, tx, true); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_log WHERE seq > $1 AND seq <= $2`, anchorSeq, l.seq); err != nil {
			return fmt.Errorf("audit: prune: delete: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_chain SET anchor_seq = $1, anchor_hash = $2`, l.seq, l.hash); err != nil {
			return fmt.Errorf("audit: prune: move the anchor: %w", err)
		}
		return maintenance(ctx, tx, false)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// RunRetention prunes rows older than retention every interval until ctx
// ends; retention 0 keeps every row.
func (s *Store) RunRetention(ctx context.Context, retention, interval time.Duration) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := s.Prune(ctx, s.now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("audit: prune old rows", "error", err)
		case n > 0:
			s.log.Info("audit: pruned old rows", "rows", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
