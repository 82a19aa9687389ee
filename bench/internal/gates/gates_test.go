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
time-threshold 30%
allocs-threshold 2.5%
time-threshold-for workers/x:Slow/sub 60%

bench ./workers/x ^BenchmarkSlow$/^sub$ 100x
bench ./workers/x ^BenchmarkFast$ 1000x
bench ./xds/y . 2x
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(strings.NewReader(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Count != 6 || c.TimeThreshold != 0.3 || c.AllocsThreshold != 0.025 || len(c.Benches) != 3 {
		t.Fatalf("parsed %+v", c)
	}
	if got := c.timeThreshold("workers/x:Slow/sub"); got != 0.6 {
		t.Errorf("override: %v", got)
	}
	if got := c.timeThreshold("workers/x:Fast"); got != 0.3 {
		t.Errorf("default: %v", got)
	}
	if got := fmt.Sprint(c.Pkgs()); got != "[./workers/x ./xds/y]" {
		t.Errorf("Pkgs: %s", got)
	}
	if b := c.Benches[0]; b.Pattern != "^BenchmarkSlow$/^sub$" || b.Benchtime != "100x" || b.Line != 7 {
		t.Errorf("first bench: %+v", b)
	}

	for _, tt := range []struct{ name, text, want string }{
		{"few samples", "count 3\n", "at least 5"},
		{"percent sign", "count 6\ntime-threshold 30\n", "percentage"},
		{"negative", "count 6\ntime-threshold -3%\n", "positive"},
		{"unknown", "count 6\nfoo bar\n", `unknown line "foo bar"`},
		{"absolute package", "bench workers/x . 1x\n", "relative to the module root"},
		{"bad pattern", "bench ./x ^(a 1x\n", "pattern"},
		{"no count", "time-threshold 30%\nallocs-threshold 2%\nbench ./x . 1x\n", "no count"},
		{"no thresholds", "count 6\nbench ./x . 1x\n", "both required"},
		{"no benches", "count 6\ntime-threshold 30%\nallocs-threshold 2%\n", "no bench lines"},
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

// samples writes a benchmark output file: for each benchmark, n samples
// of ns/op around the given value (±1%, deterministic) and allocs/op.
func samples(t *testing.T, cpu string, benches ...struct {
	name   string
	ns     float64
	allocs int
}) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "goos: linux\ngoarch: amd64\npkg: %sworkers/x\ncpu: %s\n", ModulePath, cpu)
	for _, bench := range benches {
		for _, j := range []float64{-2, -1, 0, 1, 2, 1, 0, -1} { // ±1%, median 0
			jitter := 1 + 0.005*j
			fmt.Fprintf(&b, "Benchmark%s-2 \t 1000\t %.1f ns/op\t 64 B/op\t %d allocs/op\n", bench.name, bench.ns*jitter, bench.allocs)
		}
	}
	p := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type bench = struct {
	name   string
	ns     float64
	allocs int
}

// A slowdown beyond the bar, an allocation more, a benchmark gone or new:
// each fails, through the real benchstat; noise within the bar and a
// change on another CPU do not.
func TestBenchGate(t *testing.T) {
	benchstat := tool(t, "benchstat")
	c, err := ParseConfig(strings.NewReader(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	base := samples(t, "CPU A", bench{"Fast", 100, 2}, bench{"Slow/sub", 1000, 100})
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
	for _, tt := range []struct {
		name     string
		cur      []bench
		cpu      string
		wantFail []string
	}{
		{"unchanged", []bench{{"Fast", 100, 2}, {"Slow/sub", 1000, 100}}, "CPU A", nil},
		{"within the bar", []bench{{"Fast", 125, 2}, {"Slow/sub", 900, 100}}, "CPU A", nil},
		{"slower", []bench{{"Fast", 140, 2}, {"Slow/sub", 1000, 100}}, "CPU A", []string{"sec/op workers/x:Fast"}},
		{"own bar", []bench{{"Fast", 100, 2}, {"Slow/sub", 1500, 100}}, "CPU A", nil},
		{"past its own bar", []bench{{"Fast", 100, 2}, {"Slow/sub", 1700, 100}}, "CPU A", []string{"sec/op workers/x:Slow/sub"}},
		{"an allocation more", []bench{{"Fast", 100, 3}, {"Slow/sub", 1000, 100}}, "CPU A", []string{"allocs/op workers/x:Fast"}},
		{"allocations within the bar", []bench{{"Fast", 100, 2}, {"Slow/sub", 1000, 102}}, "CPU A", nil},
		{"gone", []bench{{"Fast", 100, 2}}, "CPU A", []string{"sec/op workers/x:Slow/sub", "allocs/op workers/x:Slow/sub"}},
		{"new", []bench{{"Fast", 100, 2}, {"Slow/sub", 1000, 100}, {"Other", 5, 0}}, "CPU A", []string{"sec/op workers/x:Other", "allocs/op workers/x:Other"}},
		{"another CPU: time not judged", []bench{{"Fast", 300, 2}, {"Slow/sub", 1000, 100}}, "CPU B", nil},
		{"another CPU: allocations judged", []bench{{"Fast", 100, 4}, {"Slow/sub", 1000, 100}}, "CPU B", []string{"allocs/op workers/x:Fast"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cur := samples(t, tt.cpu, tt.cur...)
			baseData, _ := os.ReadFile(base)
			curData, _ := os.ReadFile(cur)
			vs := judge(cur, CPU(baseData) == CPU(curData))
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
	for _, bad := range []string{"", "pkg: x\n", ",a,,b\n,sec/op\n"} {
		if _, err := ParseBenchstatCSV([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestNoise(t *testing.T) {
	benchstat := tool(t, "benchstat")
	files := []string{
		samples(t, "CPU A", bench{"Fast", 100, 2}),
		samples(t, "CPU A", bench{"Fast", 110, 2}),
		samples(t, "CPU A", bench{"Fast", 100, 2}),
	}
	rows, err := Noise(context.Background(), benchstat, files)
	if err != nil {
		t.Fatal(err)
	}
	var timeRow *NoiseRow
	for i := range rows {
		if rows[i].Unit == "sec/op" {
			timeRow = &rows[i]
		}
	}
	if timeRow == nil {
		t.Fatalf("no sec/op row: %+v", rows)
	}
	// 6 ordered pairs; the 4 that pair the 110 ns run with a 100 ns one
	// differ significantly, the worst growth being +10%.
	if timeRow.Pairs != 6 || timeRow.SigPairs != 4 || math.Abs(timeRow.WorstSig-0.1) > 0.001 {
		t.Errorf("noise row %+v", *timeRow)
	}
	if math.Abs(timeRow.Min-100e-9) > 1e-12 || math.Abs(timeRow.Max-110e-9) > 1e-12 || math.Abs(timeRow.Median-100e-9) > 1e-12 {
		t.Errorf("medians %v %v %v", timeRow.Min, timeRow.Median, timeRow.Max)
	}
	if w, name := WorstSig(rows, "sec/op"); name != "workers/x:Fast" || math.Abs(w-0.1) > 0.001 {
		t.Errorf("WorstSig %v %s", w, name)
	}
	var b strings.Builder
	WriteNoiseTable(&b, rows)
	if !strings.Contains(b.String(), "| workers/x:Fast | sec/op | 100.0ns | 100.0ns | 110.0ns | 10.0% | 4/6 | +10.0% |") {
		t.Errorf("table:\n%s", b.String())
	}
	if _, err := Noise(context.Background(), benchstat, files[:1]); err == nil {
		t.Error("one run: no error")
	}
}

// fakeBench writes an executable standing in for a test binary: it prints
// what a benchmark run prints, for the pattern it is given.
func fakeBench(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake.test")
	script := `#!/bin/sh
for a in "$@"; do case "$a" in -test.bench=none) echo PASS; exit 0;; -test.bench=fail) echo "--- FAIL: x"; exit 1;; esac; done
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
	c := &Config{Count: 3, Benches: []Bench{{Pkg: "./workers/x", Pattern: ".", Benchtime: "1x"}, {Pkg: "./workers/x", Pattern: "Fast", Benchtime: "1x"}}}
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
	for _, tt := range []struct{ pattern, want string }{{"none", "selects no benchmark"}, {"fail", "--- FAIL"}} {
		c := &Config{Count: 1, Benches: []Bench{{Pkg: "./workers/x", Pattern: tt.pattern, Benchtime: "1x", Line: 9}}}
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
	c := &Config{Count: 1, Benches: []Bench{{Pkg: "./sum", Pattern: ".", Benchtime: "10x"}}}
	bins, err := r.Build(context.Background(), c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Run(context.Background(), c, bins)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "BenchmarkSum-2") || !strings.Contains(string(out), "allocs/op") {
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
