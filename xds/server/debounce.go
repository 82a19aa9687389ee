package server

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// Rebuild timing. A change is rebuilt at once while rebuilds stay within a
// rate of one per DefaultHoldoff, with bursts of atOnceBurst (a worker
// registering is routed without waiting out a hold-off, which was most of
// registration-to-route, even just after another worker left). Beyond that
// rate, as in Contour, a change waits for a quiet spell of DefaultHoldoff
// after the last change, but never longer than DefaultMaxWait after the
// first, so a steady trickle of changes cannot starve the rebuild.
const (
	DefaultHoldoff = 100 * time.Millisecond
	DefaultMaxWait = 500 * time.Millisecond
	// atOnceBurst: how many rebuilds may run at once back to back.
	atOnceBurst = 3
)

// Debouncer coalesces change notifications into calls of a rebuild
// function, run one at a time on the goroutine that calls Run.
type Debouncer struct {
	holdoff, maxWait time.Duration
	fn               func(context.Context)
	kick             chan struct{}
	// atOnce admits the changes that need not wait.
	atOnce *rate.Limiter
}

// NewDebouncer returns a Debouncer calling fn at once for a Trigger while
// calls stay within one per holdoff (bursts of atOnceBurst), and otherwise
// holdoff after the last Trigger, or maxWait after the first one of the
// burst, whichever is sooner.
func NewDebouncer(holdoff, maxWait time.Duration, fn func(context.Context)) *Debouncer {
	if maxWait < holdoff {
		maxWait = holdoff
	}
	return &Debouncer{holdoff: holdoff, maxWait: maxWait, fn: fn, kick: make(chan struct{}, 1),
		atOnce: rate.NewLimiter(rate.Every(holdoff), atOnceBurst)}
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
		if d.atOnce.Allow() {
			d.fn(ctx)
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
		d.atOnce.Reserve() // counts against the rate too
		d.fn(ctx)
	}
}
