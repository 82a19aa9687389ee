package main

// The chaos suite: under a steady load, each process in turn is killed
// with SIGKILL and started again at once (supervise's Crash); per fault
// it prints the requests sent and failed around it, how long the process
// took to be ready again, when the last request failed, and whether
// anything was lost. Figures are compared with the goals and reported;
// lost data fails the suite.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/xds/config"
)

// Around each fault: a quiet time before it, and how long the load is
// watched after the process is ready again.
const (
	settle  = 3 * time.Second
	observe = 5 * time.Second
)

// fault is one process to crash and the goal for the load meanwhile.
type fault struct {
	proc string
	goal string
	// met says whether the figures meet the goal.
	met func(r *result) bool
}

// result is one fault's figures.
type result struct {
	fault
	sent, failed, failedConns int
	ready                     time.Duration // kill to ready again
	lastFailure               time.Duration // kill to the last failed request's send; -1: none
	errs                      string
	lost                      []string
	extra                     string // Postgres: issuance and writes while it was down
	issuanceOther             int    // Postgres: token answers neither 200 nor 503 while it was down
	collateral                []string
}

func chaos(ctx context.Context, o *options) error {
	e, err := startEnv(ctx, o, 1)
	if err != nil {
		return err
	}
	defer e.close()
	cfg, err := config.Load(e.st.ConfigPath())
	if err != nil {
		return err
	}
	failOpen := cfg.RateLimit == nil || cfg.RateLimit.FailureMode != config.FailClosed
	worker := e.st.Workers()[0].Name
	none := func(r *result) bool { return r.failed == 0 }
	// Redis holds helix-authz's rate-limit counters: its outage is the
	// rate-limit outage, and the failure mode decides.
	rlGoal, rlMet := "0 failed (ratelimit.failure_mode: open)", none
	if !failOpen {
		rlGoal = "refused while down (ratelimit.failure_mode: closed), 0 failed after"
		rlMet = func(r *result) bool { return r.lastFailure < r.ready+time.Second }
	}
	faults := []fault{
		{worker, "≤ 0.1% failed", func(r *result) bool { return float64(r.failed) <= 0.001*float64(r.sent) }},
		{helixstack.Envoy, "clients reconnect; failures only on the connections it held",
			func(r *result) bool { return r.lastFailure < r.ready+3*time.Second }},
		{helixstack.Authz, "0 failed (one of two replicas)", none},
		{helixstack.Redis, rlGoal, rlMet},
		{helixstack.Postgres, "0 failed (validation unaffected); issuance 200 from memory or 503, nothing else; no half-written rows",
			func(r *result) bool { return r.failed == 0 && r.issuanceOther == 0 }},
		{helixstack.XDS, "0 failed", none},
	}

	l, err := newLoad(loadConfig{Gateway: e.st.GatewayAddr(), CAPool: e.pool, Tokens: e.tokens, Conns: o.chaosConns, RESTEvery: 8})
	if err != nil {
		return err
	}
	defer l.close()
	l.connect(ctx)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); l.run(loadCtx, o.chaosRate) }()
	defer func() { stopLoad(); <-loadDone }()
	logf("load: %.0f requests/s over %d connections (1 in 8 REST), %d OAuth clients", o.chaosRate, o.chaosConns, loadClients)

	var results []*result
	for _, f := range faults {
		if err := sleep(ctx, settle); err != nil {
			return err
		}
		r, err := crash(ctx, e, l, f)
		if err != nil {
			return err
		}
		results = append(results, r)
		logf("%-16s sent %d, failed %d, ready after %v, last failure %s; lost: %s %s", r.proc, r.sent, r.failed,
			r.ready.Round(time.Millisecond), since(r.lastFailure), orNone(r.lost), r.errs)
	}
	stopLoad()
	<-loadDone
	sent, failed := l.totals()
	fmt.Println()
	printResults(os.Stdout, results)
	fmt.Printf("\nwhole run: %d requests, %d failed; the machine: %s\n", sent, failed, machine())
	var lost []string
	for _, r := range results {
		for _, x := range r.lost {
			lost = append(lost, r.proc+": "+x)
		}
	}
	if len(lost) > 0 {
		return fmt.Errorf("%w: %s", errLost, strings.Join(lost, "; "))
	}
	return nil
}

