package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/helixflow/helixflow/xds/translate"
)

// errPerf: perf_analyzer failed or wrote no figures.
var errPerf = errors.New("perf_analyzer")

// Paths measured.
const (
	pathDirect = "direct"
	pathTLS    = "Envoy, TLS only"
	pathFull   = "full chain"
	// pathUsage is pathDirect with the gateway's x-helix-client header:
	// the worker counts each request for the usage ledger.
	pathUsage = "direct, usage counted"
)

// target is one way to reach the worker.
type target struct {
	name string
	url  string
	tls  bool
	// token returns a fresh bearer token; nil: none is sent.
	token func(context.Context) (string, error)
	// procs are the servers on the request's way, for CPU accounting.
	procs []*proc
	envoy *envoy // nil for direct
	// authzMetrics is helix-authz's /metrics on the full chain; "" elsewhere.
	authzMetrics string
	// headers are sent with every request ("name:value").
	headers []string
}

// perfResult is one perf_analyzer run.
type perfResult struct {
	path        string
	concurrency int
	rate        float64 // inferences/s
	p50, p99    float64 // microseconds
	elapsed     time.Duration
	clientCPU   time.Duration
	cpu         map[string]time.Duration // per server process on the path
	stats       map[string]int64         // Envoy counter deltas (full chain)
	breakdown   *breakdown               // where the time went (paths through Envoy)
}

// serverCPU sums the CPU of the servers on the path.
func (r *perfResult) serverCPU() time.Duration {
	var t time.Duration
	for _, d := range r.cpu {
		t += d
	}
	return t
}

// perfArgs are perf_analyzer's arguments: the same for every path but for
// TLS, the token and the usage path's header.
func perfArgs(o *options, t *target, c int, csvPath, token, caFile string) []string {
	args := []string{"-m", "simple", "-u", t.url, "-i", "grpc", "-a",
		"--concurrency-range", fmt.Sprintf("%d:%d", c, c),
		"--measurement-mode", "time_windows", "-p", strconv.Itoa(int(o.window / time.Millisecond)),
		// The first 3 windows are taken: on a shared machine a stability
		// check can fail forever, and then nothing is recorded.
		"-s", "1000",
		"--warmup-request-count", strconv.Itoa(max(20, 20*c)),
		"-f", csvPath}
	if t.tls {
		args = append(args, "--ssl-grpc-use-ssl", "true", "--ssl-grpc-root-certifications-file", caFile)
	}
	if token != "" {
		args = append(args, "-H", "authorization:Bearer "+token)
	}
	for _, h := range t.headers {
		args = append(args, "-H", h)
	}
	return args
}

// displayArgs is perfArgs for the report: the values that change between
// runs are named, the token is hidden.
func displayArgs(args []string) string {
	names := map[string]string{
		"-u": "HOST:PORT", "--concurrency-range": "C:C", "--warmup-request-count": "max(20,20*C)",
		"-f": "out.csv", "--ssl-grpc-root-certifications-file": "ca.crt",
	}
	out := make([]string, len(args))
	for i, a := range args {
		if i > 0 && names[args[i-1]] != "" {
			a = names[args[i-1]]
		}
		out[i] = a
	}
	return redactArgs(out)
}

