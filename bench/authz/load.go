package main

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/helixflow/helixflow/bench/internal/sysinfo"
)

// op is one request of a load run; an error means the answer was wrong.
type op func(ctx context.Context) error

// sample is what one or more load runs against one server measured.
type sample struct {
	ok, errs  int64
	firstErr  error
	elapsed   time.Duration
	lat       []time.Duration // every successful request
	serverCPU time.Duration   // CPU time of the server process
	clientCPU time.Duration   // CPU time of this process (the load generator)
	dbCPU     time.Duration   // CPU time of Postgres, where measured
	rates     []float64       // requests/s of each round
}

func (s *sample) add(o *sample) {
	s.ok += o.ok
	s.errs += o.errs
	if s.firstErr == nil {
		s.firstErr = o.firstErr
	}
	s.elapsed += o.elapsed
	s.lat = append(s.lat, o.lat...)
	s.serverCPU += o.serverCPU
	s.clientCPU += o.clientCPU
	s.dbCPU += o.dbCPU
	s.rates = append(s.rates, o.rates...)
}

func (s *sample) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ok) / s.elapsed.Seconds()
}

// quantile of the latencies (sorts them on first use).
func (s *sample) quantile(q float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	if !slices.IsSorted(s.lat) {
		slices.Sort(s.lat)
	}
	i := int(q * float64(len(s.lat)))
	if i >= len(s.lat) {
		i = len(s.lat) - 1
	}
	return s.lat[i]
}

// cpuPerSecond is CPU-seconds per second of wall time (2.00: both cores).
func cpuPerSecond(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return cpu.Seconds() / wall.Seconds()
}

// spread is (max-min)/mean of the per-round rates: how much the rounds
// disagree, which on a shared machine is mostly other people's load.
func (s *sample) spread() float64 {
	if len(s.rates) < 2 {
		return 0
	}
	lo, hi, sum := s.rates[0], s.rates[0], 0.0
	for _, r := range s.rates {
		lo, hi, sum = min(lo, r), max(hi, r), sum+r
	}
	return (hi - lo) / (sum / float64(len(s.rates)))
}

// runLoad runs callers closed-loop callers of do for d and measures them;
// pid is the server process whose CPU time is taken.
func runLoad(ctx context.Context, callers int, d time.Duration, pid int, do op) (*sample, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stop atomic.Bool
	lats := make([][]time.Duration, callers)
	var ok, errs atomic.Int64
	var errOnce sync.Once
	var firstErr error
	srv0, err := sysinfo.ProcCPU(pid)
	if err != nil {
		return nil, err
	}
	cli0 := selfCPU()
	start := time.Now()
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	var wg sync.WaitGroup
	for w := range callers {
		wg.Go(func() {
			l := make([]time.Duration, 0, 1<<14)
			for !stop.Load() && ctx.Err() == nil {
				t := time.Now()
				if err := do(ctx); err != nil {
					errs.Add(1)
					errOnce.Do(func() { firstErr = err })
					// A server that fails fast must not spin the loop.
					if errs.Load() > 1000 && errs.Load() > ok.Load() {
						cancel()
					}
					continue
				}
				l = append(l, time.Since(t))
				ok.Add(1)
			}
			lats[w] = l
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	srv1, err := sysinfo.ProcCPU(pid)
	if err != nil {
		return nil, err
	}
	s := &sample{
		ok: ok.Load(), errs: errs.Load(), firstErr: firstErr, elapsed: elapsed,
		lat: slices.Concat(lats...), serverCPU: srv1 - srv0, clientCPU: selfCPU() - cli0,
	}
	s.rates = []float64{s.rate()}
	return s, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
