package gates

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/internal/testdeps"
)

// tool is the binary scripts/deps.sh builds into .tools/gates/.
func tool(t *testing.T, name string) string {
	t.Helper()
	root, err := benchdoc.RepoRoot("bench/gates/benchmarks.txt")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, ".tools", "gates", name)
	if _, err := os.Stat(p); err != nil {
		testdeps.Missing(t, "%s not found: bash scripts/deps.sh gates builds it", p)
	}
	return p
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := benchdoc.RepoRoot("bench/gates/benchmarks.txt")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

const goodConfig = `# comment
count 6
cpu-threshold 30%
wall-threshold 200%
allocs-threshold 2.5%
cpu-threshold-for workers/x:Slow/sub 60%

bench ./workers/x ^BenchmarkSlow$/^sub$ 100x
bench ./workers/x ^BenchmarkFast$ 1000x
bench ./xds/y . 2x
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(strings.NewReader(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Count != 6 || c.CPUThreshold != 0.3 || c.WallThreshold != 2 || c.AllocsThreshold != 0.025 || len(c.Benches) != 3 {
		t.Fatalf("parsed %+v", c)
	}
	for _, tt := range []struct {
		unit, name string
		want       float64
		judged     bool
	}{
		{UnitCPU, "workers/x:Slow/sub", 0.6, true},
		{UnitCPU, "workers/x:Fast", 0.3, true},
		{UnitWall, "workers/x:Slow/sub", 2, true},
		{UnitAllocs, "workers/x:Fast", 0.025, true},
		{"B/op", "workers/x:Fast", 0, false},
	} {
		if got, judged := c.threshold(tt.unit, tt.name); got != tt.want || judged != tt.judged {
			t.Errorf("threshold(%s, %s) = %v, %v; want %v, %v", tt.unit, tt.name, got, judged, tt.want, tt.judged)
		}
	}
	if got := fmt.Sprint(c.Pkgs()); got != "[./workers/x ./xds/y]" {
		t.Errorf("Pkgs: %s", got)
	}
	if b := c.Benches[0]; b.Pattern != "^BenchmarkSlow$/^sub$" || b.Benchtime() != "100x" || b.Line != 8 {
		t.Errorf("first bench: %+v", b)
	}

	for _, tt := range []struct{ name, text, want string }{
		{"few samples", "count 3\n", "at least 5"},
		{"percent sign", "count 6\ncpu-threshold 30\n", "percentage"},
		{"negative", "count 6\nwall-threshold -3%\n", "positive"},
		{"duration", "bench ./x . 1s\n", "iteration count"},
		{"one iteration", "bench ./x . 1x\n", "iteration count"},
		{"unknown", "count 6\nfoo bar\n", `unknown line "foo bar"`},
		{"absolute package", "bench workers/x . 2x\n", "relative to the module root"},
		{"bad pattern", "bench ./x ^(a 2x\n", "pattern"},
		{"no count", "cpu-threshold 30%\nwall-threshold 30%\nallocs-threshold 2%\nbench ./x . 2x\n", "no count"},
		{"no thresholds", "count 6\ncpu-threshold 30%\nbench ./x . 2x\n", "all required"},
		{"no benches", "count 6\ncpu-threshold 30%\nwall-threshold 30%\nallocs-threshold 2%\n", "no bench lines"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// The committed config parses and names benchmarks that exist (the gate
// itself fails on a pattern that selects nothing).
func TestCommittedConfig(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot(t), "bench/gates/benchmarks.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := ParseConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Pkgs() {
		if _, err := os.Stat(filepath.Join(repoRoot(t), p, "bench_test.go")); err != nil {
			if m, _ := filepath.Glob(filepath.Join(repoRoot(t), p, "*_test.go")); len(m) == 0 {
				t.Errorf("%s has no tests", p)
			}
		}
	}
}

// bench is a synthetic benchmark: its CPU and wall time per op (ns) and
// allocations per op.
type bench struct {
	name      string
	cpu, wall float64
	allocs    int
}

// samples writes a benchmark output file as Runner.Run writes it: for
// each benchmark 8 samples around the given values (±1%, deterministic).
func samples(t *testing.T, cpu string, benches ...bench) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "goos: linux\ngoarch: amd64\npkg: %sworkers/x\ncpu: %s\n", ModulePath, cpu)
	for _, bench := range benches {
		for _, j := range []float64{-2, -1, 0, 1, 2, 1, 0, -1} { // ±1%, median 0
			jitter := 1 + 0.005*j
			fmt.Fprintf(&b, "Benchmark%s-2 \t 1000\t %.1f ns/op\t 64 B/op\t %d allocs/op\t%.1f proc-cpu-ns/op\t%.6g cpu-refs/op\n",
				bench.name, bench.wall*jitter, bench.allocs, bench.cpu*jitter, bench.cpu*jitter/1000)
		}
	}
	p := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Growth beyond a bar, an allocation more, a benchmark gone or new: each
// fails, through the real benchstat; noise within the bars and a change on
// another CPU do not.
func TestBenchGate(t *testing.T) {
	benchstat := tool(t, "benchstat")
	c, err := ParseConfig(strings.NewReader(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	fast, slow := bench{"Fast", 100, 100, 2}, bench{"Slow/sub", 1000, 1000, 100}
	with := func(b bench, f func(*bench)) bench { f(&b); return b }
	base := samples(t, "CPU A", fast, slow)
	judge := func(cur string, timeOK bool) map[string]Verdict {
		t.Helper()
		out, err := Benchstat(context.Background(), benchstat, base, cur, "csv")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := ParseBenchstatCSV(out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		m := map[string]Verdict{}
		for _, v := range Judge(c, rows, timeOK) {
			m[v.Unit+" "+v.Name] = v
		}
		return m
	}
	all := func(name string) []string {
		return []string{UnitCPU + " " + name, UnitWall + " " + name, UnitAllocs + " " + name}
	}
	for _, tt := range []struct {
		name     string
		cur      []bench
		cpu      string
		wantFail []string
	}{
		{"unchanged", []bench{fast, slow}, "CPU A", nil},
		{"CPU within the bar", []bench{with(fast, func(b *bench) { b.cpu = 125 }), with(slow, func(b *bench) { b.cpu = 900 })}, "CPU A", nil},
		{"CPU beyond the bar", []bench{with(fast, func(b *bench) { b.cpu = 140 }), slow}, "CPU A", []string{UnitCPU + " workers/x:Fast"}},
		{"within its own bar", []bench{fast, with(slow, func(b *bench) { b.cpu = 1500 })}, "CPU A", nil},
		{"beyond its own bar", []bench{fast, with(slow, func(b *bench) { b.cpu = 1700 })}, "CPU A", []string{UnitCPU + " workers/x:Slow/sub"}},
		{"wall within its bar", []bench{with(fast, func(b *bench) { b.wall = 250 }), slow}, "CPU A", nil},
		{"wall beyond its bar", []bench{with(fast, func(b *bench) { b.wall = 350 }), slow}, "CPU A", []string{UnitWall + " workers/x:Fast"}},
		{"an allocation more", []bench{with(fast, func(b *bench) { b.allocs = 3 }), slow}, "CPU A", []string{UnitAllocs + " workers/x:Fast"}},
		{"allocations within the bar", []bench{fast, with(slow, func(b *bench) { b.allocs = 102 })}, "CPU A", nil},
		{"gone", []bench{fast}, "CPU A", all("workers/x:Slow/sub")},
		{"new", []bench{fast, slow, {"Other", 5, 5, 0}}, "CPU A", all("workers/x:Other")},
		{"another CPU: time not judged", []bench{with(fast, func(b *bench) { b.cpu, b.wall = 300, 900 }), slow}, "CPU B", nil},
		{"another CPU: allocations judged", []bench{with(fast, func(b *bench) { b.allocs = 4 }), slow}, "CPU B", []string{UnitAllocs + " workers/x:Fast"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cur := samples(t, tt.cpu, tt.cur...)
			baseData, _ := os.ReadFile(base)
			curData, _ := os.ReadFile(cur)
			vs := judge(cur, CPU(baseData) == CPU(curData))
			if len(vs) < 6 {
				t.Fatalf("%d judged rows, want 3 units x 2 benchmarks at least: %v", len(vs), vs)
			}
			var failed []string
			for k, v := range vs {
				if v.Fail {
					failed = append(failed, k)
				}
			}
			if fmt.Sprint(sorted(failed)) != fmt.Sprint(sorted(tt.wantFail)) {
				t.Errorf("failed %v, want %v", failed, tt.wantFail)
			}
			var w bytes.Buffer
			if n := Report(&w, mapValues(vs)); n != len(tt.wantFail) {
				t.Errorf("Report counted %d failures, want %d:\n%s", n, len(tt.wantFail), w.String())
			}
			if len(tt.wantFail) > 0 && !strings.HasPrefix(w.String(), "FAIL") {
				t.Errorf("the report does not start with its failures:\n%s", w.String())
			}
		})
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

func mapValues(m map[string]Verdict) []Verdict {
	var out []Verdict
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

func TestParseBenchstatCSV(t *testing.T) {
	// benchstat v0.0.0-20260908200009's output for two packages.
	const out = `goos: linux
