package main

// The rolling upgrade drill: under the chaos suite's steady load, every
// process that serves requests is replaced in turn the way an operator
// upgrades it (the workers drained then started again, each helix-authz
// replica alone, helix-xds, Redis (helix-authz's rate-limit counters),
// Envoy by hot restart), each waited for until it serves again before the
// next goes. The goal is 0 failed requests; per step it prints the
// requests sent meanwhile, the failures and the latencies.
//
// The previous release takes part: helix-authz-2 first runs the binary of
// the last release tag (built from `git archive` of the tag) against the
// schema HEAD's helix-authz migrated, serving tokens, Checks and API keys
// beside the new replica, and is then upgraded like the others: the
// mixed-version state of every rolling upgrade, and the proof that HEAD's
// migrations leave the previous release working (docs/operations/upgrades.md).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	helixstack "github.com/helixflow/helixflow/internal/stack"
)

// upgradeObserve is how long the load is watched after a step, before
// the next one: a request sent during the step has answered by then.
const upgradeObserve = 3 * time.Second

// step is one replacement in the rolling upgrade.
type step struct {
	proc, how string
	do        func(ctx context.Context) error
	// check, if set, proves more once do returned: lines starting "ok: "
	// passed, the others are problems.
	check func(ctx context.Context) []string
}

// stepResult is one step's figures.
type stepResult struct {
	step
	took         time.Duration // the replacement, until it served again
	sent, failed int
	p50, p99     time.Duration
	max          time.Duration
	errs         string
	notes        []string // what the step checked besides the load
	// marks are the step's moments (stopped, ready, serving) and its
	// slowest requests' sends, as offsets from its start.
	marks string
}

// stepClock notes the moments of the step under way (env.mark).
type stepClock struct {
	begin time.Time
	marks []string
}

