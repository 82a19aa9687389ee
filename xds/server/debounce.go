package server

import (
	"context"
	"time"
)

// Rebuild timing, as in Contour: wait for a quiet spell of DefaultHoldoff
// after the last change, but never longer than DefaultMaxWait after the
// first, so a steady trickle of changes cannot starve the rebuild.
const (
	DefaultHoldoff = 100 * time.Millisecond
	DefaultMaxWait = 500 * time.Millisecond
)

// Debouncer coalesces change notifications into calls of a rebuild
// function, run one at a time on the goroutine that calls Run.
type Debouncer struct {
	holdoff, maxWait time.Duration
	fn               func(context.Context)
	kick             chan struct{}
}

// NewDebouncer returns a Debouncer calling fn holdoff after the last
// Trigger, or maxWait after the first one of a burst, whichever is sooner.
func NewDebouncer(holdoff, maxWait time.Duration, fn func(context.Context)) *Debouncer {
	if maxWait < holdoff {
		maxWait = holdoff
	}
	return &Debouncer{holdoff: holdoff, maxWait: maxWait, fn: fn, kick: make(chan struct{}, 1)}
}

// Trigger notes a change; it never blocks. A change noted while fn runs
// leads to another call after it.
func (d *Debouncer) Trigger() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run calls fn as changes come, until ctx ends.
func (d *Debouncer) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		}
		deadline := time.Now().Add(d.maxWait)
		quiet := time.NewTimer(d.holdoff)
	burst:
		for {
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			hard := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				quiet.Stop()
				hard.Stop()
				return
			case <-d.kick:
				quiet.Reset(d.holdoff)
				hard.Stop()
			case <-quiet.C:
				hard.Stop()
				break burst
			case <-hard.C:
				break burst
			}
		}
		quiet.Stop()
		d.fn(ctx)
	}
}
