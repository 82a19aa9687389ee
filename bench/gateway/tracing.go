package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/internal/samplemodel"
	"github.com/helixflow/helixflow/proto/inference"
)

// The tracing section: full-chain throughput (unary ModelInfer, closed
// loop, the highest concurrency) with the gateway's tracing off, sampling
// 1 % and sampling 100 %, in the same run, as ratios to off. The stack runs
// Jaeger (internal/stack's Options.Tracing) and every daemon sends its spans
// there all along; what changes between the modes is the gateway config's
// tracing section, hot-reloaded by helix-xds: absent (Envoy traces nothing,
// so nothing below it is sampled either) or sampling 0.01 or 1.

// onlyTracing is the --only value of this section.
const onlyTracing = "tracing"

// goalTracing1pct: 1 % sampling costs at most 5 % of the full chain's
// throughput with tracing off (issue 20).
const goalTracing1pct = 0.95

// tracingRounds: each mode is measured this many times, the modes taking
// turns (the first rotating), so that background load falls on all alike;
// the median counts.
const tracingRounds = 3

type tracingMode struct {
	name     string
	sampling float64 // < 0: the tracing section is absent
}

var tracingModes = []tracingMode{{"off", -1}, {"1 %", 0.01}, {"100 %", 1}}

type tracingResult struct {
	c      int
	d      time.Duration
	rates  map[string][]float64 // mode -> infer/s of each round
	errors map[string]int64
}

func (r *tracingResult) median(mode string) float64 {
	v := slices.Clone(r.rates[mode])
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func measureTracing(ctx context.Context, o *options, s *stack) (*tracingResult, error) {
	tok, err := s.token(ctx)
	if err != nil {
		return nil, err
	}
	r := &tracingResult{c: slices.Max(o.concurrencies), d: 3 * o.window, rates: map[string][]float64{}, errors: map[string]int64{}}
	for round := range tracingRounds {
		for k := range tracingModes {
			m := tracingModes[(round+k)%len(tracingModes)]
			if err := s.setTracing(ctx, m.sampling); err != nil {
				return nil, fmt.Errorf("tracing %s: %w", m.name, err)
			}
			logf("tracing: %s, concurrency %d, %v (round %d of %d)", m.name, r.c, r.d, round+1, tracingRounds)
			ok, bad, err := s.unaryFreshConn(ctx, tok, r.c, r.d)
			if err != nil {
				return nil, fmt.Errorf("tracing %s: %w", m.name, err)
			}
			rate := float64(ok) / r.d.Seconds()
			r.rates[m.name], r.errors[m.name] = append(r.rates[m.name], rate), r.errors[m.name]+bad
			logf("  %9.0f infer/s, %d errors", rate, bad)
		}
	}
	// The parts after this one measure with tracing off, as before it.
	if err := s.setTracing(ctx, -1); err != nil {
		return nil, fmt.Errorf("tracing off again: %w", err)
	}
	logf("tracing: %s", tracingRatios(r))
	return r, nil
}

// unaryFreshConn is runUnary on a new connection: one opened before the
// gateway config changed would be served by the listener it replaced
// (Envoy drains it gradually), with the old tracing settings.
func (s *stack) unaryFreshConn(ctx context.Context, tok string, c int, d time.Duration) (int64, int64, error) {
	tc := credentials.NewTLS(&tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12})
	conn, err := grpc.NewClient(s.fullAddr, grpc.WithTransportCredentials(tc))
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	cl := inference.NewGRPCInferenceServiceClient(conn)
	req := samplemodel.InferRequest()
	return closedLoop(ctx, c, d, func(ctx context.Context, _ int) (func() (bool, error), func(), error) {
		actx := authCtx(ctx, tok)
		return func() (bool, error) {
			_, err := cl.ModelInfer(actx, req)
			return err == nil, nil
		}, func() {}, nil
	})
}

