package mail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeSender answers each attempt with the next of its errors (nil once
// they run out) and records what it delivered.
type fakeSender struct {
	mu        sync.Mutex
	errs      []error
	attempts  int
	delivered []Message
	block     chan struct{} // when set, Send waits for it (or ctx)
}

func (f *fakeSender) Send(ctx context.Context, m Message) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return err
	}
	f.delivered = append(f.delivered, m)
	return nil
}

func (f *fakeSender) counts() (attempts, delivered int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts, len(f.delivered)
}

func newTestQueue(t *testing.T, s Sender, size int, maxElapsed time.Duration) (*Queue, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	q, err := NewQueue(QueueConfig{
		Sender: s, Size: size, Workers: 1, MaxElapsed: maxElapsed, Registerer: reg,
		BackOff: func() backoff.BackOff { return backoff.NewConstantBackOff(time.Millisecond) },
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return q, reg
}

func sentCount(t *testing.T, q *Queue, result string) int {
	t.Helper()
	return int(testutil.ToFloat64(q.sent.WithLabelValues(result)))
}

var msg = Message{To: "ada@example.com", Subject: "Verify", Text: "link"}

// Each mail ends as sent or failed, after the attempts its errors call for.
func TestQueueDelivery(t *testing.T) {
	temp := errors.New("421 try again later")
	tests := []struct {
		name         string
		errs         []error
		maxElapsed   time.Duration
		wantAttempts int
		wantResult   string
	}{
		{"first try", nil, time.Minute, 1, ResultSent},
		{"temporary failures retried", []error{temp, temp}, time.Minute, 3, ResultSent},
		{"permanent failure not retried", []error{&PermanentError{Err: errors.New("550 no such user")}}, time.Minute, 1, ResultFailed},
		{"wrapped permanent failure", []error{fmt.Errorf("x: %w", &PermanentError{Err: errors.New("554")})}, time.Minute, 1, ResultFailed},
		{"retried until max elapsed", []error{temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp,
			temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp, temp}, 5 * time.Millisecond, -1, ResultFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSender{errs: tt.errs}
			q, _ := newTestQueue(t, f, 10, tt.maxElapsed)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { q.Run(ctx); close(done) }()
			if err := q.Enqueue(msg); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for sentCount(t, q, ResultSent)+sentCount(t, q, ResultFailed) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the mail never ended")
				}
				time.Sleep(time.Millisecond)
			}
			cancel()
			<-done
			if got := sentCount(t, q, tt.wantResult); got != 1 {
				t.Fatalf("%s = %d, want 1", tt.wantResult, got)
			}
			attempts, _ := f.counts()
			if tt.wantAttempts >= 0 && attempts != tt.wantAttempts {
				t.Fatalf("%d attempts, want %d", attempts, tt.wantAttempts)
			}
			if tt.wantAttempts < 0 && (attempts < 2 || attempts >= 40) {
				t.Fatalf("%d attempts: want retries stopped by max elapsed", attempts)
			}
		})
	}
}

// A full queue refuses at once and counts; so does an invalid message.
func TestQueueRefuses(t *testing.T) {
	q, reg := newTestQueue(t, &fakeSender{}, 2, time.Minute)
	for range 2 {
		if err := q.Send(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Enqueue(msg); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third message: %v, want ErrQueueFull", err)
	}
	if err := q.Enqueue(Message{To: "ada"}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("invalid message: %v, want ErrInvalidMessage", err)
	}
	if got := sentCount(t, q, ResultDropped); got != 1 {
		t.Fatalf("dropped = %d, want 1", got)
	}
	if got := sentCount(t, q, ResultInvalid); got != 1 {
		t.Fatalf("invalid = %d, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "helix_authz_mail_sent_total"); err != nil || n != 4 {
		t.Fatalf("%d series of helix_authz_mail_sent_total (%v), want all 4 results from the start", n, err)
	}
}

// Shutdown stops the workers; mails still queued are counted dropped.
func TestQueueShutdown(t *testing.T) {
	f := &fakeSender{block: make(chan struct{})}
	q, _ := newTestQueue(t, f, 10, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	for range 3 {
		if err := q.Enqueue(msg); err != nil {
			t.Fatal(err)
		}
	}
	// The worker takes the first and blocks in Send.
	for len(q.pending) != 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if got := sentCount(t, q, ResultDropped); got != 3 {
		t.Fatalf("dropped = %d, want 3 (one in flight, two queued)", got)
	}
}

func TestNewQueueConfig(t *testing.T) {
	for _, cfg := range []QueueConfig{
		{},
		{Sender: &fakeSender{}, Size: -1},
		{Sender: &fakeSender{}, Workers: -1},
		{Sender: &fakeSender{}, MaxElapsed: -1},
	} {
		if _, err := NewQueue(cfg); err == nil {
			t.Errorf("NewQueue(%+v) accepted", cfg)
		}
	}
}
