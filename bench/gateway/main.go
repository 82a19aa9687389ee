// Command bench-gateway is `make bench-gateway`: in one run on this
// machine it measures what the gateway costs a request and how fast it
// follows changes, and writes the figures into docs/benchmarks.md.
//
//	go run ./bench/gateway [--quick] [--write docs/benchmarks.md]
//
// perf_analyzer (gRPC, model simple) at each concurrency against the same
// helix-worker (a) directly, (b) through an Envoy with TLS only (the
// translator's resources for the bench's gateway config minus the
// ext_authz filter, served by an ADS server in this process) and (c)
// through the full chain: helix-xds, helix-authz on Postgres taking the
// plans' rate-limit decisions in Check with its counters in Redis, and
// Envoy, with a token of a client whose plan's limit is never reached;
// after each run, where the time went (Envoy's and helix-authz's
// histograms). Then the convergence of a worker registration
// (registration -> first request routed to it through the full chain),
// the snapshot build for 1,000 models x 100 workers, and the
// plan's load target: open-loop load from ghz over 1,000 connections
// through the full chain, then the rate at which its p95 passes 100 ms.
// And inferences/s over WebSocket vs gRPC streaming vs unary gRPC through
// the full chain at each concurrency (streams.go), with their ratios; and
// the full chain's throughput with the gateway's tracing off, at 1 % and
// at 100 % sampling, as ratios to off (tracing.go; the stack runs Jaeger).
//
// Every process is started here on 127.0.0.1 free ports and stopped at the
// end, on an error and on Ctrl-C / SIGTERM. It needs `make deps build
// models` (bin/, .venv's Envoy and perf_analyzer, PostgreSQL, Redis,
// models/simple and models/mlp), ghz (`make bench-load` installs it
// into .tools/) and Jaeger (`make jaeger`, for the tracing part).
//
// Flags:
//
//	--quick                 1 s windows, 10 trials, 3 snapshot builds, a 10 s load target and 5 s steps
//	                        (a smoke run; not with --write)
//	--write FILE            replace the bench-gateway section of FILE (between its markers)
//	--window D              perf_analyzer measurement window, 3 per point (default 5s)
//	--concurrency LIST      perf_analyzer concurrencies (default 1,16,64)
//	--trials N              convergence trials (default 50)
//	--snapshot-runs N       timed snapshot builds per size (default 10)
//	--envoy-concurrency N   worker threads of both Envoys (default 0: one per core)
//	--perf-analyzer PATH    default .venv/bin/perf_analyzer
//	--keep                  keep the temporary folder: logs, CSVs, configs, Envoy stats
//	--only PART             measure one part only, log it, write no report: convergence, snapshot, load, streams or tracing
//	--no-load               leave the load target out of a full run
//	--no-tracing            leave the tracing part (and Jaeger) out of a full run
//	--load-rate R           the load target's offered rate, requests/s (default 1000)
//	--load-connections N    connections ghz holds (default 1000)
//	--load-duration D       the load target's length (default 60s)
//	--load-step R           rate added per step while looking for the breaking point (default 500)
//	--load-step-duration D  length of each step (default 20s; 0: no steps)
//	--load-bisect N         bisections between the last good and the first broken step (default 2)
//	--load-max R            highest rate stepped to (default 10000)
//	--ghz PATH              default .tools/ghz-v0.120.0/ghz (make bench-load installs it)
//	--bin-dir DIR           helix-authz, helix-xds and helix-worker from DIR instead of bin/ (not with --profile)
//	--profile DIR           CPU profiles of helix-authz (a build with a pprof listener, bench only) during
//	                        the full chain's highest concurrency and the load target; not with --write
//	-v                      log every convergence trial
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/bench/internal/sysinfo"
	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/pgbin"
	helixstack "github.com/helixflow/helixflow/internal/stack"
)

type options struct {
	quick            bool
	write            string
	window           time.Duration
	trials           int
	snapshotRuns     int
	concurrencies    []int
	envoyConcurrency int
	perfAnalyzer     string
	keep             bool
	verbose          bool
	only             string // "", "convergence", "snapshot", "load", "streams" or "tracing"
	noLoad           bool
	noTracing        bool
	loadRate         float64
	loadConnections  int
	loadDuration     time.Duration
	loadStep         float64
	stepDuration     time.Duration
	loadBisect       int
	loadMax          float64
	ghz              string
	profile          string
	binDir           string // replaces bin/ for helix-authz, helix-xds and helix-worker
	args             []string
}

// runs says whether the run measures part (one of the only* names).
func (o *options) runs(part string) bool {
	if o.only != "" {
		return o.only == part
	}
	switch part {
	case onlyLoad:
		return !o.noLoad
	case onlyTracing:
		return !o.noTracing
	}
	return true
}

