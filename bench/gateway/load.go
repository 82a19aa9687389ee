package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/internal/samplemodel"
	"github.com/helixflow/helixflow/xds/translate"
)

// The plan's load target (issue 13): open-loop load through the full
// chain from ghz, which holds every connection and sends on a schedule
// whatever the answers (--async), so a slow gateway cannot slow the load
// down (perf_analyzer's request-rate mode holds one connection per
// concurrent request it needs, not a fixed 1,000).

// errGhz: ghz failed or wrote no report.
var errGhz = errors.New("ghz")

// ghzVersion is the ghz the bench installs (`make bench-load`); the module
// proxy's version list stops at v0.93.0, so @latest is not it.
const ghzVersion = "v0.120.0"

// ghzDefault is where the Makefile installs it.
var ghzDefault = filepath.Join(".tools", "ghz-"+ghzVersion, "ghz")

// Load steps stop at the first rate that breaks (p95 over the bound or an
// error); requests time out after loadRequestTimeout.
const (
	loadP95Bound       = 100 * time.Millisecond
	loadRequestTimeout = 10 * time.Second
	loadRateQuantum    = 50.0 // bisection rounds rates to this
	loadOnSchedule     = 0.9  // share of the scheduled requests a step must send
)

// loadStep is one ghz run at a fixed offered rate.
type loadStep struct {
	rate     float64 // offered, requests/s
	duration time.Duration
	elapsed  time.Duration // ghz's whole run, connections and wait included
	total    time.Duration // ghz's run from the first request to the last answer
	count    uint64        // requests sent
	achieved float64       // ghz's rps
	errors   int           // non-OK answers and failures
	// statuses are the gRPC status codes of the answers (OK included).
	statuses    map[string]int
	p50, p95    time.Duration // of the OK answers
	p99, slow   time.Duration
	cpu         map[string]time.Duration // servers on the path over the run
	clientCPU   time.Duration
	reqsForCPUs float64 // requests answered, for CPU per request
	// Over the run: Envoy's counters that say why requests failed, and
	// where the time went.
	events    map[string]int64
	breakdown *breakdown
}

// broken: the step passes the bound, has errors, or the rate was not
// offered at all (the client fell behind its schedule: what it measured is
// not that rate's).
func (s *loadStep) broken() bool { return s.errors > 0 || s.p95 > loadP95Bound || s.behind() }

// behind: ghz did not send the rate's requests over the step's length
// (under 90% of them, or they took over a ninth longer than planned, less
// the slowest answer's wait at the end): the client itself had too little
// CPU, and what it measured is not that rate's.
func (s *loadStep) behind() bool {
	planned := s.rate * s.duration.Seconds()
	sending := s.total - s.slow
	return float64(s.count) < loadOnSchedule*planned || sending.Seconds() > s.duration.Seconds()/loadOnSchedule
}

// loadResult is the target run and the search for the breaking point.
type loadResult struct {
	target *loadStep
	steps  []*loadStep // in the order run (the target first)
	// lastGood and firstBad bracket the breaking point (0: none found
	// below the highest rate tried, or none good).
	lastGood, firstBad float64
	command            string // ghz's arguments for the report, paths and token named
}

// ghzReport is the part of ghz's JSON report (-O json) the bench reads.
type ghzReport struct {
	Count               uint64         `json:"count"`
	Total               time.Duration  `json:"total"`
	Rps                 float64        `json:"rps"`
	Slowest             time.Duration  `json:"slowest"`
	StatusCodeDist      map[string]int `json:"statusCodeDistribution"`
	LatencyDistribution []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
}

