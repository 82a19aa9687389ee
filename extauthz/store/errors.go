package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// ErrInvalid: a value the database cannot or must not hold (empty id, NUL
// byte, invalid UTF-8, unknown algorithm, ...). Callers answer 400.
var ErrInvalid = errors.New("invalid value")

// ChangeResync is sent to Listen's callback after every (re)connection:
// notifications may have been missed, so caches reload what they hold.
const ChangeResync ChangeKind = "resync"

// checkText refuses what Postgres text cannot hold (NUL, invalid UTF-8),
// naming the field and never its value.
func checkText(field, v string) error {
	if strings.IndexByte(v, 0) >= 0 {
		return fmt.Errorf("store: %s contains a NUL byte: %w", field, ErrInvalid)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("store: %s is not valid UTF-8: %w", field, ErrInvalid)
	}
	return nil
}

// checkID is checkText for an identifier, which must not be empty either.
func checkID(field, v string) error {
	if v == "" {
		return fmt.Errorf("store: %s is empty: %w", field, ErrInvalid)
	}
	return checkText(field, v)
}

// checkList checks every element of a list of names, which must not be
// empty.
func checkList(field string, vs []string) error {
	for i, v := range vs {
		if err := checkID(fmt.Sprintf("%s[%d]", field, i), v); err != nil {
			return err
		}
	}
	return nil
}

// orEmpty keeps nil slices from becoming SQL NULL.
func orEmpty(vs []string) []string {
	if vs == nil {
		return []string{}
	}
	return vs
}

// nullString is nil for "", so that an optional reference is SQL NULL.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// deref is nullString's inverse.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// querier is what a pool and a transaction share, so that one insert
// serves both.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// nullTime is nil for the zero time, so that the database fills its default.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
