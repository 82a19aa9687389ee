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

// Bench is one run of a package's test binary: the benchmarks its -bench
// pattern selects, each sample -benchtime long.
type Bench struct {
	Pkg       string // ./workers/scheduler
	Pattern   string // the -test.bench regular expression
	Benchtime string // the -test.benchtime: Nx (a fixed count keeps allocs/op comparable) or a duration
	Line      int    // in the config file, for messages
}

// Config is bench/gates/benchmarks.txt.
type Config struct {
	Count int // samples of each benchmark (-test.count, run in rounds)
	// Slowdowns beyond these fractions (0.3 = +30%), when benchstat finds
	// them significant, fail the gate.
	TimeThreshold   float64
	AllocsThreshold float64
	// Per-benchmark time thresholds, by benchstat's row name (no -N
	// suffix): a noisier benchmark's own bar.
	TimeOverride map[string]float64
	Benches      []Bench
}

// ParseConfig reads the config's line format:
//
//	count 6
//	time-threshold 30%
//	allocs-threshold 2%
//	time-threshold-for pkg.Name/sub 50%
//	bench ./workers/scheduler ^BenchmarkScheduler$/./^callers=1$ 20000x
//
// Blank lines and lines starting with # are comments.
func ParseConfig(r io.Reader) (*Config, error) {
	c := &Config{TimeOverride: map[string]float64{}}
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
		case f[0] == "time-threshold" && len(f) == 2:
			c.TimeThreshold, err = parsePercent(f[1])
		case f[0] == "allocs-threshold" && len(f) == 2:
			c.AllocsThreshold, err = parsePercent(f[1])
		case f[0] == "time-threshold-for" && len(f) == 3:
			var t float64
			t, err = parsePercent(f[2])
			c.TimeOverride[f[1]] = t
		case f[0] == "bench" && len(f) == 4:
			if !strings.HasPrefix(f[1], "./") {
				err = fmt.Errorf("package %q: want a path relative to the module root, ./...", f[1])
				break
			}
			if _, err = regexp.Compile(strings.ReplaceAll(f[2], "/", "|")); err != nil {
				err = fmt.Errorf("pattern %q: %w", f[2], err)
				break
			}
			c.Benches = append(c.Benches, Bench{Pkg: f[1], Pattern: f[2], Benchtime: f[3], Line: n})
		default:
			err = fmt.Errorf("unknown line %q (want count N, time-threshold P%%, allocs-threshold P%%, time-threshold-for NAME P%%, bench PKG PATTERN BENCHTIME)", line)
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
	case c.TimeThreshold == 0 || c.AllocsThreshold == 0:
		return nil, fmt.Errorf("time-threshold and allocs-threshold are both required")
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

// timeThreshold is name's time bar.
func (c *Config) timeThreshold(name string) float64 {
	if t, ok := c.TimeOverride[name]; ok {
		return t
	}
	return c.TimeThreshold
}