goarch: amd64
pkg: github.com/helixflow/helixflow/workers/x
,baseline,,current,,,
,sec/op,CI,sec/op,CI,vs base,P
Foo/a-2,1.0e-07,∞,1.5e-07,∞,+50.00%,p=0.008 n=5
Bar-2,5e-08,∞
geomean,7.0e-08,,8.6e-08,,+22.43%,

,baseline,,current,,,
,allocs/op,CI,allocs/op,CI,vs base,P
Foo/a-2,0,∞,1,∞,?,p=0.008 n=5
geomean,,,,,+22.47%,

pkg: github.com/helixflow/helixflow/xds/y
,baseline,,current,,,
,sec/op,CI,sec/op,CI,vs base,P
Baz-2,5e-09,∞,5e-09,∞,~,p=1.000 n=2

,current,
,widgets/op,CI
Baz-2,3,∞
geomean,,
`
	rows, err := ParseBenchstatCSV([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"workers/x:Foo/a sec/op 1e-07 1.5e-07 0.008",
		"workers/x:Bar sec/op 5e-08 NaN 1",
		"workers/x:Foo/a allocs/op 0 1 0.008",
		"xds/y:Baz sec/op 5e-09 5e-09 1",
		"xds/y:Baz widgets/op NaN 3 1",
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, r := range rows {
		if got := fmt.Sprintf("%s %s %v %v %v", r.Name, r.Unit, r.Base, r.New, r.P); got != want[i] {
			t.Errorf("row %d: %s, want %s", i, got, want[i])
		}
	}
	if d := rows[2].Delta(); !math.IsInf(d, 1) {
		t.Errorf("0 -> 1 allocation: delta %v, want +Inf", d)
	}
	if d := rows[0].Delta(); math.Abs(d-0.5) > 1e-9 {
		t.Errorf("delta %v, want 0.5", d)
	}
	for _, bad := range []string{"", "pkg: x\n", ",a\n"} {
		if _, err := ParseBenchstatCSV([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestNoise(t *testing.T) {
	benchstat := tool(t, "benchstat")
	files := []string{
		samples(t, "CPU A", bench{"Fast", 100, 100, 2}),
		samples(t, "CPU A", bench{"Fast", 110, 100, 2}),
		samples(t, "CPU A", bench{"Fast", 100, 100, 2}),
	}
	rows, err := Noise(context.Background(), benchstat, files)
	if err != nil {
		t.Fatal(err)
	}
	var timeRow *NoiseRow
	for i := range rows {
		if rows[i].Unit == UnitCPU {
			timeRow = &rows[i]
		}
	}
	if timeRow == nil {
		t.Fatalf("no CPU row: %+v", rows)
	}
	// 6 ordered pairs; the 4 that pair the 110 ns run with a 100 ns one
	// differ significantly, the worst growth being +10%.
	if timeRow.Pairs != 6 || timeRow.SigPairs != 4 || math.Abs(timeRow.WorstSig-0.1) > 0.001 {
		t.Errorf("noise row %+v", *timeRow)
	}
	if math.Abs(timeRow.Min-0.1) > 1e-9 || math.Abs(timeRow.Max-0.11) > 1e-9 || math.Abs(timeRow.Median-0.1) > 1e-9 {
		t.Errorf("medians %v %v %v", timeRow.Min, timeRow.Median, timeRow.Max)
	}
	if w, name := WorstSig(rows, UnitCPU); name != "workers/x:Fast" || math.Abs(w-0.1) > 0.001 {
		t.Errorf("WorstSig %v %s", w, name)
	}
	var b strings.Builder
	WriteNoiseTable(&b, rows)
	if !strings.Contains(b.String(), "| workers/x:Fast | cpu-refs/op | 0.1 | 0.1 | 0.11 | 10.0% | 4/6 | +10.00% |") {
		t.Errorf("table:\n%s", b.String())
	}
	if _, err := Noise(context.Background(), benchstat, files[:1]); err == nil {
		t.Error("one run: no error")
	}
}

// fakeBench writes an executable standing in for a test binary: it prints
// what a benchmark run prints, for the pattern it is given, and spends
// CPU time when asked for more than 1 iteration.
func fakeBench(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake.test")
	script := `#!/bin/sh