// crash kills f.proc and starts it again, and measures.
func crash(ctx context.Context, e *env, l *load, f fault) (*result, error) {
	r := &result{fault: f, lastFailure: -1}
	l.takeErrors() // count this fault's failure kinds only
	pids := map[string]int{}
	for _, p := range e.st.Procs() {
		pids[p.Name()] = p.PID()
	}
	statsBefore, decisionsBefore := envoyCounters(ctx, e), authzDecisions(ctx, e)
	var pg *pgWatch
	if f.proc == helixstack.Postgres {
		pg = watchPostgres(ctx, e)
	}
	killed := time.Now()
	if _, err := e.st.CrashProcess(ctx, f.proc); err != nil {
		return nil, fmt.Errorf("%s did not come back: %w", f.proc, err)
	}
	r.ready = time.Since(killed)
	if pg != nil {
		time.Sleep(time.Second) // helix-authz reconnects to it
		r.extra, r.lost, r.issuanceOther = pg.stop(ctx, e)
	}
	if err := sleep(ctx, observe); err != nil {
		return nil, err
	}
	end := time.Now()
	r.sent, _ = l.window(killed, end)
	var last time.Time
	r.failed, last, r.failedConns = l.failures(killed.Add(-time.Second), end) // a request sent just before may fail
	if r.failed > 0 {
		r.lastFailure = last.Sub(killed)
	}
	r.errs = l.takeErrors()
	r.lost = append(r.lost, e.verify(ctx)...)
	if f.proc != helixstack.Envoy { // a new Envoy starts its counters at 0
		r.extra = strings.TrimSpace(r.extra + " " + counterDelta("Envoy", statsBefore, envoyCounters(ctx, e)))
	}
	if f.proc != helixstack.Authz { // nor does a new helix-authz
		r.extra = strings.TrimSpace(r.extra + " " + counterDelta("helix-authz", decisionsBefore, authzDecisions(ctx, e)))
	}
	for _, p := range e.st.Procs() {
		if p.Name() != f.proc && pids[p.Name()] != 0 && pids[p.Name()] != p.PID() {
			r.collateral = append(r.collateral, p.Name())
		}
	}
	return r, nil
}

// pgWatch probes what Postgres's death should and should not affect:
// token issuance (served from memory, so 200; 503 is the only other
// acceptable answer) and client creation (each one all or nothing).
type pgWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	issuance map[int]int // HTTP status -> count (0: no answer)
	tried    int         // client creations attempted
	acked    []client    // those answered 201
}

