// Command bench-gateway is `make bench-gateway`: in one run on this
// machine it measures what the gateway costs a request and how fast it
// follows changes, and writes the figures into docs/benchmarks.md.
//
//	go run ./bench/gateway [--quick] [--write docs/benchmarks.md]
//
// perf_analyzer (gRPC, model simple) at each concurrency against the same
// helix-worker (a) directly, (b) through an Envoy with TLS only (the
// translator's resources for the bench's gateway config minus the
// ext_authz and rate-limit filters, served by an ADS server in this
// process) and (c) through the full chain: helix-xds, helix-authz on
// Postgres, helix-ratelimit on Redis, and Envoy, with a token of a client
// whose plan's limit is never reached. Then the convergence of a worker
// registration (registration -> first request routed to it through the
// full chain), and the snapshot build for 1,000 models x 100 workers.
//
// Every process is started here on 127.0.0.1 free ports and stopped at the
// end, on an error and on Ctrl-C / SIGTERM. It needs `make deps build
// models` (bin/, .venv's Envoy and perf_analyzer, PostgreSQL, Redis,
// models/simple and models/mlp).
//
// Flags:
//
//	--quick                 1 s windows, 10 trials, 3 snapshot builds (a smoke run; not with --write)
//	--write FILE            replace the bench-gateway section of FILE (between its markers)
//	--window D              perf_analyzer measurement window, 3 per point (default 5s)
//	--concurrency LIST      perf_analyzer concurrencies (default 1,16,64)
//	--trials N              convergence trials (default 50)
//	--snapshot-runs N       timed snapshot builds per size (default 10)
//	--envoy-concurrency N   worker threads of both Envoys (default 0: one per core)
//	--perf-analyzer PATH    default .venv/bin/perf_analyzer
//	--keep                  keep the temporary folder: logs, CSVs, configs, Envoy stats
//	--only PART             measure one part only, log it, write no report: convergence or snapshot
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/bench/internal/sysinfo"
	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/pgbin"
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
	only             string // "", "convergence" or "snapshot"
	args             []string
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
	fs.StringVar(&o.only, "only", "", "measure one part only and log it (no report): convergence or snapshot")
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
	if o.write != "" && (o.quick || o.only != "") {
		return errors.New("--write wants a full run: not with --quick or --only")
	}
	if o.only != "" && o.only != onlyConvergence && o.only != onlySnapshot {
		return fmt.Errorf("--only %q: want %s or %s", o.only, onlyConvergence, onlySnapshot)
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
	for _, b := range []string{"helix-worker", "helix-authz", "helix-xds", "helix-ratelimit"} {
		if _, err := os.Stat(filepath.Join("bin", b)); err != nil {
			return fmt.Errorf("bin/%s is missing: run `make build`", b)
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
}

func run(ctx context.Context, o *options) error {
	out := &outcome{started: time.Now().UTC(), before: sysinfo.LoadAvg(), machine: sysinfo.ReadMachine(), perfCommands: map[string]string{}}
	logf("load average before: %.2f %.2f %.2f", out.before[0], out.before[1], out.before[2])

	// The snapshot build first, with the servers not yet running.
	var err error
	if o.only != onlyConvergence {
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
	s := &stack{root: root, dir: tmp, envoyBin: envoyBin, envoyConcurrency: o.envoyConcurrency}
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
		{name: pathFull, url: s.fullAddr, tls: true, token: s.token, envoy: s.fullEnvoy,
			procs: []*proc{s.worker, s.fullEnvoy.proc, s.authz, s.ratelimit, s.redis}},
	}
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
		if o.only == onlyConvergence {
			break
		}
		for k := range targets {
			t := targets[(ci+k)%len(targets)]
			logf("perf_analyzer: %s, concurrency %d", t.name, c)
			r, err := runPerf(ctx, o, s, t, c)
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
	}

	// Both Envoys' stats, for --keep.
	for _, e := range []*envoy{s.tlsEnvoy, s.fullEnvoy} {
		if b, err := httpGet(ctx, http.DefaultClient, e.adminURL+"/stats"); err == nil {
			_ = os.WriteFile(filepath.Join(tmp, e.Name()+".stats"), b, 0o644)
		}
	}

	logf("convergence: %d trials", o.trials)
	if out.conv, err = measureConvergence(ctx, o, s); err != nil {
		return err
	}
	logf("convergence: first request routed p50 %v p99 %v; stable p50 %v p99 %v; %d timeouts",
		quantile(out.conv.first, 0.5).Round(time.Millisecond), quantile(out.conv.first, 0.99).Round(time.Millisecond),
		quantile(out.conv.stable, 0.5).Round(time.Millisecond), quantile(out.conv.stable, 0.99).Round(time.Millisecond), out.conv.timeouts)
	if o.only == onlyConvergence {
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