func upgrade(ctx context.Context, o *options) error {
	root, err := absRoot(o)
	if err != nil {
		return err
	}
	if o.previousRelease == "" {
		if o.previousRelease, err = lastRelease(root); err != nil {
			return err
		}
	}
	logf("building the previous release %s's helix-authz", o.previousRelease)
	prevBin, err := buildRelease(ctx, root, o.previousRelease)
	if err != nil {
		return err
	}
	o.envoyHotRestart = true
	e, err := startEnv(ctx, o, 1)
	if err != nil {
		return err
	}
	defer e.close()

	l, err := newLoad(loadConfig{Gateway: e.st.GatewayAddr(), CAPool: e.pool, Tokens: e.tokens, Conns: o.upgradeConns, RESTEvery: 8})
	if err != nil {
		return err
	}
	defer l.close()
	l.keepSamples = true
	l.connect(ctx)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); l.run(loadCtx, o.upgradeRate) }()
	defer func() { stopLoad(); <-loadDone }()
	logf("load: %.0f requests/s over %d connections (1 in 8 REST), %d OAuth clients", o.upgradeRate, o.upgradeConns, loadClients)

	var steps []step
	for i, w := range e.st.Workers() {
		steps = append(steps, step{w.Name, "SIGTERM: deregister, drain, exit; start; registered and healthy in Envoy",
			func(ctx context.Context) error { return e.replace(ctx, w.Name, e.workerServing(i)) }, nil})
	}
	replica := helixstack.AuthzReplica
	steps = append(steps,
		step{replica, "to " + o.previousRelease + " (mixed versions on HEAD's schema)", func(ctx context.Context) error {
			return e.runRelease(ctx, replica, prevBin)
		}, func(ctx context.Context) []string { return e.releaseChecks(ctx, replica, o.previousRelease) }},
		step{helixstack.Authz, "SIGTERM, start (HEAD)", func(ctx context.Context) error {
			return e.replace(ctx, helixstack.Authz, e.authzServing(e.st.Ports.AuthzMetrics))
		}, nil},
		step{replica, o.previousRelease + " to HEAD", func(ctx context.Context) error {
			return e.runRelease(ctx, replica, "")
		}, func(ctx context.Context) []string { return e.releaseChecks(ctx, replica, "HEAD") }},
		step{helixstack.XDS, "SIGTERM, start; workers registered again", func(ctx context.Context) error {
			return e.replace(ctx, helixstack.XDS, func(ctx context.Context) error { return e.st.WaitServing(ctx, e.tokens.get(0)) })
		}, nil},
		step{helixstack.Redis, "rate-limit counters (helix-authz's ratelimit): SIGTERM, start", func(ctx context.Context) error {
			return e.replace(ctx, helixstack.Redis, nil)
		}, nil},
	)
	if o.envoyCold {
		steps = append(steps, step{helixstack.Envoy, "cold restart (-envoy-cold): SIGTERM, start", func(ctx context.Context) error {
			return e.replace(ctx, helixstack.Envoy, func(ctx context.Context) error { return e.st.WaitServing(ctx, e.tokens.get(0)) })
		}, nil})
	} else {
		// Twice: an upgraded Envoy is upgraded again the same way.
		for epoch := 1; epoch <= 2; epoch++ {
			steps = append(steps, step{helixstack.Envoy, fmt.Sprintf("hot restart to epoch %d: it takes the sockets, the old one drains %v", epoch, helixstack.EnvoyDrainTime),
				func(ctx context.Context) error { return e.st.RestartEnvoy(ctx) }, nil})
		}
	}

	var results []*stepResult
	// Each step's figures cover the requests sent from the end of the
	// last one's: the quiet time before it included, so that the steps
	// add up to the whole run.
	from := time.Now()
	for _, s := range steps {
		if err := sleep(ctx, settle); err != nil {
			return err
		}
		l.takeErrors()
		r := &stepResult{step: s}
		begin := time.Now()
		e.clock = &stepClock{begin: begin}
		before := upstreamCounters(ctx, e)
		if err := s.do(ctx); err != nil {
			return fmt.Errorf("%s (%s): %w", s.proc, s.how, err)
		}
		r.took = time.Since(begin)
		if s.check != nil {
			r.notes = s.check(ctx)
		}
		if err := sleep(ctx, upgradeObserve); err != nil {
			return err
		}
		r.notes = append(r.notes, e.verify(ctx)...)
		if s.proc != helixstack.Envoy { // a new epoch's counters start from the old one's, not at 0
			if d := counterDelta("Envoy", before, upstreamCounters(ctx, e)); d != "" {
				r.notes = append(r.notes, "ok: "+d)
			}
		}
		end := time.Now()
		r.sent, r.failed, r.p50, r.p99, r.max = l.stats(from, end)
		r.marks = strings.Join(append(e.clock.marks, l.slowest(from, end, begin, 3)...), ", ")
		from = end
		r.errs = l.takeErrors()
		results = append(results, r)
		logf("%-16s %-40.40s sent %d, failed %d, p99 %v, took %v %s", r.proc, r.how, r.sent, r.failed,
			r.p99.Round(time.Millisecond), r.took.Round(10*time.Millisecond), r.errs)
	}
	stopLoad()
	<-loadDone
	sent, failed := l.totals()
	fmt.Println()
	printUpgrade(os.Stdout, results)
	fmt.Printf("\nwhole run: %d requests, %d failed; the machine: %s\n", sent, failed, machine())
	var problems []string
	for _, r := range results {
		if r.failed > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d failed", r.proc, r.failed))
		}
		for _, n := range r.notes {
			if strings.HasPrefix(n, "ok: ") {
				continue
			}
			problems = append(problems, r.proc+": "+n)
		}
	}
	if failed > 0 && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("%d requests failed between the steps", failed))
	}
	if len(problems) > 0 {
		return fmt.Errorf("the rolling upgrade was not clean: %s", strings.Join(problems, "; "))
	}
	return nil
}

