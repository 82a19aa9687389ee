package server

import (
	"context"
	"sync"
	"testing"
	"time"
)

func runDebouncer(t *testing.T, holdoff, maxWait time.Duration) (*Debouncer, func() []time.Time) {
	t.Helper()
	var mu sync.Mutex
	var calls []time.Time
	d := NewDebouncer(holdoff, maxWait, func(context.Context) {
		mu.Lock()
		calls = append(calls, time.Now())
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d, func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), calls...)
	}
}

// A burst after a quiet spell: its first changes at once (as many as the
// rate allows), the rest in one call a hold-off after the last.
func TestDebouncerCoalescesABurst(t *testing.T) {
	// A hold-off long beside the burst: the rate refills no change meanwhile.
	const holdoff = time.Second
	d, calls := runDebouncer(t, holdoff, 5*holdoff)
	start := time.Now()
	var last time.Time
	for range 10 {
		d.Trigger()
		last = time.Now()
		time.Sleep(10 * time.Millisecond)
	}
	for len(calls()) < atOnceBurst+1 && time.Since(last) < 3*holdoff {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a call too many would come now
	got := calls()
	if len(got) != atOnceBurst+1 {
		t.Fatalf("%d calls for a burst of 10 changes, want %d (%d at once, then the rest)", len(got), atOnceBurst+1, atOnceBurst)
	}
	if wait := got[atOnceBurst-1].Sub(start); wait > holdoff/2 {
		t.Errorf("call %d came %v after the burst began, want at once", atOnceBurst, wait)
	}
	if wait := got[atOnceBurst].Sub(last); wait < holdoff*9/10 {
		t.Fatalf("called %v after the last change, want >= the %v hold-off", wait, holdoff)
	}
}

// A change soon after another (a worker registering just after one left)
// is not held back either, while the rate allows.
func TestDebouncerRunsAChangeSoonAfterAnotherAtOnce(t *testing.T) {
	const holdoff = 2 * time.Second
	d, calls := runDebouncer(t, holdoff, 2*holdoff)
	for i := range 2 {
		start := time.Now()
		d.Trigger()
		for len(calls()) == i && time.Since(start) < holdoff {
			time.Sleep(time.Millisecond)
		}
		if wait := time.Since(start); wait > holdoff/2 {
			t.Fatalf("change %d waited %v, want at once (not the %v hold-off)", i+1, wait, holdoff)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A change after a quiet spell is not held back: registration to route
// would otherwise take the hold-off every time (issue 13).
func TestDebouncerRunsALoneChangeAtOnce(t *testing.T) {
	const holdoff = 2 * time.Second
	d, calls := runDebouncer(t, holdoff, 2*holdoff)
	for range 2 { // the second after the first's quiet spell
		n := len(calls())
		start := time.Now()
		d.Trigger()
		for len(calls()) == n && time.Since(start) < holdoff {
			time.Sleep(time.Millisecond)
		}
		if wait := time.Since(start); wait > holdoff/2 {
			t.Fatalf("a lone change waited %v, want at once (not the %v hold-off)", wait, holdoff)
		}
		time.Sleep(holdoff + 100*time.Millisecond)
	}
}

func TestDebouncerMaxWaitBoundsAStream(t *testing.T) {
	d, calls := runDebouncer(t, 100*time.Millisecond, 300*time.Millisecond)
	first := time.Now()
	stop := first.Add(1100 * time.Millisecond)
	for time.Now().Before(stop) {
		d.Trigger()
		time.Sleep(20 * time.Millisecond) // never quiet for the hold-off
	}
	got := calls()
	if len(got) < 2 {
		t.Fatalf("%d calls in 1.1s of steady changes with a 300ms max wait, want >= 2", len(got))
	}
	if wait := got[0].Sub(first); wait > 600*time.Millisecond {
		t.Fatalf("first call after %v, want about 300ms", wait)
	}
}

func TestDebouncerIdleDoesNothing(t *testing.T) {
	_, calls := runDebouncer(t, 10*time.Millisecond, 50*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	if n := len(calls()); n != 0 {
		t.Fatalf("%d calls without a trigger", n)
	}
}
