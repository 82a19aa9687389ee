// Command gates is make gates: the regression gates make test runs
// (docs/benchmarks.md, "Regression gates").
//
//	go run ./bench/gates            the API check, then the benchmarks (make gates)
//	go run ./bench/gates api        proto/ (buf) and api/*.yaml (oasdiff) against api/compat
//	go run ./bench/gates bench      the benchmarks of bench/gates/benchmarks.txt against bench/gates/baseline.txt
//	go run ./bench/gates baseline   rewrite bench/gates/baseline.txt (make gates-baseline)
//	go run ./bench/gates noise [-runs 10] [-write docs/benchmarks.md]
//	                                run the set N times, compare every run with every other, print the spread
//	go run ./bench/gates api-baseline -tag v0.29.0
//	                                rewrite api/compat from a release tag (make gates-api-baseline TAG=...)
//
// Run from the repository root. The tools are the ones scripts/deps.sh
// builds into .tools/gates/ (bash scripts/deps.sh gates).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/bench/internal/gates"
	"github.com/helixflow/helixflow/bench/internal/sysinfo"
)

const (
	configFile   = "bench/gates/benchmarks.txt"
	baselineFile = "bench/gates/baseline.txt"
	compatDir    = "api/compat"
	toolsDir     = ".tools/gates"
	docBegin     = "<!-- gates-noise:begin -->"
	docEnd       = "<!-- gates-noise:end -->"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gates:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, w io.Writer) error {
	cmd := "all"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("gates "+cmd, flag.ContinueOnError)
	goCmd := fs.String("go", "go", "the go command")
	tags := fs.String("tags", "vtprotobuf", "build tags of the benchmarks' test binaries")
	nice := fs.Int("nice", -10, "nice value of the benchmarks (lowering it needs root or CAP_SYS_NICE; without, they run at the default)")
	keep := fs.String("keep", "", "also write this run's samples to this file")
	runs := fs.Int("runs", 10, "noise: how many runs of the set")
	write := fs.String("write", "", "noise: put the table into this Markdown file between "+docBegin+" and "+docEnd)
	tag := fs.String("tag", "", "api-baseline: the release tag to copy proto/ and api/*.yaml from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := benchdoc.RepoRoot(configFile)
	if err != nil {
		return err
	}
	tool := func(name string) string { return filepath.Join(root, toolsDir, name) }
	for _, t := range []string{"benchstat", "buf", "oasdiff"} {
		if _, err := os.Stat(tool(t)); err != nil {
			return fmt.Errorf("%s not found: bash scripts/deps.sh gates builds it", tool(t))
		}
	}
	r := &gates.Runner{Root: root, Go: *goCmd, Tags: *tags, Log: w}
	switch cmd {
	case "all":
		if err := apiGate(ctx, w, tool, root); err != nil {
			return err
		}
		return benchGate(ctx, w, r, tool, root, *nice, *keep)
	case "api":
		return apiGate(ctx, w, tool, root)
	case "bench":
		return benchGate(ctx, w, r, tool, root, *nice, *keep)
	case "baseline":
		data, err := measure(ctx, w, r, root, *nice, 1)
		if err != nil {
			return err
		}
		if err := gates.WriteFile(filepath.Join(root, baselineFile), data[0]); err != nil {
			return err
		}
		fmt.Fprintf(w, "gates: wrote %s (commit it)\n", baselineFile)
		return nil
	case "noise":
		return noise(ctx, w, r, tool, root, *nice, *runs, *write)
	case "api-baseline":
		if *tag == "" {
			return errors.New("api-baseline needs -tag (the last release, such as v0.29.0)")
		}
		if err := gates.WriteCompat(ctx, root, filepath.Join(root, compatDir), *tag); err != nil {
			return err
		}
		fmt.Fprintf(w, "gates: wrote %s from %s (commit it)\n", compatDir, *tag)
		return nil
	}
	return fmt.Errorf("unknown command %q (want api, bench, baseline, noise or api-baseline)", cmd)
}

func apiGate(ctx context.Context, w io.Writer, tool func(string) string, root string) error {
	compat := filepath.Join(root, compatDir)
	release, err := os.ReadFile(filepath.Join(compat, gates.CompatRelease))
	if err != nil {
		return fmt.Errorf("the API baseline: %w (make gates-api-baseline TAG=<last release>)", err)
	}
	accepted, err := gates.ReadAccepted(filepath.Join(compat, gates.AcceptedBreaks))
	if err != nil {
		return err
	}
	breaks, err := gates.APIBreaks(ctx, tool("buf"), tool("oasdiff"), root, compat, w)
	if err != nil {
		return err
	}
	undeclared, stale := gates.Settle(breaks, accepted)
	fmt.Fprintf(w, "gates: API against %s: %d breaking changes, %d accepted in %s/%s\n",
		strings.Fields(string(release))[0], len(breaks), len(breaks)-len(undeclared), compatDir, gates.AcceptedBreaks)
	for _, b := range undeclared {
		fmt.Fprintf(w, "FAIL %s\n", b)
	}
	for _, a := range stale {
		fmt.Fprintf(w, "FAIL accepted break matches nothing (remove it): %s %s [%s] %q\n", a.Tool, a.File, a.ID, a.Text)
	}
	if len(undeclared) > 0 || len(stale) > 0 {
		return fmt.Errorf("API gate: %d undeclared breaking changes, %d stale entries: keep the API compatible, or declare the break with its reason in %s/%s",
			len(undeclared), len(stale), compatDir, gates.AcceptedBreaks)
	}
	return nil
}

func loadConfig(root string) (*gates.Config, error) {
	f, err := os.Open(filepath.Join(root, configFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := gates.ParseConfig(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", configFile, err)
	}
	return c, nil
}

// measure builds the set's test binaries and runs them runs times (the
// same binaries each time: noise measures the machine, not the edits that
// land in the working tree meanwhile).
func measure(ctx context.Context, w io.Writer, r *gates.Runner, root string, nice, runs int) ([][]byte, error) {
	c, err := loadConfig(root)
	if err != nil {
		return nil, err
	}
	if nice != 0 {
		if err := gates.RaisePriority(nice); err != nil {
			fmt.Fprintln(w, "gates:", err)
		}
	}
	dir, err := os.MkdirTemp("", "gates-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	bins, err := r.Build(ctx, c, dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "gates: built %d test binaries in %.1fs\n", len(bins), time.Since(start).Seconds())
	var out [][]byte
	for i := range runs {
		l := sysinfo.LoadAvg()
		fmt.Fprintf(w, "gates: run %d/%d, load average %.2f\n", i+1, runs, l[0])
		data, err := r.Run(ctx, c, bins)
		if err != nil {
			return nil, err
		}
		out = append(out, data)
	}
	return out, nil
}

func benchGate(ctx context.Context, w io.Writer, r *gates.Runner, tool func(string) string, root string, nice int, keep string) error {
	c, err := loadConfig(root)
	if err != nil {
		return err
	}
	base := filepath.Join(root, baselineFile)
	baseData, err := os.ReadFile(base)
	if err != nil {
		return fmt.Errorf("the benchmark baseline: %w (make gates-baseline writes it)", err)
	}
	all, err := measure(ctx, w, r, root, nice, 1)
	if err != nil {
		return err
	}
	data := all[0]
	cur := keep
	if cur == "" {
		f, err := os.CreateTemp("", "gates-current-*.txt")
		if err != nil {
			return err
		}
		f.Close()
		cur = f.Name()
		defer os.Remove(cur)
	}
	if err := os.WriteFile(cur, data, 0o644); err != nil {
		return err
	}
	csv, err := gates.Benchstat(ctx, tool("benchstat"), base, cur, "csv")
	if err != nil {
		return err
	}
	rows, err := gates.ParseBenchstatCSV(csv)
	if err != nil {
		return err
	}
	timeOK := gates.CPU(baseData) == gates.CPU(data)
	if !timeOK {
		fmt.Fprintf(w, "gates: the baseline was measured on %q, this is %q: times are shown, not judged (allocations are); make gates-baseline on this machine to judge them\n",
			gates.CPU(baseData), gates.CPU(data))
	}
	fails := gates.Report(w, gates.Judge(c, rows, timeOK))
	if fails > 0 {
		// benchstat's own tables, every unit: the context of the failures.
		text, err := gates.Benchstat(ctx, tool("benchstat"), base, cur, "text")
		if err != nil {
			return err
		}
		w.Write(text)
		return fmt.Errorf("benchmark gate: %d regressions against %s (a slowdown on purpose: make gates-baseline and commit it with the reason)", fails, baselineFile)
	}
	fmt.Fprintf(w, "gates: benchmarks within their bars (CPU time +%.0f%%, wall time +%.0f%%, allocations +%.0f%%, when significant at p < %.2f)\n",
		100*c.CPUThreshold, 100*c.WallThreshold, 100*c.AllocsThreshold, gates.Alpha)
	return nil
}

func noise(ctx context.Context, w io.Writer, r *gates.Runner, tool func(string) string, root string, nice, runs int, write string) error {
	dir, err := os.MkdirTemp("", "gates-noise-")
	if err != nil {
		return err
	}
	start := time.Now()
	loadStart := sysinfo.LoadAvg()
	all, err := measure(ctx, w, r, root, nice, runs)
	if err != nil {
		return err
	}
	loadEnd := sysinfo.LoadAvg()
	var files []string
	for i, data := range all {
		f := filepath.Join(dir, fmt.Sprintf("run-%02d.txt", i+1))
		if err := os.WriteFile(f, data, 0o644); err != nil {
			return err
		}
		files = append(files, f)
	}
	fmt.Fprintf(w, "gates: the runs' samples are in %s\n", dir)
	elapsed := time.Since(start)
	rows, err := gates.Noise(ctx, tool("benchstat"), files)
	if err != nil {
		return err
	}
	c, err := loadConfig(root)
	if err != nil {
		return err
	}
	m := sysinfo.ReadMachine()
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", docBegin)
	fmt.Fprintf(&b, "Measured by `go run ./bench/gates noise -runs %d` on %s (%d cores, %s), commit %s, %s: one build, then %d runs of the set in %s (%.0f s a run), nice %d, load average %.1f / %.1f / %.1f (1, 5, 15 min) at the start, %.1f / %.1f / %.1f at the end.\n\n",
		runs, m.CPU, m.Cores, m.OS, benchdoc.GitCommit("workers", "extauthz", "xds", "internal"), time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		runs, elapsed.Round(time.Second), elapsed.Seconds()/float64(runs), nice,
		loadStart[0], loadStart[1], loadStart[2], loadEnd[0], loadEnd[1], loadEnd[2])
	gates.WriteNoiseTable(&b, rows)
	fmt.Fprintf(&b, "\nWorst significant growth between two runs of unchanged code:")
	for _, u := range []struct{ unit, name string }{{gates.UnitCPU, "CPU time in reference units"}, {gates.UnitProcCPU, "CPU time"}, {gates.UnitWall, "wall time"}, {gates.UnitAllocs, "allocations"}} {
		worst, name := gates.WorstSig(rows, u.unit)
		fmt.Fprintf(&b, " %s %+.2f%% (%s);", u.name, 100*worst, orNone(name))
	}
	fmt.Fprintf(&b, " the bars in bench/gates/benchmarks.txt: CPU time +%.0f%%, wall time +%.0f%%, allocations +%.0f%%.\n",
		100*c.CPUThreshold, 100*c.WallThreshold, 100*c.AllocsThreshold)
	fmt.Fprintf(&b, "%s\n", docEnd)
	fmt.Fprint(w, b.String())
	if write != "" {
		if err := benchdoc.WriteSection(write, docBegin, docEnd, b.String()); err != nil {
			return err
		}
		fmt.Fprintf(w, "gates: wrote the table into %s\n", write)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