// redactArgs hides the token for logs and the report.
func redactArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.HasPrefix(a, "authorization:Bearer ") {
			a = "authorization:Bearer $TOKEN"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// Counters of the full chain's rows, from Envoy's stats: every measured
// request must have passed ext_authz (whose Check took the rate-limit
// decision too: helix-authz's decisions count those).
const (
	ctrRequests     = "requests"
	ctrAuthzOK      = "ext_authz.ok"
	ctrAuthzDenied  = "ext_authz.denied"
	ctrAuthzError   = "ext_authz.error"
	ctrAuthzAllowed = "ext_authz.failure_mode_allowed"
)

// chainCounters reads them from a stats dump: ext_authz's and the
// connection manager's under http.<prefix>.
func chainCounters(stats map[string]int64) map[string]int64 {
	hcm := "http." + translate.StatPrefix + "."
	return map[string]int64{
		ctrRequests:     stats[hcm+"downstream_rq_completed"],
		ctrAuthzOK:      stats[hcm+ctrAuthzOK],
		ctrAuthzDenied:  stats[hcm+ctrAuthzDenied],
		ctrAuthzError:   stats[hcm+ctrAuthzError],
		ctrAuthzAllowed: stats[hcm+ctrAuthzAllowed],
	}
}

func runPerf(ctx context.Context, o *options, s *stack, t *target, c int) (*perfResult, error) {
	token := ""
	if t.token != nil {
		var err error
		if token, err = t.token(ctx); err != nil {
			return nil, err
		}
	}
	slug := strings.NewReplacer(" ", "-", ",", "").Replace(t.name)
	csvPath := filepath.Join(s.dir, fmt.Sprintf("pa-%s-c%d.csv", slug, c))
	args := perfArgs(o, t, c, csvPath, token, s.caFile())
	timeout := time.Minute + 20*o.window + time.Duration(max(20, 20*c))*50*time.Millisecond
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(pctx, o.perfAnalyzer, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logPath := filepath.Join(s.dir, fmt.Sprintf("pa-%s-c%d.log", slug, c))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile

	var before map[string]int64
	var reading0 *reading
	if t.envoy != nil {
		if before, err = envoyStats(ctx, t.envoy); err != nil {
			return nil, err
		}
		if reading0, err = read(ctx, t.envoy, t.authzMetrics); err != nil {
			return nil, err
		}
	}
	cpu0 := make(map[string]time.Duration, len(t.procs))
	for _, p := range t.procs {
		cpu0[p.Name()] = cpu(p)
	}
	start := time.Now()
	runErr := cmd.Run()
	res := &perfResult{path: t.name, concurrency: c, elapsed: time.Since(start), cpu: map[string]time.Duration{}}
	for _, p := range t.procs {
		res.cpu[p.Name()] = cpu(p) - cpu0[p.Name()]
	}
	if ps := cmd.ProcessState; ps != nil {
		res.clientCPU = ps.UserTime() + ps.SystemTime()
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w on %s at concurrency %d (%v): %s\n%s", errPerf, t.name, c, runErr, redactArgs(args), tailFile(logPath, 2000))
	}
	f, err := os.Open(csvPath)
	if err != nil {
		return nil, fmt.Errorf("%w on %s at concurrency %d wrote no CSV: %w\n%s", errPerf, t.name, c, err, tailFile(logPath, 2000))
	}
	defer f.Close()
	if res.rate, res.p50, res.p99, err = parsePerfCSV(f); err != nil {
		return nil, fmt.Errorf("%w on %s at concurrency %d: %w", errPerf, t.name, c, err)
	}
	if before != nil {
		after, err := envoyStats(ctx, t.envoy)
		if err != nil {
			return nil, err
		}
		a, b := chainCounters(after), chainCounters(before)
		res.stats = map[string]int64{}
		for k := range a {
			res.stats[k] = a[k] - b[k]
		}
		r, err := read(ctx, t.envoy, t.authzMetrics)
		if err != nil {
			return nil, err
		}
		res.breakdown = r.since(reading0)
	}
	return res, nil
}

// parsePerfCSV reads perf_analyzer's -f file: throughput and the p50/p99
// latencies (microseconds) of its one row.
func parsePerfCSV(r io.Reader) (rate, p50, p99 float64, err error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("CSV: %w", err)
	}
	if len(rows) < 2 {
		return 0, 0, 0, fmt.Errorf("CSV: %d rows, want a header and a row", len(rows))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[strings.TrimSpace(h)] = i
	}
	get := func(name string) (float64, error) {
		i, ok := col[name]
		if !ok || i >= len(rows[1]) {
			return 0, fmt.Errorf("CSV: no column %q", name)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rows[1][i]), 64)
		if err != nil {
			return 0, fmt.Errorf("CSV: column %q: %w", name, err)
		}
		return v, nil
	}
	if rate, err = get("Inferences/Second"); err != nil {
		return
	}
	if p50, err = get("p50 latency"); err != nil {
		return
	}
	p99, err = get("p99 latency")
	return
}

// envoyStats reads Envoy's counters ("name: value" lines of /stats).
func envoyStats(ctx context.Context, e *envoy) (map[string]int64, error) {
	b, err := httpGet(ctx, http.DefaultClient, e.adminURL+"/stats?usedonly")
	if err != nil {
		return nil, fmt.Errorf("%s stats: %w", e.Name(), err)
	}
	return parseStats(string(b)), nil
}

func parseStats(body string) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