for a in "$@"; do case "$a" in
  -test.bench=none) echo PASS; exit 0;;
  -test.bench=fail) echo "--- FAIL: x"; exit 1;;
  -test.bench=two) echo "BenchmarkA-2 1 1 ns/op"; echo "BenchmarkB-2 1 1 ns/op"; exit 0;;
  -test.benchtime=1x) ;;
  -test.benchtime=*) i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done;;
esac; done
echo "goos: linux"
echo "pkg: github.com/helixflow/helixflow/workers/x"
echo "cpu: Fake"
echo "    x_test.go:1: a log line"
echo "BenchmarkFast-2 	 100	 10 ns/op	 0 B/op	 0 allocs/op"
echo PASS
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	bin := fakeBench(t)
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "workers", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	r := &Runner{Root: root, Log: &log}
	c := &Config{Count: 3, Benches: []Bench{{Pkg: "./workers/x", Pattern: ".", N: 2}, {Pkg: "./workers/x", Pattern: "Fast", N: 2}}}
	out, err := r.Run(context.Background(), c, map[string]string{"./workers/x": bin})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "BenchmarkFast-2"); n != 6 {
		t.Errorf("%d samples, want 3 rounds x 2 lines:\n%s", n, out)
	}
	if strings.Contains(string(out), "PASS") || strings.Contains(string(out), "log line") {
		t.Errorf("kept what is not a result:\n%s", out)
	}
	if n := strings.Count(log.String(), "round"); n != 3 {
		t.Errorf("log: %s", log.String())
	}
	// The busy loop of the 2-iteration run, less the 1-iteration run's
	// start, is the CPU time of the one iteration more: some milliseconds.
	refs := 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if strings.HasPrefix(line, "BenchmarkReference-2") {
			refs++
			if len(f) != 6 || f[3] != "proc-cpu-ns/op" || !(num(f[2]) > 0) || f[5] != "cpu-refs/op" {
				t.Errorf("reference line %q", line)
			}
			continue
		}
		if len(f) < 4 || f[len(f)-3] != "proc-cpu-ns/op" || f[len(f)-1] != "cpu-refs/op" {
			t.Fatalf("no proc-cpu-ns/op and cpu-refs/op at the end of %q", line)
		}
		if v := num(f[len(f)-4]); !(v > 1e5) {
			t.Errorf("proc-cpu-ns/op %v in %q, want the busy loop's milliseconds", v, line)
		}
		if v := num(f[len(f)-2]); !(v > 0) {
			t.Errorf("cpu-refs/op %v in %q", v, line)
		}
	}
	if refs != 3 {
		t.Errorf("%d reference samples, want one a round", refs)
	}
	for _, tt := range []struct{ pattern, want string }{{"none", "selects 0 benchmarks"}, {"two", "selects 2 benchmarks"}, {"fail", "--- FAIL"}} {
		c := &Config{Count: 1, Benches: []Bench{{Pkg: "./workers/x", Pattern: tt.pattern, N: 2, Line: 9}}}
		if _, err := r.Run(context.Background(), c, map[string]string{"./workers/x": bin}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("pattern %s: error %v, want %q", tt.pattern, err, tt.want)
		}
	}
}