// replace stops name the way an operator's upgrade does (its stop
// signal: a graceful shutdown), starts it again and waits until it is
// ready (its own check) and, when serving is given, until the rest of the
// stack uses it again.
func (e *env) replace(ctx context.Context, name string, serving func(context.Context) error) error {
	if err := e.st.StopProcess(name); err != nil {
		return err
	}
	e.mark("stopped")
	if err := e.st.StartProcess(ctx, name); err != nil {
		return err
	}
	e.mark("ready")
	if serving == nil {
		return nil
	}
	err := waitFor(ctx, 60*time.Second, serving)
	e.mark("serving")
	return err
}

// mark notes a moment of the step under way.
func (e *env) mark(what string) {
	if c := e.clock; c != nil {
		c.marks = append(c.marks, fmt.Sprintf("%s +%v", what, time.Since(c.begin).Round(10*time.Millisecond)))
	}
}

// runRelease replaces helix-authz replica name with the same command line
// on another binary (bin; "" is HEAD's bin/helix-authz) and waits until
// Envoy sends it Checks again.
func (e *env) runRelease(ctx context.Context, name, bin string) error {
	spec, ok := e.st.Spec(name)
	if !ok {
		return fmt.Errorf("no process %s", name)
	}
	if bin == "" {
		bin = filepath.Join(e.st.Root(), "bin", "helix-authz")
	}
	spec.Path = bin
	if err := e.st.StopProcess(name); err != nil {
		return err
	}
	e.mark("stopped")
	if err := e.st.Run(ctx, spec); err != nil {
		return err
	}
	e.mark("ready")
	err := waitFor(ctx, 60*time.Second, e.authzServing(e.replicaPorts(name).Metrics))
	e.mark("serving")
	return err
}

// replicaPorts are helix-authz-n's ports.
func (e *env) replicaPorts(name string) helixstack.AuthzPorts {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, helixstack.Authz+"-"))
	if n < 2 || n-2 >= len(e.st.Ports.AuthzReplicas) {
		p := e.st.Ports
		return helixstack.AuthzPorts{Authz: p.Authz, Admin: p.Admin, ExtAuthz: p.ExtAuthz, Metrics: p.AuthzMetrics}
	}
	return e.st.Ports.AuthzReplicas[n-2]
}

// releaseChecks proves that the replica, whichever binary it runs now,
// serves on the shared schema: it issues a token that passes Envoy's
// Check, creates an API key that works, answers Checks of the load, and
// keeps the revoked token refused (verify). Lines starting "ok: " are
// passed checks; the others are problems.
func (e *env) releaseChecks(ctx context.Context, name, version string) []string {
	p := e.replicaPorts(name)
	var out []string
	c := e.clients[2]
	tok, code, err := e.tokenAt(ctx, "https://"+helixstack.Addr(p.Authz)+"/oauth2/token", c)
	if err != nil || code != http.StatusOK {
		return append(out, fmt.Sprintf("%s (%s): token from its own port: HTTP %d %v", name, version, code, errOrNil(err)))
	}
	if code, err := e.infer(ctx, "Authorization", "Bearer "+tok); err != nil || code != http.StatusOK {
		out = append(out, fmt.Sprintf("%s (%s): its token through Envoy: HTTP %d %v, want 200", name, version, code, errOrNil(err)))
	}
	ac, err := admin.NewClient("http://"+helixstack.Addr(p.Admin), e.st.AdminToken, nil)
	if err != nil {
		return append(out, err.Error())
	}
	key, err := ac.CreateAPIKey(ctx, admin.APIKeyRequest{ClientID: e.keyOwner.id, Name: "upgrade-" + name, Scopes: []string{"models:infer"}})
	if err != nil {
		return append(out, fmt.Sprintf("%s (%s): create an API key: %v", name, version, err))
	}
	if code, err := e.infer(ctx, "x-api-key", key.Key); err != nil || code != http.StatusOK {
		out = append(out, fmt.Sprintf("%s (%s): its API key through Envoy: HTTP %d %v, want 200", name, version, code, errOrNil(err)))
	}
	metrics := "http://" + helixstack.Addr(p.Metrics) + "/metrics"
	before := sumMetric(scrape(ctx, metrics), "helix_authz_checks_total")
	_ = sleep(ctx, 2*time.Second)
	after := sumMetric(scrape(ctx, metrics), "helix_authz_checks_total")
	if after <= before {
		out = append(out, fmt.Sprintf("%s (%s): answered no Check of the load in 2s", name, version))
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("ok: %s (%s) on HEAD's schema: token issued and accepted by Envoy's Check, API key created and accepted, %.0f Checks of the load answered in 2s",
			name, version, after-before))
	}
	return out
}

