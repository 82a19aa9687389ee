package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/registration"
)

// Convergence trial limits.
const (
	pollEvery        = 5 * time.Millisecond
	trialTimeout     = 10 * time.Second // registration -> routed, before the trial counts as failed
	stableStreak     = 20               // consecutive successes that end a trial
	unroutedStreak   = 5                // consecutive failures before a trial starts
	registeredLogMsg = "registered with helix-xds"
)

// convergence holds the trials' times from the worker's registration to
// the first request routed to it, and to the start of the streak of
// successes that ended the trial (the route is then in place: the first
// success may come through the default pool, which every worker joins).
type convergence struct {
	first, stable []time.Duration
	timeouts      int
	trials        int
}

// regClock is a slog handler that notes when the registration client
// logs its successful registration: the moment the e2e tests also take.
type regClock struct{ at chan time.Time }

func (h regClock) Enabled(context.Context, slog.Level) bool { return true }
func (h regClock) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h regClock) WithGroup(string) slog.Handler            { return h }
func (h regClock) Handle(_ context.Context, r slog.Record) error {
	if r.Message == registeredLogMsg {
		select {
		case h.at <- r.Time:
		default:
		}
	}
	return nil
}

// measureConvergence registers the mlp worker (as its --xds-address flags
// would: workers/registration over mTLS) and deregisters it, o.trials
// times; in each trial it polls ModelInfer on mlp through the full chain
// every 5 ms. mlp is served by that worker only, so before it registers
// the request fails (the default pool's other worker lacks the model).
func measureConvergence(ctx context.Context, o *options, s *stack) (*convergence, error) {
	// The mlp worker (index 1) registers with its own identity.
	cert, key := s.st.WorkerCert(1)
	tc, err := registration.LoadClientTLS(s.caFile(), cert, key)
	if err != nil {
		return nil, err
	}
	tok, err := s.token(ctx)
	if err != nil {
		return nil, err
	}
	cl := inference.NewGRPCInferenceServiceClient(s.fullConn)
	probe := func() bool {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := cl.ModelInfer(metadata.AppendToOutgoingContext(pctx, "authorization", "Bearer "+tok), mlpRequest())
		return err == nil && resp.GetModelName() == "mlp" && len(resp.GetRawOutputContents()) == 1
	}
	clock := regClock{at: make(chan time.Time, 1)}
	cfg := registration.Config{
		XDSAddress: s.xdsAddr, TLS: tc, WorkerID: "bench-worker-mlp", Address: "127.0.0.1",
		GRPCPort: s.mlpGRPC, HTTPPort: s.mlpHTTP,
		Models: func(context.Context) ([]registration.Model, error) {
			return []registration.Model{{Name: "mlp", Versions: []string{"1"}, Ready: true}}, nil
		},
		Ready:  func() bool { return true },
		Logger: slog.New(clock),
	}
	out := &convergence{}
	for i := range o.trials {
		if err := waitUnrouted(ctx, probe); err != nil {
			return nil, fmt.Errorf("trial %d: %w", i+1, err)
		}
		// Drain a registration time left by an earlier trial.
		select {
		case <-clock.at:
		default:
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- registration.Run(rctx, cfg) }()
		first, stable, ok := pollRouted(ctx, probe)
		var regAt time.Time
		select {
		case regAt = <-clock.at:
		case <-time.After(trialTimeout):
		case <-ctx.Done():
		}
		cancel()
		if err := <-done; err != nil {
			return nil, fmt.Errorf("trial %d: registration: %w", i+1, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if regAt.IsZero() {
			return nil, fmt.Errorf("trial %d: the registration client never logged %q (workers/registration changed its message?)", i+1, registeredLogMsg)
		}
		out.trials++
		if !ok {
			out.timeouts++
			out.first = append(out.first, trialTimeout)
			out.stable = append(out.stable, trialTimeout)
			logf("convergence trial %d: not routed within %v of registering", i+1, trialTimeout)
			continue
		}
		out.first = append(out.first, first.Sub(regAt))
		out.stable = append(out.stable, stable.Sub(regAt))
		if o.verbose {
			logf("convergence trial %d: first %v, stable %v", i+1, first.Sub(regAt).Round(time.Millisecond), stable.Sub(regAt).Round(time.Millisecond))
		}
	}
	return out, nil
}

// waitUnrouted waits until mlp requests fail unroutedStreak times in a row:
// the last trial's deregistration reached Envoy.
func waitUnrouted(ctx context.Context, probe func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	fails := 0
	for fails < unroutedStreak {
		if probe() {
			fails = 0
		} else {
			fails++
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mlp still routed 30 s after its worker deregistered")
		}
		if err := sleepCtx(ctx, pollEvery); err != nil {
			return err
		}
	}
	return nil
}

// pollRouted polls until stableStreak successes in a row or trialTimeout;
// it returns the first success and the start of the final streak.
func pollRouted(ctx context.Context, probe func() bool) (first, stable time.Time, ok bool) {
	start := time.Now()
	streak := 0
	for time.Since(start) < trialTimeout+time.Second {
		good := probe()
		now := time.Now()
		if good {
			if first.IsZero() {
				first = now
			}
			if streak == 0 {
				stable = now
			}
			streak++
			if streak >= stableStreak {
				return first, stable, true
			}
		} else {
			streak = 0
		}
		if sleepCtx(ctx, pollEvery) != nil {
			return first, stable, false
		}
	}
	return first, stable, false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
