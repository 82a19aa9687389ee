// Package gates is make gates (bench/gates): the microbenchmarks of the
// hot paths compared by benchstat against a committed baseline, and the
// APIs (proto/ with buf, api/*.yaml with oasdiff) checked for breaking
// changes against the last release's copies in api/compat.
package gates

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Bench is one benchmark and how long its samples are: each sample is a
// run of its package's test binary (-test.benchtime N iterations) beside
// a run of 1 iteration, so that the process's CPU time over the N-1 more
// is the benchmark's own, its setup subtracted.
type Bench struct {
	Pkg     string // ./workers/scheduler
	Pattern string // the -test.bench regular expression; it selects one benchmark
	N       int    // iterations a sample (-test.benchtime Nx, N >= 2): fixed, so allocs/op stay comparable
	Line    int    // in the config file, for messages
}

// Benchtime is the -test.benchtime of a sample.
func (b Bench) Benchtime() string { return strconv.Itoa(b.N) + "x" }

// Config is bench/gates/benchmarks.txt.
type Config struct {
	Count int // samples of each benchmark, run in rounds
	// Growth beyond these fractions (0.3 = +30%) of a median, when
	// benchstat finds it significant, fails the gate: CPU time per
	// operation (the process's, setup subtracted), wall time per operation
	// (what go test reports; on a shared machine mostly the load), and
	// allocations per operation.
	CPUThreshold    float64
	WallThreshold   float64
	AllocsThreshold float64
	// Per-benchmark CPU thresholds, by name (workers/x:Bench/sub): a
	// noisier benchmark's own bar.
	CPUOverride map[string]float64
	Benches     []Bench
}

// ParseConfig reads the config's line format:
//
//	count 8
//	cpu-threshold 30%
//	wall-threshold 500%
//	allocs-threshold 2%
//	cpu-threshold-for workers/x:Name/sub 50%
//	bench ./workers/scheduler ^BenchmarkScheduler$/^direct$/^callers=1$ 20000x
//
// Blank lines and lines starting with # are comments.
func ParseConfig(r io.Reader) (*Config, error) {
	c := &Config{CPUOverride: map[string]float64{}}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		var err error
		switch {
		case f[0] == "count" && len(f) == 2:
			c.Count, err = strconv.Atoi(f[1])
			if err == nil && c.Count < 5 {
				err = fmt.Errorf("count %d: benchstat needs at least 5 samples a side to call a difference significant", c.Count)
			}
		case f[0] == "cpu-threshold" && len(f) == 2:
			c.CPUThreshold, err = parsePercent(f[1])
		case f[0] == "wall-threshold" && len(f) == 2:
			c.WallThreshold, err = parsePercent(f[1])
		case f[0] == "allocs-threshold" && len(f) == 2:
			c.AllocsThreshold, err = parsePercent(f[1])
		case f[0] == "cpu-threshold-for" && len(f) == 3:
			var t float64
			t, err = parsePercent(f[2])
			c.CPUOverride[f[1]] = t
		case f[0] == "bench" && len(f) == 4:
			if !strings.HasPrefix(f[1], "./") {
				err = fmt.Errorf("package %q: want a path relative to the module root, ./...", f[1])
				break
			}
			if _, err = regexp.Compile(strings.ReplaceAll(f[2], "/", "|")); err != nil {
				err = fmt.Errorf("pattern %q: %w", f[2], err)
				break
			}
			v, ok := strings.CutSuffix(f[3], "x")
			iters, aerr := strconv.Atoi(v)
			if !ok || aerr != nil || iters < 2 {
				err = fmt.Errorf("benchtime %q: want an iteration count of at least 2, such as 1000x", f[3])
				break
			}
			c.Benches = append(c.Benches, Bench{Pkg: f[1], Pattern: f[2], N: iters, Line: n})
		default:
			err = fmt.Errorf("unknown line %q (want count N, cpu-threshold P%%, wall-threshold P%%, allocs-threshold P%%, cpu-threshold-for NAME P%%, bench PKG PATTERN Nx)", line)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	switch {
	case c.Count == 0:
		return nil, fmt.Errorf("no count line")
	case c.CPUThreshold == 0 || c.WallThreshold == 0 || c.AllocsThreshold == 0:
		return nil, fmt.Errorf("cpu-threshold, wall-threshold and allocs-threshold are all required")
	case len(c.Benches) == 0:
		return nil, fmt.Errorf("no bench lines")
	}
	return c, nil
}

// parsePercent reads "30%" as 0.3.
func parsePercent(s string) (float64, error) {
	v, ok := strings.CutSuffix(s, "%")
	if !ok {
		return 0, fmt.Errorf("%q: want a percentage such as 25%%", s)
	}
	p, err := strconv.ParseFloat(v, 64)
	if err != nil || p <= 0 {
		return 0, fmt.Errorf("%q: want a positive percentage", s)
	}
	return p / 100, nil
}

// Pkgs is the config's packages, each once, in order.
func (c *Config) Pkgs() []string {
	var out []string
	seen := map[string]bool{}
	for _, b := range c.Benches {
		if !seen[b.Pkg] {
			seen[b.Pkg] = true
			out = append(out, b.Pkg)
		}
	}
	return out
}

// threshold is the bar of name's rows in unit, and whether unit is
// judged at all.
func (c *Config) threshold(unit, name string) (float64, bool) {
	switch unit {
	case UnitCPU:
		if t, ok := c.CPUOverride[name]; ok {
			return t, true
		}
		return c.CPUThreshold, true
	case UnitWall:
		return c.WallThreshold, true
	case UnitAllocs:
		return c.AllocsThreshold, true
	}
	return 0, false
}
