package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUsageGoal(t *testing.T) {
	run := func(path string, c int, rate float64) *perfResult {
		return &perfResult{path: path, concurrency: c, rate: rate, elapsed: 10 * time.Second}
	}
	out := &outcome{perf: []*perfResult{run(pathDirect, 64, 10000), run(pathUsage, 64, 9800), run(pathDirect, 1, 4000)}}
	if got := usageGoal(out); !strings.HasPrefix(got, "met: usage ledger costs at most 3%") || !strings.Contains(got, "+2.0%") {
		t.Errorf("usageGoal = %q", got)
	}
	out.perf[1].rate = 9600
	if got := usageGoal(out); !strings.HasPrefix(got, "MISSED") || !strings.Contains(got, "+4.0%") {
		t.Errorf("missed: usageGoal = %q", got)
	}
	if got := usageCostLine(out.perf, 1); got != "" {
		t.Errorf("no usage run at concurrency 1, yet %q", got)
	}
	if got := usageGoal(&outcome{perf: out.perf[2:]}); !strings.HasPrefix(got, "not measured") {
		t.Errorf("without runs: %q", got)
	}
}

func TestUsagePathSendsTheClientHeader(t *testing.T) {
	o := &options{window: time.Second}
	args := perfArgs(o, &target{name: pathUsage, url: "127.0.0.1:1", headers: []string{usageHeader}}, 1, "out.csv", "", "ca.crt")
	if i := slices.Index(args, "-H"); i < 0 || args[i+1] != "x-helix-client:"+usageClient {
		t.Errorf("args %v lack -H %s", args, usageHeader)
	}
	if args := perfArgs(o, &target{name: pathDirect, url: "127.0.0.1:1"}, 1, "out.csv", "", "ca.crt"); slices.Contains(args, "-H") {
		t.Errorf("direct path sends a header: %v", args)
	}
}
