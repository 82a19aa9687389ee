package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/wire"
)

// The usage ledger's cost (issue 15): the measured worker counts usage
// (internal/stack gives every registered worker --usage-address), but only
// of requests that carry x-helix-client, as the gateway's do. The direct
// path sends none, the usage path sends one: the same worker, the same
// run, measured in turn, so the ratio of the two is what counting costs.
const (
	usageClient = "bench-usage-client"
	usageHeader = wire.HeaderClient + ":" + usageClient
	// goalUsageCost: throughput given up to counting, at goalRateConcurrency.
	goalUsageCost = 0.03
)

// usageCost is 1 - (usage path's rate / direct's) at concurrency c; ok is
// false when either run is missing.
func usageCost(rs []*perfResult, c int) (cost float64, direct, counted *perfResult, ok bool) {
	direct, counted = find(rs, pathDirect, c), find(rs, pathUsage, c)
	if direct == nil || counted == nil || direct.rate <= 0 {
		return 0, direct, counted, false
	}
	return 1 - counted.rate/direct.rate, direct, counted, true
}

// usageCostLine is the log line of concurrency c ("" when not measured).
func usageCostLine(rs []*perfResult, c int) string {
	cost, a, u, ok := usageCost(rs, c)
	if !ok {
		return ""
	}
	return fmt.Sprintf("usage ledger: concurrency %d: counted %s infer/s / direct %s infer/s = %s: cost %+.1f%% (goal <= %.0f%%)",
		c, benchdoc.Commas(u.rate), benchdoc.Commas(a.rate), benchdoc.Ratio(u.rate, a.rate), 100*cost, 100*goalUsageCost)
}

// usageBatches reads helix_usage_batches_total from the measured worker's
// /metrics: proof that the counts left the worker (or why not).
func usageBatches(ctx context.Context, s *stack) string {
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", s.st.Ports.Workers[0].Metrics)
	b, err := httpGet(ctx, http.DefaultClient, url)
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	var parts []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "helix_usage_batches_total{result=\""); ok {
			res, n, _ := strings.Cut(rest, "\"} ")
			parts = append(parts, res+" "+n)
		}
	}
	if len(parts) == 0 {
		return "none (the worker does not report usage)"
	}
	return strings.Join(parts, ", ")
}

// usageReport is the report's section on the ledger's cost.
func usageReport(b *strings.Builder, o *options, out *outcome) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("\n### Usage ledger: what counting costs the worker\n\n")
	w("The measured worker counts usage (`--usage-address` to helix-authz's gRPC listener, `--usage-flush-interval=%v`, as `make run`'s workers) of every request that carries `%s`, as the gateway's do. **direct** sends none; **%s** is the same perf_analyzer run with `-H %s`. Same worker, same run, the paths in turn at each concurrency. Batches the worker sent during the runs: %s.\n\n",
		helixstack.UsageFlushInterval, wire.HeaderClient, pathUsage, usageHeader, out.usageBatches)
	w("| concurrency | direct infer/s | usage counted infer/s | ratio | cost | p50 direct (us) | p50 counted (us) | worker CPU per infer: direct (us) | counted (us) |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range o.concurrencies {
		cost, a, u, ok := usageCost(out.perf, c)
		if !ok {
			continue
		}
		w("| %d | %s | %s | %s | %+.1f%% | %s | %s | %s | %s |\n", c, benchdoc.Commas(a.rate), benchdoc.Commas(u.rate), benchdoc.Ratio(u.rate, a.rate), 100*cost,
			benchdoc.Commas(a.p50), benchdoc.Commas(u.p50), perInfer(a.cpu[procWorker], a), perInfer(u.cpu[procWorker], u))
	}
	// One window per path and concurrency on shared cores moves by more than
	// the cost measured: the counting alone is the microbenchmark's figure.
	w("\nOne run per concurrency: on 2 shared cores a window moves by more than the few percent at stake (the sign of the cost flips between concurrencies). What counting adds per request is `BenchmarkAddRequest` (`internal/usage`, `go test -bench AddRequest -benchmem ./internal/usage`): about 50 ns and no allocation, against tens of microseconds of worker CPU per inference in the table.\n")
}

// usageGoal is the goal line, judged at goalRateConcurrency.
func usageGoal(out *outcome) string {
	what := fmt.Sprintf("usage ledger costs at most %.0f%% of the worker's throughput at concurrency %d", 100*goalUsageCost, goalRateConcurrency)
	cost, a, u, ok := usageCost(out.perf, goalRateConcurrency)
	if !ok {
		return "not measured: " + what
	}
	return fmt.Sprintf("%s: %s: %+.1f%% (%s infer/s counted, %s direct)", benchdoc.MetOrMissed(cost <= goalUsageCost), what, 100*cost,
		benchdoc.Commas(u.rate), benchdoc.Commas(a.rate))
}
