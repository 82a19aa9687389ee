package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/internal/pgtext"
)

// Limits of List.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// ErrInvalidFilter: a filter the trail cannot answer (callers answer 400).
var ErrInvalidFilter = errors.New("audit: invalid filter")

// Filter selects rows. Empty fields select everything.
type Filter struct {
	Actor, Target, Action string
	// Subjects selects rows whose actor or target is one of them (a
	// person's rows: their user and session references).
	Subjects []string
	// Since and Until bound at: Since <= at < Until.
	Since, Until time.Time
	// Before selects rows with a smaller seq (List's next page: the last
	// seq of the previous one).
	Before int64
	// Limit caps List (default 100, at most 1000); Export ignores it.
	Limit int
}

// where builds the filter's SQL condition and arguments.
func (f Filter) where() (string, []any, error) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	for _, c := range []struct{ name, col, v string }{
		{"actor", "actor", f.Actor}, {"target", "target", f.Target}, {"action", "action", f.Action},
	} {
		if c.v == "" {
			continue
		}
		if pgtext.Clip(c.v, maxRef) != c.v {
			return "", nil, fmt.Errorf("%w: %s is not valid text of at most %d bytes", ErrInvalidFilter, c.name, maxRef)
		}
		add(c.col+" = $?", c.v)
	}
	if len(f.Subjects) > 0 {
		for _, v := range f.Subjects {
			if v == "" || pgtext.Clip(v, maxRef) != v {
				return "", nil, fmt.Errorf("%w: a subject is empty, or not valid text of at most %d bytes", ErrInvalidFilter, maxRef)
			}
		}
		add("(actor = ANY($?) OR target = ANY($?))", f.Subjects)
	}
	if !f.Since.IsZero() {
		add("at >= $?", f.Since)
	}
	if !f.Until.IsZero() {
		add("at < $?", f.Until)
	}
	if f.Before < 0 {
		return "", nil, fmt.Errorf("%w: before must not be negative", ErrInvalidFilter)
	}
	if f.Before > 0 {
		add("seq < $?", f.Before)
	}
	if len(conds) == 0 {
		return "true", nil, nil
	}
	return strings.Join(conds, " AND "), args, nil
}

const rowColumns = `seq, at, actor, action, target, result, detail, operator, source, user_agent,
	personal_salt, personal_digest, prev_hash, hash`

