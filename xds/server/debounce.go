package server

import (
	"context"
	"time"
)

// Rebuild timing, as in Contour: a change that comes after a quiet spell
// of DefaultHoldoff since the last rebuild is rebuilt at once (a lone
// worker registering is routed without waiting out a hold-off: that was
// most of registration-to-route); a change during a burst waits for a
// quiet spell of DefaultHoldoff after the last change, but never longer
// than DefaultMaxWait after the first, so a steady trickle of changes
// cannot starve the rebuild, nor run it more than about once a hold-off.
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

// NewDebouncer returns a Debouncer calling fn at once for a Trigger that
// comes holdoff or more after the last call ended, and otherwise holdoff
// after the last Trigger, or maxWait after the first one of the burst,
// whichever is sooner.
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
	var lastEnd time.Time // when the last call of fn returned
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		}
		if lastEnd.IsZero() || time.Since(lastEnd) >= d.holdoff {
			d.fn(ctx)
			lastEnd = time.Now()
			continue
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
		lastEnd = time.Now()
	}
}
