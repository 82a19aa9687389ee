package throttle

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }
func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mustNew(t *testing.T, cfg Config) *Throttle {
	t.Helper()
	th, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return th
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		bad  bool
	}{
		{"ok", Config{Base: time.Second, Max: time.Minute}, false},
		{"base = max", Config{Base: time.Second, Max: time.Second, Forget: time.Second}, false},
		{"no base", Config{Max: time.Minute}, true},
		{"negative base", Config{Base: -time.Second, Max: time.Minute}, true},
		{"max below base", Config{Base: time.Minute, Max: time.Second}, true},
		{"forget below max", Config{Base: time.Second, Max: time.Minute, Forget: time.Second}, true},
		{"negative keys", Config{Base: time.Second, Max: time.Minute, MaxKeys: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if (err != nil) != tt.bad {
				t.Fatalf("New: %v, want an error: %v", err, tt.bad)
			}
		})
	}
}

// The waits double from Base and stop at Max.
func TestBackoff(t *testing.T) {
	tests := []struct {
		name     string
		base     time.Duration
		max      time.Duration
		failures int
		want     time.Duration
	}{
		{"none", time.Second, 15 * time.Minute, 0, 0},
		{"first", time.Second, 15 * time.Minute, 1, time.Second},
		{"second", time.Second, 15 * time.Minute, 2, 2 * time.Second},
		{"fifth", time.Second, 15 * time.Minute, 5, 16 * time.Second},
		{"capped", time.Second, 15 * time.Minute, 11, 15 * time.Minute},
		{"many (no overflow)", time.Second, 15 * time.Minute, 200, 15 * time.Minute},
		{"max not a power of two", 3 * time.Second, 10 * time.Second, 3, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			th := mustNew(t, Config{Base: tt.base, Max: tt.max, Now: c.now})
			for range tt.failures {
				th.Failure("k")
			}
			if got := th.Wait("k"); got != tt.want {
				t.Fatalf("wait after %d failures: %v, want %v", tt.failures, got, tt.want)
			}
		})
	}
}

// A wait counts down with time and ends.
func TestWaitCountsDown(t *testing.T) {
	c := newClock()
	th := mustNew(t, Config{Base: time.Second, Max: time.Minute, Now: c.now})
	th.Failure("k")
	th.Failure("k") // 2 s
	c.add(1500 * time.Millisecond)
	if got := th.Wait("k"); got != 500*time.Millisecond {
		t.Fatalf("wait %v, want 500ms", got)
	}
	c.add(time.Second)
	if got := th.Wait("k"); got != 0 {
		t.Fatalf("wait %v after it ended, want 0", got)
	}
	th.Failure("k") // the third in a row: 4 s
	if got := th.Wait("k"); got != 4*time.Second {
		t.Fatalf("wait %v, want 4s", got)
	}
}

// Keys are independent; a success forgets one key only.
func TestSuccessForgetsOneKey(t *testing.T) {
	c := newClock()
	th := mustNew(t, Config{Base: time.Second, Max: time.Minute, Now: c.now})
	for range 3 {
		th.Failure("a")
		th.Failure("b")
	}
	th.Success("a")
	if got := th.Wait("a"); got != 0 {
		t.Fatalf("a waits %v after a success", got)
	}
	if got := th.Wait("b"); got != 4*time.Second {
		t.Fatalf("b waits %v, want 4s", got)
	}
	th.Failure("a")
	if got := th.Wait("a"); got != time.Second {
		t.Fatalf("a's next failure waits %v, want Base", got)
	}
	if got := th.Wait("never seen"); got != 0 {
		t.Fatalf("an unknown key waits %v", got)
	}
}

// A key quiet for Forget starts again from Base; one failing within it
// keeps climbing.
func TestForget(t *testing.T) {
	tests := []struct {
		name   string
		forget time.Duration
		quiet  time.Duration
		want   time.Duration // the wait after one more failure
	}{
		{"within the period", time.Hour, 59 * time.Minute, 8 * time.Second},
		{"after the period", time.Hour, time.Hour, time.Second},
		{"default 2×Max, within", 0, 119 * time.Second, 8 * time.Second},
		{"default 2×Max, after", 0, 120 * time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			th := mustNew(t, Config{Base: time.Second, Max: time.Minute, Forget: tt.forget, Now: c.now})
			for range 3 {
				th.Failure("k")
			}
			c.add(tt.quiet)
			th.Failure("k")
			if got := th.Wait("k"); got != tt.want {
				t.Fatalf("wait %v, want %v", got, tt.want)
			}
		})
	}
}

// MaxKeys bounds memory: the least recently touched key goes first.
func TestBounded(t *testing.T) {
	c := newClock()
	th := mustNew(t, Config{Base: time.Second, Max: time.Minute, MaxKeys: 10, Now: c.now})
	th.Failure("victim")
	for i := range 10 {
		th.Failure(fmt.Sprint("k", i))
	}
	if n := th.keys.Len(); n != 10 {
		t.Fatalf("%d keys kept, want 10", n)
	}
	if got := th.Wait("victim"); got != 0 {
		t.Fatalf("the oldest key waits %v; want it forgotten", got)
	}
	if got := th.Wait("k9"); got != time.Second {
		t.Fatalf("the newest key waits %v", got)
	}
}

// Concurrent failures on one key all count (run with -race).
func TestConcurrent(t *testing.T) {
	c := newClock()
	th := mustNew(t, Config{Base: time.Millisecond, Max: 1000 * time.Hour, Now: c.now})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 4 {
				th.Failure("k")
				th.Wait("k")
			}
		})
	}
	wg.Wait()
	if got, want := th.Wait("k"), time.Millisecond<<31; got != want {
		t.Fatalf("wait %v after 32 failures, want %v", got, want)
	}
}