// parseGhzReport reads ghz's JSON report into a step.
func parseGhzReport(b []byte, st *loadStep) error {
	var r ghzReport
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%w report: %w", errGhz, err)
	}
	st.count, st.total, st.achieved, st.slow = r.Count, r.Total, r.Rps, r.Slowest
	st.statuses = r.StatusCodeDist
	st.errors = 0
	for code, n := range r.StatusCodeDist {
		if code != "OK" {
			st.errors += n
		}
	}
	// Failures before an answer (connections refused, ...) have no status.
	if total := sumValues(r.StatusCodeDist); uint64(total) < r.Count {
		st.errors += int(r.Count) - total
	}
	got := map[int]time.Duration{}
	for _, l := range r.LatencyDistribution {
		got[l.Percentage] = l.Latency
	}
	if r.Count > uint64(st.errors) {
		for _, p := range []int{50, 95, 99} {
			if _, ok := got[p]; !ok {
				return fmt.Errorf("%w report: no p%d latency", errGhz, p)
			}
		}
	}
	st.p50, st.p95, st.p99 = got[50], got[95], got[99]
	return nil
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// ghzArgs are ghz's arguments for one step; data, metadata (the token)
// and the report are files. The step is a number of requests, rate x
// length, not ghz's -z: its -z clock starts before it opens the
// connections, one after the other (seconds for 1,000 TLS handshakes on a
// busy machine), and would cut the load short. (Not -x either: ghz 0.120
// takes it for -z and then ignores -n.) The bench's own timeout caps a
// run that cannot finish.
func ghzArgs(o *options, host string, rate float64, d time.Duration, caFile, dataFile, metaFile, outFile string) []string {
	return []string{
		"--proto", filepath.Join("proto", "grpc_service.proto"), "-i", "proto",
		"--call", "inference.GRPCInferenceService/ModelInfer",
		"--cacert", caFile,
		"--async", "--rps", strconv.Itoa(int(rate)),
		"--connections", strconv.Itoa(o.loadConnections), "-c", strconv.Itoa(o.loadConnections),
		"-n", strconv.Itoa(int(rate * d.Seconds())), "-t", loadRequestTimeout.String(),
		"-B", dataFile, "-M", metaFile,
		"--disable-template-functions", "--disable-template-data",
		"-O", "json", "-o", outFile,
		host,
	}
}

// displayGhzArgs is ghzArgs for the report.
func displayGhzArgs(o *options) string {
	args := ghzArgs(o, "HOST:PORT", 0, 0, "ca.crt", "simple.bin", "token.json", "out.json")
	for i := range args {
		switch {
		case i > 0 && args[i-1] == "--rps":
			args[i] = "RATE"
		case i > 0 && args[i-1] == "-n":
			args[i] = "RATE*LENGTH"
		}
	}
	return strings.Join(args, " ")
}