// setTracing rewrites the gateway config with the tracing section for
// sampling (< 0: none) and waits until Envoy runs it.
func (s *stack) setTracing(ctx context.Context, sampling float64) error {
	y := gatewayYAML(s.st)
	if sampling >= 0 {
		y += fmt.Sprintf("tracing:\n  collector: %s\n  sampling: %s\n", s.st.OTLPEndpoint(), strconv.FormatFloat(sampling, 'f', -1, 64))
	}
	tmp := filepath.Join(filepath.Dir(s.cfgPath), ".gateway.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(y), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.cfgPath); err != nil {
		return err
	}
	if err := waitFor(ctx, "Envoy running the tracing settings", 60*time.Second, s.fullEnvoy.proc, func(ctx context.Context) error {
		dump, err := s.st.EnvoyAdmin(ctx, "/config_dump?resource=dynamic_listeners")
		if err != nil {
			return err
		}
		return tracingApplied(dump, sampling)
	}); err != nil {
		return err
	}
	// Let the replaced listener's connections drain before measuring.
	time.Sleep(time.Second)
	return nil
}

var randomSampling = regexp.MustCompile(`"random_sampling":\s*\{\s*"value":\s*([0-9.eE+-]+)`)

// tracingApplied checks Envoy's listeners: no OpenTelemetry tracer when
// sampling < 0; otherwise the tracer, and every HCM's random_sampling
// (a percentage; absent is 100) at sampling.
func tracingApplied(dump string, sampling float64) error {
	on := strings.Contains(dump, "envoy.tracers.opentelemetry")
	if sampling < 0 {
		if on {
			return fmt.Errorf("Envoy still traces")
		}
		return nil
	}
	if !on {
		return fmt.Errorf("no OpenTelemetry tracer in Envoy's listeners yet")
	}
	ms := randomSampling.FindAllStringSubmatch(dump, -1)
	if len(ms) == 0 && sampling != 1 {
		return fmt.Errorf("no random_sampling in Envoy's listeners (100 %%), want %v %%", 100*sampling)
	}
	for _, m := range ms {
		if v, err := strconv.ParseFloat(m[1], 64); err != nil || !near(v, 100*sampling) {
			return fmt.Errorf("random_sampling %s %%, want %v %%", m[1], 100*sampling)
		}
	}
	return nil
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func tracingRatios(r *tracingResult) string {
	off := r.median("off")
	var parts []string
	for _, m := range tracingModes {
		parts = append(parts, fmt.Sprintf("%s %s infer/s (%.3fx off)", m.name, benchdoc.Commas(r.median(m.name)), ratio(r.median(m.name), off)))
	}
	return strings.Join(parts, ", ")
}

func tracingGoal(r *tracingResult) string {
	if r == nil {
		return "not measured: full chain with tracing at 1 % >= 0.95x tracing off"
	}
	off, one := r.median("off"), r.median("1 %")
	errs := r.errors["off"] + r.errors["1 %"]
	return fmt.Sprintf("%s: full chain with tracing at 1 %% >= %.2fx tracing off at concurrency %d: %.3fx (%s vs %s infer/s, %d errors; 100 %%: %.3fx)",
		benchdoc.MetOrMissed(ratio(one, off) >= goalTracing1pct && errs == 0), goalTracing1pct, r.c, ratio(one, off),
		benchdoc.Commas(one), benchdoc.Commas(off), errs, ratio(r.median("100 %"), off))
}

// tracingReport is the report's table.
func tracingReport(b *strings.Builder, r *tracingResult) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("\n### Tracing: off vs 1 %% vs 100 %% sampling (full chain, model simple)\n\n")
	w("| tracing | infer/s (median of %d) | rounds | / off | errors |\n", tracingRounds)
	w("| --- | ---: | --- | ---: | ---: |\n")
	off := r.median("off")
	for _, m := range tracingModes {
		var rounds []string
		for _, v := range r.rates[m.name] {
			rounds = append(rounds, benchdoc.Commas(v))
		}
		w("| %s | %s | %s | %.3fx | %d |\n", m.name, benchdoc.Commas(r.median(m.name)), strings.Join(rounds, ", "), ratio(r.median(m.name), off), r.errors[m.name])
	}
	w("\nUnary ModelInfer, %d callers on one new HTTP/2 connection per measurement, %v each; the modes take turns, %d rounds. The stack runs Jaeger v2 (memory storage, on the same cores) and every daemon has `--otlp-endpoint` to it throughout; the modes differ by the gateway config's `tracing` section, reloaded by helix-xds: absent (off: Envoy samples nothing, so helix-authz and the worker record nothing), `sampling: 0.01`, `sampling: 1`. At 100 %% every request's spans (Envoy's, helix-authz's Check and ratelimit, the worker's server, queue, batch, execute, encode) are exported and stored by Jaeger on this machine, so that mode includes the backend's cost.\n",
		r.c, r.d, tracingRounds)
}