func watchPostgres(ctx context.Context, e *env) *pgWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &pgWatch{cancel: cancel, issuance: map[int]int{}}
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		for ctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			code := e.issue(rctx, e.clients[1])
			rcancel()
			if ctx.Err() == nil {
				w.mu.Lock()
				w.issuance[code]++
				w.mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	go func() {
		defer w.wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("pg-write-%d", i)
			plan, scopes, models := "standard", []string{"models:infer"}, []string{model}
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			v, err := e.admin.CreateClient(rctx, admin.ClientRequest{Name: &name, Plan: &plan, Scopes: &scopes, Models: &models})
			rcancel()
			w.mu.Lock()
			w.tried++
			if err == nil {
				w.acked = append(w.acked, client{id: v.ClientID, secret: v.ClientSecret})
			}
			w.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

// stop ends the probes and checks the writes: every acknowledged client
// is there and whole (its secret gets a token), and every pg-write client
// there has exactly the fields asked for.
// Token requests answered 200 (served from memory) or 503 are fine; any
// other answer is counted in other.
func (w *pgWatch) stop(ctx context.Context, e *env) (summary string, lost []string, other int) {
	w.cancel()
	w.wg.Wait()
	list, err := e.admin.ListClients(ctx)
	if err != nil {
		return "", []string{"list clients: " + err.Error()}, 0
	}
	present := map[string]admin.ClientView{}
	for _, c := range list {
		if strings.HasPrefix(c.Name, "pg-write-") {
			present[c.ClientID] = c
		}
	}
	for id, c := range present {
		if c.Plan != "standard" || strings.Join(c.Scopes, ",") != "models:infer" || strings.Join(c.Models, ",") != model || !c.Enabled {
			lost = append(lost, fmt.Sprintf("client %s (%s) half-written: %+v", id, c.Name, c))
		}
	}
	for _, c := range w.acked {
		if _, ok := present[c.id]; !ok {
			lost = append(lost, "acknowledged client "+c.id+" lost")
			continue
		}
		if code := e.issue(ctx, c); code != http.StatusOK {
			lost = append(lost, fmt.Sprintf("acknowledged client %s: token HTTP %d", c.id, code))
		}
		e.known = append(e.known, c.id)
	}
	var codes []string
	keys := make([]int, 0, len(w.issuance))
	for k := range w.issuance {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		codes = append(codes, fmt.Sprintf("%d×%d", w.issuance[k], k))
		if k != http.StatusOK && k != http.StatusServiceUnavailable {
			other += w.issuance[k]
		}
	}
	summary = fmt.Sprintf("token requests while down: %s; client writes: %d tried, %d acknowledged, %d present, %d half-written",
		strings.Join(codes, " "), w.tried, len(w.acked), len(present), len(lost))
	return summary, lost, other
}

func printResults(out *os.File, results []*result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fault (kill -9, restart)\tsent\tfailed\tfailed %\tconns hit\tready after\tlast failure\tlost\tgoal\tmet")
	for _, r := range results {
		met := "yes"
		if !r.met(r) {
			met = "NO"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%d\t%v\t%s\t%s\t%s\t%s\n", r.proc, r.sent, r.failed,
			100*float64(r.failed)/float64(max(r.sent, 1)), r.failedConns, r.ready.Round(10*time.Millisecond),
			since(r.lastFailure), orNone(r.lost), r.goal, met)
	}
	tw.Flush()
	for _, r := range results {
		if r.errs != "" {
			fmt.Fprintf(out, "%s failures: %s\n", r.proc, r.errs)
		}
		if r.extra != "" {
			fmt.Fprintf(out, "%s: %s\n", r.proc, r.extra)
		}
		if len(r.collateral) > 0 {
			fmt.Fprintf(out, "%s: also restarted: %s\n", r.proc, strings.Join(r.collateral, ", "))
		}
	}
}

func since(d time.Duration) string {
	if d < 0 {
		return "none"
	}
	return d.Round(10 * time.Millisecond).String()
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, "; ")
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// machine says what the figures were measured on.
func machine() string {
	cpus := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cpus = fmt.Sprint(strings.Count(string(b), "processor\t:"))
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s CPUs, load average %s (%s)", cpus, load, filepath.Base(host))
}

// envoyStats are the Envoy counters the report shows when they moved:
// retries and connection failures towards the services, ext_authz errors
// (helix-authz's own rate-limit errors are its result="error" decisions,
// not Envoy's).
var envoyStats = regexp.MustCompile(`^(cluster\.[^.]+\.(upstream_rq_retry|upstream_rq_retry_success|upstream_rq_retry_overflow|upstream_cx_connect_fail|upstream_rq_503|outlier_detection\.ejections_enforced_total)|http\.[^.]+\.ext_authz\.(error|failure_mode_allowed))$`)

func envoyCounters(ctx context.Context, e *env) map[string]int64 {
	body, err := e.st.EnvoyAdmin(ctx, "/stats?usedonly")
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, line := range strings.Split(body, "\n") {
		name, v, ok := strings.Cut(line, ": ")
		if !ok || !envoyStats.MatchString(name) {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[name] = n
		}
	}
	return out
}

// decisionLine is one series of helix_authz_ratelimit_decisions_total.
var decisionLine = regexp.MustCompile(`^helix_authz_ratelimit_decisions_total\{result="(error)"\} ([0-9.e+]+)$`)

// authzDecisions sums helix-authz's rate-limit decisions that the failure
// mode took (result="error": Redis did not answer) over every replica; a
// replica that does not answer counts nothing.
func authzDecisions(ctx context.Context, e *env) map[string]int64 {
	urls := []string{"http://" + helixstack.Addr(e.st.Ports.AuthzMetrics) + "/metrics"}
	for _, r := range e.st.Ports.AuthzReplicas {
		urls = append(urls, "http://"+helixstack.Addr(r.Metrics)+"/metrics")
	}
	out := map[string]int64{}
	for _, u := range urls {
		for line := range strings.Lines(scrape(ctx, u)) {
			if m := decisionLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
				if v, err := strconv.ParseFloat(m[2], 64); err == nil {
					out["ratelimit decisions "+m[1]] += int64(v)
				}
			}
		}
	}
	return out
}

// counterDelta lists the counters that moved, as "who: name +n, ...".
func counterDelta(who string, before, after map[string]int64) string {
	var parts []string
	for name, v := range after {
		if d := v - before[name]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s +%d", name, d))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	sort.Strings(parts)
	return who + ": " + strings.Join(parts, ", ")
}