func main() {
	var o options
	var conc string
	fs := flag.NewFlagSet("bench-gateway", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 1 s windows, 10 convergence trials, 3 snapshot builds (figures not worth writing down)")
	fs.StringVar(&o.write, "write", "", "write the results into this Markdown file, between the bench-gateway markers")
	fs.DurationVar(&o.window, "window", 5*time.Second, "perf_analyzer measurement window (3 windows per point)")
	fs.IntVar(&o.trials, "trials", 50, "convergence trials (register, wait until routed, deregister)")
	fs.IntVar(&o.snapshotRuns, "snapshot-runs", 10, "snapshot builds timed per gateway size (after one untimed first build)")
	fs.StringVar(&conc, "concurrency", "1,16,64", "perf_analyzer concurrencies, comma-separated")
	fs.IntVar(&o.envoyConcurrency, "envoy-concurrency", 0, "Envoy worker threads, both Envoys (0: one per core)")
	fs.StringVar(&o.perfAnalyzer, "perf-analyzer", ".venv/bin/perf_analyzer", "perf_analyzer (make deps installs it)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder (logs, perf_analyzer CSVs, configs) and say where it is")
	fs.BoolVar(&o.verbose, "v", false, "log every convergence trial")
	fs.StringVar(&o.only, "only", "", "measure one part only and log it (no report): convergence, snapshot, load, streams or tracing")
	fs.BoolVar(&o.noLoad, "no-load", false, "leave the load target (ghz, several minutes) out of a full run")
	fs.BoolVar(&o.noTracing, "no-tracing", false, "leave the tracing part (off vs 1 % vs 100 % sampling, with Jaeger) out of a full run")
	fs.Float64Var(&o.loadRate, "load-rate", 1000, "the load target's offered rate, requests/s through the full chain")
	fs.IntVar(&o.loadConnections, "load-connections", 1000, "connections ghz holds (one request worker each)")
	fs.DurationVar(&o.loadDuration, "load-duration", 60*time.Second, "the load target's length")
	fs.Float64Var(&o.loadStep, "load-step", 500, "requests/s added per step while looking for the rate at which p95 passes 100 ms")
	fs.DurationVar(&o.stepDuration, "load-step-duration", 20*time.Second, "length of each step (0: the load target only)")
	fs.IntVar(&o.loadBisect, "load-bisect", 2, "bisections between the last good and the first broken step")
	fs.Float64Var(&o.loadMax, "load-max", 10000, "highest rate stepped to")
	fs.StringVar(&o.ghz, "ghz", ghzDefault, "ghz "+ghzVersion+" (make bench-load installs it)")
	fs.StringVar(&o.binDir, "bin-dir", "", "helix-authz, helix-xds and helix-worker from this folder instead of bin/ (not with --profile)")
	fs.StringVar(&o.profile, "profile", "", "folder for CPU profiles of helix-authz (built with a pprof listener, bench only) at the full chain's highest concurrency and during the load target")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench-gateway: unexpected arguments %v\n", fs.Args())
		os.Exit(2)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["window"] {
			o.window = time.Second
		}
		if !set["trials"] {
			o.trials = 10
		}
		if !set["snapshot-runs"] {
			o.snapshotRuns = 3
		}
		if !set["load-duration"] {
			o.loadDuration = 10 * time.Second
		}
		if !set["load-step-duration"] {
			o.stepDuration = 5 * time.Second
		}
		if !set["load-bisect"] {
			o.loadBisect = 1
		}
	}
	var err error
	if o.concurrencies, err = parseConcurrencies(conc); err != nil {
		fmt.Fprintln(os.Stderr, "bench-gateway: --concurrency:", err)
		os.Exit(2)
	}
	if o.envoyConcurrency <= 0 {
		o.envoyConcurrency = runtime.NumCPU()
	}
	o.args = os.Args[1:]
	if o.profile != "" {
		// validate moves to the repository's root.
		if o.profile, err = filepath.Abs(o.profile); err != nil {
			fmt.Fprintln(os.Stderr, "bench-gateway: --profile:", err)
			os.Exit(2)
		}
	}
	if err := validate(&o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-gateway:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &o); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (%w); every process it started is stopped", err)
		}
		fmt.Fprintln(os.Stderr, "bench-gateway:", err)
		stop()
		os.Exit(1)
	}
}

