package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Unit tests of the retry loop and error mapping around fabricated
// errors; the real-database behaviour is tested in store_test.

func pgErr(code string) error {
	return fmt.Errorf("query: %w", &pgconn.PgError{Code: code, Message: "m"})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"no rows", pgx.ErrNoRows, ErrNotFound},
		{"not found", ErrNotFound, ErrNotFound},
		{"unique", pgErr("23505"), ErrConflict},
		{"foreign key", pgErr("23503"), ErrNotFound},
		{"check", pgErr("23514"), ErrInvalid},
		{"not null", pgErr("23502"), ErrInvalid},
		{"bad encoding", pgErr("22021"), ErrInvalid},
		{"too long", pgErr("22001"), ErrInvalid},
		{"serialization", pgErr("40001"), ErrUnavailable},
		{"deadlock", pgErr("40P01"), ErrUnavailable},
		{"admin shutdown", pgErr("57P01"), ErrUnavailable},
		{"cannot connect now", pgErr("57P03"), ErrUnavailable},
		{"connection failure", pgErr("08006"), ErrUnavailable},
		{"query canceled", pgErr("57014"), ErrUnavailable},
		{"broken socket", io.ErrUnexpectedEOF, ErrUnavailable},
		{"timeout", context.DeadlineExceeded, ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(context.Background(), "op", tc.err)
			if !errors.Is(got, tc.want) {
				t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	// A syntax error is a bug, not an outage: no sentinel.
	if got := classify(context.Background(), "op", pgErr("42601")); errors.Is(got, ErrUnavailable) || errors.Is(got, ErrInvalid) {
		t.Errorf("syntax error classified as %v", got)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if got := classify(cancelled, "op", io.ErrUnexpectedEOF); !errors.Is(got, context.Canceled) || errors.Is(got, ErrUnavailable) {
		t.Errorf("caller cancelled: %v", got)
	}
}

// safeErr is an error pgconn reports as safe to retry (nothing was sent).
type safeErr struct{}

func (safeErr) Error() string     { return "dial: connection refused" }
func (safeErr) SafeToRetry() bool { return true }

func TestDoRetries(t *testing.T) {
	s := &Store{timeout: time.Second, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	tests := []struct {
		name       string
		idempotent bool
		errs       []error // returned by successive tries; nil ends
		tries      int
		want       error
	}{
		{"success", true, []error{nil}, 1, nil},
		{"serialization then success", false, []error{pgErr("40001"), pgErr("40P01"), nil}, 3, nil},
		{"always transient", true, []error{pgErr("57P01"), pgErr("57P01"), pgErr("57P01"), pgErr("57P01")}, 3, ErrUnavailable},
		{"broken socket, idempotent", true, []error{io.ErrUnexpectedEOF, nil}, 2, nil},
		{"broken socket, not idempotent", false, []error{io.ErrUnexpectedEOF, nil}, 1, ErrUnavailable},
		{"nothing sent, not idempotent", false, []error{safeErr{}, nil}, 2, nil},
		{"conflict is final", true, []error{pgErr("23505"), nil}, 1, ErrConflict},
		{"not found is final", true, []error{ErrNotFound, nil}, 1, ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tries := 0
			err := s.do(context.Background(), "op", tc.idempotent, func(context.Context) error {
				e := tc.errs[tries]
				tries++
				return e
			})
			if tries != tc.tries {
				t.Errorf("%d tries, want %d", tries, tc.tries)
			}
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

// Retries stay within the query timeout even when every try is slow.
func TestDoBoundedByTimeout(t *testing.T) {
	s := &Store{timeout: 200 * time.Millisecond, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	start := time.Now()
	err := s.do(context.Background(), "op", true, func(ctx context.Context) error {
		<-ctx.Done()
		return fmt.Errorf("read: %w", ctx.Err())
	})
	if took := time.Since(start); took > 400*time.Millisecond {
		t.Errorf("took %s", took)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error %v, want ErrUnavailable", err)
	}
}

func TestParseChange(t *testing.T) {
	tests := []struct {
		in   string
		want Change
		ok   bool
	}{
		{"client:acme", Change{ChangeClient, "acme"}, true},
		{"apikey:hx_1", Change{ChangeAPIKey, "hx_1"}, true},
		{"revoked:a:b", Change{ChangeRevoked, "a:b"}, true},
		{"keys:", Change{ChangeKeys, ""}, true},
		{"resync:", Change{}, false}, // only Listen itself says resync
		{"bogus:1", Change{}, false},
		{"client", Change{}, false},
		{"", Change{}, false},
	}
	for _, tc := range tests {
		got, ok := parseChange(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseChange(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