// tokenAt asks tokenURL for a client-credentials token.
func (e *env) tokenAt(ctx context.Context, tokenURL string, c client) (string, int, error) {
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	resp, err := e.https.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	m := regexp.MustCompile(`"access_token"\s*:\s*"([^"]+)"`).FindSubmatch(body)
	if m == nil {
		return "", resp.StatusCode, fmt.Errorf("no access_token in %.200s", body)
	}
	return string(m[1]), resp.StatusCode, nil
}

// workerServing: Envoy routes to every worker again, and the i-th is
// among the healthy hosts.
func (e *env) workerServing(i int) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := e.st.WaitServing(ctx, e.tokens.get(0)); err != nil {
			return err
		}
		return e.envoyHealthy(ctx, e.st.Ports.Workers[i].GRPC)
	}
}

// authzServing: the helix-authz whose metrics listen on metricsPort
// answers Envoy's Checks again (Envoy's authz cluster has no health
// check: it sends a replica Checks as soon as it accepts connections).
func (e *env) authzServing(metricsPort int) func(context.Context) error {
	metrics := "http://" + helixstack.Addr(metricsPort) + "/metrics"
	var first float64 = -1
	return func(ctx context.Context) error {
		n := sumMetric(scrape(ctx, metrics), "helix_authz_checks_total")
		if first < 0 {
			first = n
		}
		if n <= first {
			return fmt.Errorf("%s: no Check answered yet", metrics)
		}
		return nil
	}
}

// envoyHealthy: some Envoy cluster has 127.0.0.1:port as a healthy host.
func (e *env) envoyHealthy(ctx context.Context, port int) error {
	body, err := e.st.EnvoyAdmin(ctx, "/clusters")
	if err != nil {
		return err
	}
	if !strings.Contains(body, "::"+helixstack.Addr(port)+"::health_flags::healthy\n") {
		return fmt.Errorf("127.0.0.1:%d is not a healthy host in Envoy", port)
	}
	return nil
}

// upstreamStats are the Envoy counters that tell how a replaced upstream
// was left and found again: retries, refused or timed-out connections,
// connections closed under requests.
var upstreamStats = regexp.MustCompile(`^cluster\.[^.]+\.(upstream_rq_retry|upstream_rq_retry_success|upstream_cx_connect_fail|upstream_cx_connect_timeout|upstream_rq_timeout|upstream_rq_per_try_timeout|upstream_cx_destroy_remote_with_active_rq|upstream_rq_pending_failure_eject)$`)

func upstreamCounters(ctx context.Context, e *env) map[string]int64 {
	body, err := e.st.EnvoyAdmin(ctx, "/stats?usedonly")
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, line := range strings.Split(body, "\n") {
		name, v, ok := strings.Cut(line, ": ")
		if !ok || !upstreamStats.MatchString(name) {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[name] = n
		}
	}
	return out
}