// measureLoad runs the target (o.loadRate for o.loadDuration), then steps
// the rate up by o.loadStep (or down by halves from the target when the
// target already breaks) for o.stepDuration each until a step breaks, and
// narrows the bracket by o.loadBisect bisections.
func measureLoad(ctx context.Context, o *options, s *stack, t *target) (*loadResult, error) {
	dir := filepath.Join(s.dir, "load")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	data, err := proto.Marshal(samplemodel.InferRequest())
	if err != nil {
		return nil, err
	}
	dataFile := filepath.Join(dir, "simple.bin")
	if err := os.WriteFile(dataFile, data, 0o600); err != nil {
		return nil, err
	}
	res := &loadResult{command: displayGhzArgs(o)}
	run := func(rate float64, d time.Duration) (*loadStep, error) {
		logf("ghz: %s requests/s over %d connections for %v", fmtRate(rate), o.loadConnections, d)
		st, err := runGhz(ctx, o, s, t, dir, dataFile, rate, d)
		if err != nil {
			return nil, err
		}
		logf("  %s sent, %.0f/s; p50 %v p95 %v p99 %v; %d errors (%s); Envoy: %s; helix-authz: %s; CPU-s/s: %s", fmtRate(float64(st.count)), st.achieved,
			st.p50.Round(time.Microsecond), st.p95.Round(time.Microsecond), st.p99.Round(time.Microsecond), st.errors, statusSummary(st.statuses),
			eventSummary(st.events), authzSummary(st.breakdown), st.cpuSummary())
		res.steps = append(res.steps, st)
		for _, p := range t.procs {
			if p.Exited() {
				return nil, fmt.Errorf("%s %w during the load (%v):\n%s", p.Name(), errExited, p.Err(), p.Tail(tailLines))
			}
		}
		return st, nil
	}
	if res.target, err = run(o.loadRate, o.loadDuration); err != nil {
		return nil, err
	}
	if o.stepDuration <= 0 {
		return res, nil
	}
	lo, hi := 0.0, 0.0
	if res.target.broken() {
		hi = o.loadRate
	} else {
		lo = o.loadRate
		for r := o.loadRate + o.loadStep; r <= o.loadMax; r += o.loadStep {
			st, err := run(r, o.stepDuration)
			if err != nil {
				return nil, err
			}
			if st.broken() {
				hi = r
				break
			}
			lo = r
		}
	}
	for range o.loadBisect {
		if hi == 0 {
			break
		}
		mid := math.Round((lo+hi)/2/loadRateQuantum) * loadRateQuantum
		if mid <= lo || mid >= hi {
			break
		}
		st, err := run(mid, o.stepDuration)
		if err != nil {
			return nil, err
		}
		if st.broken() {
			hi = mid
		} else {
			lo = mid
		}
	}
	res.lastGood, res.firstBad = lo, hi
	return res, nil
}

// runGhz runs ghz once; the token goes in a metadata file that lives for
// the run only, and ghz's report (which repeats it) is read and removed.
func runGhz(ctx context.Context, o *options, s *stack, t *target, dir, dataFile string, rate float64, d time.Duration) (*loadStep, error) {
	tok, err := t.token(ctx)
	if err != nil {
		return nil, err
	}
	meta, err := json.Marshal(map[string]string{"authorization": "Bearer " + tok})
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("ghz-%.0f-%s", rate, d)
	metaFile, outFile := filepath.Join(dir, name+".token.json"), filepath.Join(dir, name+".json")
	defer os.Remove(metaFile)
	defer os.Remove(outFile)
	if err := os.WriteFile(metaFile, meta, 0o600); err != nil {
		return nil, err
	}
	args := ghzArgs(o, t.url, rate, d, s.caFile(), dataFile, metaFile, outFile)
	// Connections, the run, the wait for the last answers, and slack.
	gctx, cancel := context.WithTimeout(ctx, d+loadRequestTimeout+3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(gctx, o.ghz, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile

	st := &loadStep{rate: rate, duration: d, cpu: map[string]time.Duration{}}
	stats0, err := envoyStats(ctx, t.envoy)
	if err != nil {
		return nil, err
	}
	reading0, err := read(ctx, t.envoy, t.authzMetrics)
	if err != nil {
		return nil, err
	}
	cpu0 := map[string]time.Duration{}
	for _, p := range t.procs {
		cpu0[p.Name()] = cpu(p)
	}
	start := time.Now()
	runErr := cmd.Run()
	st.elapsed = time.Since(start)
	for _, p := range t.procs {
		st.cpu[p.Name()] = cpu(p) - cpu0[p.Name()]
	}
	if ps := cmd.ProcessState; ps != nil {
		st.clientCPU = ps.UserTime() + ps.SystemTime()
	}
	b, err := os.ReadFile(outFile)
	if runErr != nil && (err != nil || len(b) == 0) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s requests/s (%v): %s\n%s", errGhz, fmtRate(rate), runErr, strings.Join(args, " "), tailFile(logPath, 2000))
	}
	if err != nil {
		return nil, fmt.Errorf("%w at %s requests/s wrote no report: %w\n%s", errGhz, fmtRate(rate), err, tailFile(logPath, 2000))
	}
	if err := parseGhzReport(b, st); err != nil {
		return nil, err
	}
	st.reqsForCPUs = float64(st.count)
	stats1, err := envoyStats(ctx, t.envoy)
	if err != nil {
		return nil, err
	}
	st.events = failureEvents(stats0, stats1)
	reading1, err := read(ctx, t.envoy, t.authzMetrics)
	if err != nil {
		return nil, err
	}
	st.breakdown = reading1.since(reading0)
	// Let Envoy close the connections before the next step.
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(2 * time.Second):
	}
	return st, nil
}

