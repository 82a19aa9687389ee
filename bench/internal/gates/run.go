package gates

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Procs is GOMAXPROCS for every benchmark (-test.cpu): the 2 cores of the
// machine the baseline comes from, pinned so that the names (their -2
// suffix) and the parallel benchmarks' allocations match on any machine.
const Procs = "2"

// Runner builds and runs the benchmarks of a Config.
type Runner struct {
	Root string // the main module's root
	Go   string // the go command
	Tags string // -tags for the build (vtprotobuf)
	Log  io.Writer
}

// Build compiles the test binary of each of the config's packages into
// dir, in one go command (the packages link side by side), and returns
// them by package.
func (r *Runner) Build(ctx context.Context, c *Config, dir string) (map[string]string, error) {
	bins := map[string]string{}
	byBase := map[string]string{}
	for _, p := range c.Pkgs() {
		base := path.Base(p)
		if other, ok := byBase[base]; ok {
			return nil, fmt.Errorf("packages %s and %s both build %s.test: go test -c -o DIR cannot build both", other, p, base)
		}
		byBase[base] = p
		bins[p] = filepath.Join(dir, base+".test")
	}
	args := []string{"test", "-c", "-o", dir + string(filepath.Separator)}
	if r.Tags != "" {
		args = append(args, "-tags="+r.Tags)
	}
	cmd := exec.CommandContext(ctx, r.Go, append(args, c.Pkgs()...)...)
	cmd.Dir = r.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go test -c: %w\n%s", err, out)
	}
	return bins, nil
}

// ReferenceName is the row of the reference workload (Reference) in the
// samples Run writes.
const ReferenceName = "bench/gates:Reference"

// Run runs every benchmark Count times, in rounds (each round runs each
// line of the config once, then the reference workload), so that a burst
// of load elsewhere on the machine costs one sample of many benchmarks
// rather than every sample of one. It returns the samples in Go's
// benchmark format, each result line with two more metrics:
//
//   - proc-cpu-ns/op: the CPU time (user and system, all threads: the
//     GC's too) of the process that ran N iterations, less the median CPU
//     time of the processes that ran 1 (one each round: the setup's cost,
//     the median so that one disturbed run does not skew it), over N-1.
//     Unlike ns/op, it does not grow while the benchmark waits for a core
//     that other processes hold.
//   - cpu-refs/op: the same in units of the reference workload's CPU time
//     per iteration (the median of the rounds'), which takes out what moves
//     every benchmark alike: the machine's speed of the moment.
//
// The reference's own rounds are rows too (ReferenceName), in both units.
func (r *Runner) Run(ctx context.Context, c *Config, bins map[string]string) ([]byte, error) {
	type sample struct {
		text       []byte
		cpu, floor time.Duration
	}
	samples := make([][]sample, len(c.Benches)) // by line, then round
	var refs []time.Duration
	for round := 1; round <= c.Count; round++ {
		start := time.Now()
		for i, b := range c.Benches {
			_, floor, err := r.runOne(ctx, b, bins[b.Pkg], 1)
			if err != nil {
				return nil, err
			}
			res, cpu, err := r.runOne(ctx, b, bins[b.Pkg], b.N)
			if err != nil {
				return nil, err
			}
			samples[i] = append(samples[i], sample{res, cpu, floor})
		}
		ref, err := Reference(ReferenceIters)
		if err != nil {
			return nil, err
		}
		refs = append(refs, ref)
		if r.Log != nil {
			fmt.Fprintf(r.Log, "gates: round %d/%d of %d benchmarks: %.1fs (reference %v)\n", round, c.Count, len(c.Benches), time.Since(start).Seconds(), ref)
		}
	}
	refMed := median(refs)
	var out bytes.Buffer
	for round := range c.Count {
		for i, b := range c.Benches {
			floors := make([]time.Duration, 0, len(samples[i]))
			for _, s := range samples[i] {
				floors = append(floors, s.floor)
			}
			s := samples[i][round]
			perOp := max(float64(s.cpu-median(floors))/float64(b.N-1), 0)
			// The result line is last: the metrics go at its end.
			out.Write(bytes.TrimSuffix(s.text, []byte("\n")))
			fmt.Fprintf(&out, "\t%.1f proc-cpu-ns/op\t%.6g cpu-refs/op\n", perOp, perOp/float64(refMed))
		}
		pkg, name, _ := strings.Cut(ReferenceName, ":")
		fmt.Fprintf(&out, "pkg: %s%s\nBenchmark%s-%s\t%d\t%.1f proc-cpu-ns/op\t%.6g cpu-refs/op\n",
			ModulePath, pkg, name, Procs, ReferenceIters, float64(refs[round]), float64(refs[round])/float64(refMed))
	}
	return out.Bytes(), nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// runOne runs b's benchmark for n iterations and returns the result lines
// (the headers, then the one result line last) and the process's CPU
// time.
func (r *Runner) runOne(ctx context.Context, b Bench, bin string, n int) ([]byte, time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, "-test.run=^$", "-test.bench="+b.Pattern, "-test.benchtime="+strconv.Itoa(n)+"x",
		"-test.count=1", "-test.cpu="+Procs, "-test.benchmem")
	cmd.Dir = filepath.Join(r.Root, filepath.FromSlash(b.Pkg)) // as go test runs it: testdata/ relative
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		return nil, 0, fmt.Errorf("benchmarks of %s (%s): %w\n%s%s", b.Pkg, b.Pattern, err, res, stderr.Bytes())
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var head, result []string
	for line := range strings.SplitSeq(string(res), "\n") {
		switch {
		case strings.HasPrefix(line, "Benchmark"):
			result = append(result, line)
		case strings.Contains(line, ": ") && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t"):
			head = append(head, line)
		}
	}
	if len(result) != 1 {
		return nil, 0, fmt.Errorf("benchmarks of %s: pattern %s (benchmarks.txt line %d) selects %d benchmarks, want 1 (the CPU time is the process's)", b.Pkg, b.Pattern, b.Line, len(result))
	}
	return []byte(strings.Join(append(head, result[0]), "\n") + "\n"), cpu, nil
}

// RaisePriority lowers this process's nice value to nice (its children,
// the benchmarks, inherit it), so that on a shared machine the benchmarks
// get their cores rather than a share of them. Lowering the value needs
// CAP_SYS_NICE; without it the error says so and the caller goes on.
func RaisePriority(nice int) error {
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, nice); err != nil {
		return fmt.Errorf("setpriority %d: %w (benchmarks run at the default priority)", nice, err)
	}
	return nil
}

// WriteFile writes data to name through a temporary file beside it.
func WriteFile(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