func scanRow(rows pgx.Rows) (*Row, error) {
	var r Row
	var operator, source, userAgent *string
	if err := rows.Scan(&r.Seq, &r.At, &r.Actor, &r.Action, &r.Target, &r.Result, &r.Detail,
		&operator, &source, &userAgent, &r.salt,
		(*[]byte)(&r.PersonalDigest), (*[]byte)(&r.PrevHash), (*[]byte)(&r.Hash)); err != nil {
		return nil, fmt.Errorf("audit: read row: %w", err)
	}
	r.At = r.At.UTC()
	r.Operator, r.Source, r.UserAgent = deref(operator), deref(source), deref(userAgent)
	r.Pseudonymised = r.salt == nil
	if r.Detail == nil {
		r.Detail = map[string]string{}
	}
	return &r, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// List returns the rows f selects, newest first, at most f.Limit.
func (s *Store) List(ctx context.Context, f Filter) ([]Row, error) {
	switch {
	case f.Limit == 0:
		f.Limit = DefaultListLimit
	case f.Limit < 0 || f.Limit > MaxListLimit:
		return nil, fmt.Errorf("%w: limit must be 1 to %d", ErrInvalidFilter, MaxListLimit)
	}
	where, args, err := f.where()
	if err != nil {
		return nil, err
	}
	return s.query(ctx, `SELECT `+rowColumns+` FROM audit_log WHERE `+where+
		` ORDER BY seq DESC LIMIT `+strconv.Itoa(f.Limit), args...)
}

// About returns every row whose actor or target is one of refs, oldest
// first: what the trail holds about a person (GDPR export).
func (s *Store) About(ctx context.Context, refs ...string) ([]Row, error) {
	if len(refs) == 0 {
		return []Row{}, nil
	}
	where, args, err := Filter{Subjects: refs}.where()
	if err != nil {
		return nil, err
	}
	return s.query(ctx, `SELECT `+rowColumns+` FROM audit_log WHERE `+where+` ORDER BY seq`, args...)
}

func (s *Store) query(ctx context.Context, sql string, args ...any) ([]Row, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	defer rows.Close()
	out := []Row{}
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	return out, nil
}

// Export writes every row f selects, oldest first, one JSON object per
// line (JSON Lines), hashes included so the export can be checked against
// the chain. Rows stream from one query: the export is never held whole in
// memory. It returns how many rows it wrote.
func (s *Store) Export(ctx context.Context, w io.Writer, f Filter) (int64, error) {
	where, args, err := f.where()
	if err != nil {
		return 0, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+rowColumns+` FROM audit_log WHERE `+where+` ORDER BY seq`, args...)
	if err != nil {
		return 0, fmt.Errorf("audit: export: %w", err)
	}
	defer rows.Close()
	enc := json.NewEncoder(w)
	var n int64
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return n, err
		}
		if err := enc.Encode(r); err != nil {
			return n, fmt.Errorf("audit: export: write: %w", err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	return n, nil
}

// Verification is what Verify found.
type Verification struct {
	OK bool `json:"ok"`
	// Rows is how many rows were checked (up to the first bad one).
	Rows int64 `json:"rows"`
	// FirstBadSeq is the first row that fails (or the first missing
	// one); 0 when OK.
	FirstBadSeq int64  `json:"first_bad_seq,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// The chain runs from the anchor (the last pruned row; 0 before any
	// pruning) to the head (the last appended row). Note the head's hash
	// somewhere else to detect a rewrite of the whole chain later.
	AnchorSeq int64  `json:"anchor_seq"`
	HeadSeq   int64  `json:"head_seq"`
	HeadHash  Digest `json:"head_hash"`
}

// Verify walks the whole chain, from the anchor to the head, in one
// snapshot, and reports the first row that is not what was appended: an
// edited row (its hash), a deleted one (a gap in seq, or a head beyond the
// last row), a reordered or inserted one (the link to the row before).
// Someone who rewrites every hash from an edit to the head is not caught
// by the database alone: compare HeadHash with a copy kept elsewhere.
func (s *Store) Verify(ctx context.Context) (*Verification, error) {
	v := &Verification{}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var anchorHash []byte
		if err := tx.QueryRow(ctx, `SELECT anchor_seq, anchor_hash, head_seq, head_hash FROM audit_chain`).
			Scan(&v.AnchorSeq, &anchorHash, &v.HeadSeq, (*[]byte)(&v.HeadHash)); err != nil {
			return fmt.Errorf("audit: verify: read the chain: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT `+rowColumns+` FROM audit_log ORDER BY seq`)
		if err != nil {
			return fmt.Errorf("audit: verify: %w", err)
		}
		defer rows.Close()
		l := link{seq: v.AnchorSeq, hash: anchorHash}
		for rows.Next() {
			r, err := scanRow(rows)
			if err != nil {
				return err
			}
			if bad, reason := l.next(r); reason != "" {
				v.FirstBadSeq, v.Reason = bad, reason
				return nil
			}
			v.Rows++
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit: verify: %w", err)
		}
		switch {
		case l.seq < v.HeadSeq:
			v.FirstBadSeq = l.seq + 1
			v.Reason = fmt.Sprintf("rows %d to %d are missing (deleted at the end)", l.seq+1, v.HeadSeq)
		case l.seq > v.HeadSeq:
			v.FirstBadSeq = v.HeadSeq + 1
			v.Reason = fmt.Sprintf("rows after the head (%d) were added outside the chain", v.HeadSeq)
		case string(l.hash) != string(v.HeadHash):
			v.FirstBadSeq = l.seq
			v.Reason = "the last row's hash is not the chain's head"
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	v.OK = v.Reason == ""
	return v, nil
}