// failureEvents are the counters of Envoy's that went up between two
// dumps and say why a request failed or was slow: ext_authz errors and
// denials, 5xx answers, and any cluster's timeouts, overflows and resets
// (circuit breakers, pending queues).
func failureEvents(before, after map[string]int64) map[string]int64 {
	hcm := "http." + translate.StatPrefix + "."
	out := map[string]int64{}
	for k, v := range after {
		d := v - before[k]
		if d <= 0 {
			continue
		}
		switch {
		case k == hcm+ctrAuthzError, k == hcm+ctrAuthzDenied, k == hcm+ctrAuthzAllowed, k == hcm+"downstream_rq_5xx",
			k == hcm+"downstream_rq_timeout", k == hcm+"downstream_cx_overload_reject", k == hcm+"downstream_rq_overload_close":
			out[strings.TrimPrefix(k, hcm)] = d
		case strings.HasPrefix(k, "cluster.") && (strings.HasSuffix(k, "_overflow") || strings.HasSuffix(k, ".upstream_rq_timeout") ||
			strings.HasSuffix(k, ".upstream_rq_per_try_timeout") || strings.HasSuffix(k, ".upstream_cx_connect_fail")):
			out[k] = d
		}
	}
	return out
}

// gatewayCPUPerRequest is the gateway side's CPU per request sent.
func (s *loadStep) gatewayCPUPerRequest() time.Duration {
	if s.reqsForCPUs <= 0 {
		return 0
	}
	var d time.Duration
	for _, n := range gatewayProcs {
		d += s.cpu[n]
	}
	return time.Duration(float64(d) / s.reqsForCPUs)
}

// sortedSteps are the steps by offered rate (the target's run first).
func (r *loadResult) sortedSteps() []*loadStep {
	steps := slices.Clone(r.steps[1:])
	slices.SortFunc(steps, func(a, b *loadStep) int { return int(a.rate - b.rate) })
	return append([]*loadStep{r.target}, steps...)
}

func fmtRate(r float64) string { return strconv.FormatFloat(r, 'f', -1, 64) }

// cpuSummary is each process's CPU-seconds per second over the step (1.00
// is a whole core), ghz included.
func (s *loadStep) cpuSummary() string {
	names := slices.Sorted(maps.Keys(s.cpu))
	parts := make([]string, 0, len(names)+1)
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f", n, perSecond(s.cpu[n], s.elapsed)))
	}
	return strings.Join(append(parts, fmt.Sprintf("ghz %.2f", perSecond(s.clientCPU, s.elapsed))), ", ")
}

// eventSummary is "name n, ..." of failure events, sorted; "none" without.
func eventSummary(events map[string]int64) string {
	if len(events) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(events))
	for k, v := range events {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// authzSummary is helix-authz's side of a run: mean Check and Redis
// round trip, and rate-limit decisions that were not plain allowed ones.
func authzSummary(b *breakdown) string {
	if b == nil || b.authz == nil {
		return "n/a"
	}
	a := b.authz
	return fmt.Sprintf("Check %v, Redis %v on average; rate limit: %.0f allowed, %.0f over limit, %.0f without Redis (failure mode)",
		a.meanCheck().Round(time.Microsecond), a.meanRedis().Round(time.Microsecond),
		a.decisions[decisionAllowed], a.decisions[decisionOverLimit], a.decisions[decisionError])
}