// Build compiles a real test binary (a module of its own in testdata, so
// that the build is quick) and refuses two packages of one name.
func TestBuild(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		testdeps.Missing(t, "go not on PATH")
	}
	root, err := filepath.Abs("testdata/mod")
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Root: root, Go: goCmd}
	c := &Config{Count: 1, Benches: []Bench{{Pkg: "./sum", Pattern: ".", N: 10}}}
	bins, err := r.Build(context.Background(), c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Run(context.Background(), c, bins)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "BenchmarkSum-2") || !strings.Contains(string(out), "allocs/op") || !strings.Contains(string(out), "proc-cpu-ns/op") {
		t.Errorf("output:\n%s", out)
	}
	c.Benches = append(c.Benches, Bench{Pkg: "./other/sum"})
	if _, err := r.Build(context.Background(), c, t.TempDir()); err == nil || !strings.Contains(err.Error(), "both build sum.test") {
		t.Errorf("two sum packages: %v", err)
	}
	r.Tags = "nosuchtag"
	c.Benches = []Bench{{Pkg: "./missing"}}
	if _, err := r.Build(context.Background(), c, t.TempDir()); err == nil {
		t.Error("a missing package built")
	}
}

func TestCPU(t *testing.T) {
	if got := CPU([]byte("goos: linux\ncpu: AMD EPYC\ncpu: other\n")); got != "AMD EPYC" {
		t.Errorf("CPU %q", got)
	}
	if got := CPU(nil); got != "" {
		t.Errorf("CPU of nothing %q", got)
	}
}

