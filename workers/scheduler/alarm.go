package scheduler

import (
	"log/slog"
	"time"
)

// alarm wakes the instance goroutine that waits out a max_queue_delay
// (waitLocked) when the delay is over, without burning a core meanwhile.
//
// A runtime timer alone is not enough: while the process is idle the Go
// runtime sleeps in epoll_wait, whose timeout is in whole milliseconds, so
// a 200 µs delay would last about 1.1 ms. Spinning through the delay (as
// this package did) kept it precise but cost a core for the whole delay of
// every partial batch, which on a small machine is taken from the client
// and the other processes (docs/benchmarks.md, "Scheduler spin at low
// load"). So the alarm arms two timers: a kernel timer (Linux timerfd)
// whose expiry wakes epoll_wait at once, precise while the process is
// idle, and a runtime timer, precise while it is busy (the scheduler then
// checks timers on every switch but may leave the poller for a while).
// Whichever fires first wakes the waiter; the other's later firing is a
// spurious wake-up, which waiters tolerate: next plans again.
type alarm struct {
	c      chan struct{} // buffered: a firing waits here until taken or dropped
	timer  *time.Timer
	kernel *kernelTimer // nil where the platform has none
}

func newAlarm(log *slog.Logger) *alarm {
	a := &alarm{c: make(chan struct{}, 1)}
	a.timer = time.AfterFunc(time.Hour, a.fire)
	a.timer.Stop()
	k, err := newKernelTimer(a.fire)
	if err != nil {
		log.Warn("sub-millisecond queue delays may last up to a millisecond", "error", err)
	} else {
		a.kernel = k
	}
	return a
}

// fire wakes the waiter, if any.
func (a *alarm) fire() {
	select {
	case a.c <- struct{}{}:
	default:
	}
}

// arm makes the alarm fire after d, dropping a firing left from before.
func (a *alarm) arm(d time.Duration) {
	select {
	case <-a.c:
	default:
	}
	a.timer.Reset(d)
	if a.kernel != nil {
		a.kernel.set(d)
	}
}

// disarm stops both timers, so that the one that did not wake the waiter
// does not wake the process again for nothing.
func (a *alarm) disarm() {
	a.timer.Stop()
	if a.kernel != nil {
		a.kernel.set(0)
	}
}

// stop releases the alarm's timers; it must not be armed again.
func (a *alarm) stop() {
	a.timer.Stop()
	if a.kernel != nil {
		a.kernel.close()
	}
}