// waitFor polls cond every 200 ms until it holds or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func(context.Context) error) error {
	deadline := time.Now().Add(d)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := cond(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %w", d, err)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// sumMetric adds every series of a counter in a Prometheus text body.
func sumMetric(body, name string) float64 {
	var sum float64
	for line := range strings.Lines(body) {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// stats are the requests sent in [from, to): how many, how many failed,
// and the latency percentiles of all of them (a failure's latency is the
// time until it failed).
func (l *load) stats(from, to time.Time) (sent, failed int, p50, p99, maxd time.Duration) {
	l.mu.Lock()
	var took []time.Duration
	for _, s := range l.samples {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		took = append(took, s.took)
		if s.failed {
			failed++
		}
	}
	l.mu.Unlock()
	if len(took) == 0 {
		return 0, 0, 0, 0, 0
	}
	slices.Sort(took)
	q := func(p float64) time.Duration { return took[min(len(took)-1, int(p*float64(len(took))))] }
	return len(took), failed, q(0.50), q(0.99), took[len(took)-1]
}

// slowest are the n slowest requests sent in [from, to), as "slow
// +send offset from begin took".
func (l *load) slowest(from, to, begin time.Time, n int) []string {
	l.mu.Lock()
	var in []reqSample
	for _, s := range l.samples {
		if !s.at.Before(from) && s.at.Before(to) {
			in = append(in, s)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(in, func(a, b reqSample) int { return int(b.took - a.took) })
	var out []string
	for _, s := range in[:min(n, len(in))] {
		out = append(out, fmt.Sprintf("slow +%v took %v", s.at.Sub(begin).Round(10*time.Millisecond), s.took.Round(time.Millisecond)))
	}
	return out
}

func printUpgrade(out io.Writer, results []*stepResult) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "component\thow\ttook\tsent\tfailed\tp50\tp99\tmax")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%v\t%v\t%v\n", r.proc, r.how, r.took.Round(10*time.Millisecond), r.sent, r.failed,
			r.p50.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond), r.max.Round(100*time.Microsecond))
	}
	tw.Flush()
	for _, r := range results {
		if r.errs != "" {
			fmt.Fprintf(out, "%s failures: %s\n", r.proc, r.errs)
		}
		for _, n := range r.notes {
			fmt.Fprintf(out, "%s: %s\n", r.proc, n)
		}
	}
	for _, r := range results {
		fmt.Fprintf(out, "%s (%s): %s\n", r.proc, r.how, r.marks)
	}
}

// lastRelease is the release migrations/released.sum names: the one whose
// migrations are frozen, and whose binaries must run on HEAD's schema.
func lastRelease(root string) (string, error) {
	path := filepath.Join(root, "migrations", "released.sum")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("the last release: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "release" {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s names no release (a line \"release vX.Y.Z\")", path)
}

// buildRelease builds helix-authz as the release tag had it, from `git
// archive` of the tag (the working tree is left alone), into the user's
// cache keyed by the tag's commit, and returns the binary. A clone
// without the tag fails, saying how to get it.
func buildRelease(ctx context.Context, root, tag string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--verify", "--quiet", tag+"^{commit}").Output()
	commit := strings.TrimSpace(string(out))
	if err != nil || commit == "" {
		return "", fmt.Errorf("the previous release's tag %s is not in this clone (a shallow CI clone has no tags: git fetch --tags origin, or pass -previous-release): %w",
			tag, errOrErr(err))
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "helixflow-release", commit)
	bin := filepath.Join(dir, "helix-authz")
	if fi, err := os.Stat(bin); err == nil && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	src, err := os.MkdirTemp("", "helix-release-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	archive := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", root, commit, src)
	if b, err := archive.CombinedOutput(); err != nil {
		return "", fmt.Errorf("git archive %s: %w\n%s", tag, err, b)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	build := exec.CommandContext(ctx, "go", "build", "-tags=vtprotobuf", "-trimpath",
		"-ldflags", "-X github.com/helixflow/helixflow/internal/version.Version="+tag, "-o", bin+".tmp", "./cmd/helix-authz")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if b, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s's helix-authz: %w\n%s", tag, err, b)
	}
	return bin, os.Rename(bin+".tmp", bin)
}

func errOrErr(err error) error {
	if err == nil {
		return errors.New("no such commit")
	}
	return err
}