func parseConcurrencies(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("%q: want integers from 1 to 1024", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func validate(o *options) error {
	if o.write != "" && (o.quick || o.only != "" || o.profile != "") {
		return errors.New("--write wants a full run: not with --quick, --only or --profile (the profiled helix-authz is not the product's)")
	}
	if o.only != "" && o.only != onlyConvergence && o.only != onlySnapshot && o.only != onlyLoad && o.only != onlyStreams && o.only != onlyTracing {
		return fmt.Errorf("--only %q: want %s, %s, %s, %s or %s", o.only, onlyConvergence, onlySnapshot, onlyLoad, onlyStreams, onlyTracing)
	}
	if o.loadRate < 1 || o.loadConnections < 1 || o.loadDuration < time.Second || o.loadStep < 1 || o.stepDuration < 0 || o.loadBisect < 0 {
		return errors.New("--load-rate, --load-connections and --load-step must be >= 1, --load-duration >= 1s, --load-step-duration and --load-bisect >= 0")
	}
	if o.window < 100*time.Millisecond || o.trials < 1 || o.snapshotRuns < 1 {
		return errors.New("--window must be >= 100ms, --trials and --snapshot-runs >= 1")
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	if o.binDir != "" && o.profile != "" {
		return errors.New("--bin-dir and --profile both choose helix-authz: pick one")
	}
	binDir := "bin"
	if o.binDir != "" {
		if binDir, err = filepath.Abs(o.binDir); err != nil {
			return err
		}
		o.binDir = binDir
	}
	for _, b := range []string{"helix-worker", "helix-authz", "helix-xds"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("%s is missing: run `make build`", filepath.Join(binDir, b))
		}
	}
	for _, m := range []string{"simple", "mlp"} {
		if _, err := os.Stat(filepath.Join("models", m, "config.pbtxt")); err != nil {
			return fmt.Errorf("models/%s is missing: run `make models`", m)
		}
	}
	if _, err := os.Stat(o.perfAnalyzer); err != nil {
		return fmt.Errorf("%s is missing: run `make deps`", o.perfAnalyzer)
	}
	if o.runs(onlyLoad) {
		if _, err := os.Stat(o.ghz); err != nil {
			return fmt.Errorf("%s is missing: run `make bench-load` (or GOBIN=$PWD/%s go install github.com/bojand/ghz/cmd/ghz@%s), or leave the load out with --no-load",
				o.ghz, filepath.Dir(ghzDefault), ghzVersion)
		}
	}
	if o.runs(onlyTracing) {
		if _, err := helixstack.FindJaeger(root); err != nil {
			return fmt.Errorf("%w; or leave the tracing part out with --no-tracing", err)
		}
	}
	if _, err := envoytest.Find(); err != nil {
		return err
	}
	if _, err := pgbin.Find(); err != nil {
		return fmt.Errorf("%w: run `make deps`", err)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("redis-server: %w: run `make deps`", err)
	}
	return nil
}

// Parts --only can pick.
const (
	onlyConvergence = "convergence"
	onlySnapshot    = "snapshot"
	onlyLoad        = "load"
	onlyStreams     = "streams"
	onlyPerf        = "perf" // not a flag value: the perf_analyzer runs, part of every full run
)

// outcome is everything the report needs.
type outcome struct {
	started, finished time.Time
	before, after     [3]float64
	machine           sysinfo.Machine
	versions          versions
	perf              []*perfResult
	conv              *convergence
	snaps             []*snapshotResult
	perfCommands      map[string]string // path -> perf_analyzer arguments (token redacted)
	load              *loadResult
	usageBatches      string // the worker's helix_usage_batches_total after the perf runs
	streams           []*streamsPoint
	tracing           *tracingResult
}

func run(ctx context.Context, o *options) error {
	out := &outcome{started: time.Now().UTC(), before: sysinfo.LoadAvg(), machine: sysinfo.ReadMachine(), perfCommands: map[string]string{}}
	logf("load average before: %.2f %.2f %.2f", out.before[0], out.before[1], out.before[2])

	// The snapshot build first, with the servers not yet running.
	var err error
	if o.runs(onlySnapshot) {
		if out.snaps, err = measureSnapshots(ctx, o.snapshotRuns); err != nil {
			return err
		}
	}
	if o.only == onlySnapshot {
		return nil
	}

	envoyBin, err := envoytest.Find()
	if err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-gateway-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			logf("kept %s", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()
	// Postgres runs as the postgres user when we are root: it must reach
	// its folder.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	s := &stack{root: root, dir: tmp, envoyBin: envoyBin, envoyConcurrency: o.envoyConcurrency, binDir: o.binDir, tracing: o.runs(onlyTracing)}
	if o.profile != "" {
		if err := s.profiled(ctx); err != nil {
			return err
		}
	}
	defer func() {
		logf("stopping every process")
		s.close()
	}()
	if err := startStack(ctx, s); err != nil {
		return err
	}
	out.versions = readVersions(ctx, o, envoyBin, s.st.DatabaseURL)

	targets := []*target{
		{name: pathDirect, url: addr(s.workerGRPC), procs: []*proc{s.worker}},
		{name: pathTLS, url: s.tlsAddr, tls: true, procs: []*proc{s.worker, s.tlsEnvoy.proc}, envoy: s.tlsEnvoy},
		{name: pathFull, url: s.fullAddr, tls: true, token: s.token, envoy: s.fullEnvoy, authzMetrics: s.authzMetricsURL(),
			procs: []*proc{s.worker, s.fullEnvoy.proc, s.authz, s.redis}},
		{name: pathUsage, url: addr(s.workerGRPC), headers: []string{usageHeader}, procs: []*proc{s.worker}},
	}
	full := targets[2]
	for _, t := range targets {
		tok := ""
		if t.token != nil {
			tok = "TOKEN"
		}
		out.perfCommands[t.name] = displayArgs(perfArgs(o, t, 1, "out.csv", tok, "ca.crt"))
	}
	// The paths take turns at each point, the first one rotating, so that
	// background load falls on all alike.
	for ci, c := range o.concurrencies {
		if !o.runs(onlyPerf) {
			break
		}
		for k := range targets {
			t := targets[(ci+k)%len(targets)]
			logf("perf_analyzer: %s, concurrency %d", t.name, c)
			profDone := s.profile(ctx, o, t == full && c == slices.Max(o.concurrencies), fmt.Sprintf("authz-full-c%d.pprof", c), 3*o.window)
			r, err := runPerf(ctx, o, s, t, c)
			if perr := <-profDone; perr != nil && err == nil {
				err = perr
			}
			if err != nil {
				return err
			}
			logf("  %9.0f infer/s  p50 %7.0f us  p99 %7.0f us", r.rate, r.p50, r.p99)
			out.perf = append(out.perf, r)
			for _, p := range t.procs {
				if p.Exited() {
					return fmt.Errorf("%s %w during the run (%v):\n%s", p.Name(), errExited, p.Err(), p.Tail(tailLines))
				}
			}
		}
		if line := usageCostLine(out.perf, c); line != "" {
			logf("%s", line)
		}
	}
	if o.runs(onlyPerf) {
		out.usageBatches = usageBatches(ctx, s)
		logf("usage ledger: the measured worker's batches: %s", out.usageBatches)
	}

	// Both Envoys' stats, for --keep.
	for _, e := range []*envoy{s.tlsEnvoy, s.fullEnvoy} {
		if b, err := httpGet(ctx, http.DefaultClient, e.adminURL+"/stats"); err == nil {
			_ = os.WriteFile(filepath.Join(tmp, e.Name()+".stats"), b, 0o644)
		}
	}

	if o.runs(onlyStreams) {
		if out.streams, err = measureStreams(ctx, o, s); err != nil {
			return err
		}
		logf("%s", streamsGoal(out.streams))
	}
	if o.only == onlyStreams {
		return nil
	}

	if o.runs(onlyTracing) {
		if out.tracing, err = measureTracing(ctx, o, s); err != nil {
			return err
		}
		logf("%s", tracingGoal(out.tracing))
	}
	if o.only == onlyTracing {
		return nil
	}

	if o.runs(onlyConvergence) {
		logf("convergence: %d trials", o.trials)
		if out.conv, err = measureConvergence(ctx, o, s); err != nil {
			return err
		}
		logf("convergence: first request routed p50 %v p99 %v; stable p50 %v p99 %v; %d timeouts",
			quantile(out.conv.first, 0.5).Round(time.Millisecond), quantile(out.conv.first, 0.99).Round(time.Millisecond),
			quantile(out.conv.stable, 0.5).Round(time.Millisecond), quantile(out.conv.stable, 0.99).Round(time.Millisecond), out.conv.timeouts)
	}
	if o.only == onlyConvergence {
		return nil
	}

	// The load last: its 1,000 connections and queues touch nothing else.
	if o.runs(onlyLoad) {
		profDone := s.profile(ctx, o, true, "authz-load.pprof", o.loadDuration)
		out.load, err = measureLoad(ctx, o, s, full)
		if perr := <-profDone; perr != nil && err == nil {
			err = perr
		}
		if err != nil {
			return err
		}
		logf("%s", loadGoal(o, out.load))
		logf("%s", breakingPoint(o, out.load))
	}
	if o.only == onlyLoad {
		return nil
	}

	out.after, out.finished = sysinfo.LoadAvg(), time.Now().UTC()
	logf("load average after: %.2f %.2f %.2f", out.after[0], out.after[1], out.after[2])
	section := report(o, out)
	fmt.Println(section)
	if o.write != "" {
		if err := benchdoc.WriteSection(o.write, beginMarker, endMarker, section); err != nil {
			return err
		}
		logf("wrote %s", o.write)
	}
	return nil
}