func TestFmtVal(t *testing.T) {
	for _, tt := range []struct {
		unit string
		v    float64
		want string
	}{
		{"sec/op", 2.5e-3, "2.50ms"}, {"sec/op", 2.5e-6, "2.50µs"}, {"sec/op", 25e-9, "25.0ns"},
		{"allocs/op", 13, "13"}, {"allocs/op", math.NaN(), "-"},
	} {
		if got := fmtVal(tt.unit, tt.v); got != tt.want {
			t.Errorf("fmtVal(%s, %v) = %s, want %s", tt.unit, tt.v, got, tt.want)
		}
	}
}

// End to end, with a real benchmark: the gate passes the unchanged code,
// and fails it when it does 4 times the work (CPU time) or allocates once
// more an operation.
func TestGateCatchesRealSlowdown(t *testing.T) {
	benchstat := tool(t, "benchstat")
	goCmd, err := exec.LookPath("go")
	if err != nil {
		testdeps.Missing(t, "go not on PATH")
	}
	root, err := filepath.Abs("testdata/mod")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := &Runner{Root: root, Go: goCmd}
	c, err := ParseConfig(strings.NewReader("count 6\ncpu-threshold 100%\nwall-threshold 1000%\nallocs-threshold 1%\nbench ./sum ^BenchmarkSum$ 10000x\n"))
	if err != nil {
		t.Fatal(err)
	}
	bins, err := r.Build(ctx, c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	measure := func(name string, env ...string) string {
		t.Helper()
		for _, e := range env {
			k, v, _ := strings.Cut(e, "=")
			t.Setenv(k, v)
		}
		out, err := r.Run(ctx, c, bins)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range env {
			k, _, _ := strings.Cut(e, "=")
			t.Setenv(k, "")
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := measure("base.txt")
	failed := func(cur string) []string {
		t.Helper()
		out, err := Benchstat(ctx, benchstat, base, cur, "csv")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := ParseBenchstatCSV(out)
		if err != nil {
			t.Fatal(err)
		}
		var f []string
		for _, v := range Judge(c, rows, true) {
			if v.Fail {
				f = append(f, v.Unit)
			}
		}
		return sorted(f)
	}
	if f := failed(measure("same.txt")); len(f) != 0 {
		t.Errorf("the same code failed %v", f)
	}
	if f := failed(measure("slower.txt", "GATES_SLOWER=1")); !slices.Contains(f, UnitCPU) {
		t.Errorf("4 times the work: failed %v, want %s among them", f, UnitCPU)
	}
	if f := failed(measure("alloc.txt", "GATES_ALLOC=1")); !slices.Contains(f, UnitAllocs) {
		t.Errorf("an allocation more: failed %v, want %s among them", f, UnitAllocs)
	}
}
