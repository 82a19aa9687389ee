package gates

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ModulePath prefixes the pkg: lines of the benchmarks' output; names are
// shown relative to it.
const ModulePath = "github.com/helixflow/helixflow/"

// Row is one benchmark's medians in one unit, base and new, as benchstat
// compares them.
type Row struct {
	Name      string  // workers/scheduler:Scheduler/direct/callers=1
	Unit      string  // sec/op, B/op, allocs/op
	Base, New float64 // medians; NaN where the side has no samples
	P         float64 // the Mann-Whitney U test's p-value; 1 where benchstat gave none
	N         string  // benchstat's "n=6" (or "n=6+5")
}

// Delta is New/Base-1 (+0.3 = 30% more); +Inf when Base is 0 and New is
// not.
func (r Row) Delta() float64 {
	switch {
	case r.Base == r.New:
		return 0
	case r.Base == 0:
		return math.Inf(1)
	}
	return r.New/r.Base - 1
}

// Benchstat runs benchstat (the binary at path) on base and new, labelled
// baseline and current, in its CSV format. CPU model differences are
// ignored so that the rows pair up (Compare decides what a different CPU
// means).
func Benchstat(ctx context.Context, path, base, new string, format string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, "-format", format, "-ignore", "cpu", "baseline="+base, "current="+new)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("benchstat (%s): %w: %s", path, err, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("benchstat (%s): %w", path, err)
	}
	return out, nil
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// ParseBenchstatCSV reads benchstat -format csv output for two inputs:
// "key: value" lines (pkg: among them) then, per unit, a header row of
// the inputs, a row of the unit's column titles and a row per benchmark,
// tables separated by blank lines. The geomean rows are dropped.
func ParseBenchstatCSV(data []byte) ([]Row, error) {
	var rows []Row
	pkg := ""
	unit := ""
	for block := range strings.SplitSeq(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n\n") {
		var table []string
		for line := range strings.SplitSeq(block, "\n") {
			if k, v, ok := strings.Cut(line, ": "); ok && !strings.Contains(k, ",") {
				if k == "pkg" {
					pkg = strings.TrimPrefix(v, ModulePath)
				}
				continue
			}
			if line != "" {
				table = append(table, line)
			}
		}
		if len(table) == 0 {
			continue
		}
		r := csv.NewReader(strings.NewReader(strings.Join(table, "\n")))
		r.FieldsPerRecord = -1
		recs, err := r.ReadAll()
		if err != nil {
			return nil, fmt.Errorf("benchstat csv: %w", err)
		}
		if len(recs) < 2 || len(recs[0]) < 2 || len(recs[1]) < 2 {
			return nil, fmt.Errorf("benchstat csv: a table without its two header rows: %q", table[0])
		}
		unit = recs[1][1]
		// A unit only one input has makes a table of that input alone.
		onlyNew := len(recs[1]) < 7 && recs[0][1] == "current"
		for _, rec := range recs[2:] {
			if len(rec) < 2 || rec[0] == "geomean" {
				continue
			}
			// A benchmark only the baseline has ends after its CI.
			rec = append(rec, make([]string, max(0, 7-len(rec)))...)
			if onlyNew {
				rec = []string{rec[0], "", "", rec[1], rec[2], "", ""}
			}
			row := Row{Name: pkg + ":" + procSuffix.ReplaceAllString(rec[0], ""), Unit: unit, Base: num(rec[1]), New: num(rec[3]), P: 1}
			// The P column: "p=0.002 n=6", or "n=6" alone where no test ran.
			for f := range strings.FieldsSeq(rec[6]) {
				if v, ok := strings.CutPrefix(f, "p="); ok {
					if p, err := strconv.ParseFloat(v, 64); err == nil {
						row.P = p
					}
				} else if strings.HasPrefix(f, "n=") {
					row.N = f
				}
			}
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("benchstat csv: no benchmark rows")
	}
	return rows, nil
}

func num(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// Alpha is the significance level: a difference benchstat's test gives a
// p-value under it is not taken for noise (benchstat's own default).
const Alpha = 0.05

// Verdict is one row's judgement.
type Verdict struct {
	Row
	Threshold float64
	Fail      bool
	Why       string
}

// The units benchstat names the gated measures by.
const (
	UnitCPU     = "cpu-refs/op"     // Runner's CPU time in units of the reference workload's
	UnitProcCPU = "proc-cpu-sec/op" // Runner's proc-cpu-ns/op, as benchstat scales it: shown, not judged
	UnitWall    = "sec/op"
	UnitAllocs  = "allocs/op"
)

// Judge applies the config's thresholds to benchstat's rows. A row fails
// when its growth is significant (p < Alpha) and beyond its threshold; a
// benchmark that only one side has fails (a new or renamed benchmark needs
// make gates-baseline). With timeOK false (the baseline was measured on
// another CPU) time rows are shown but never fail; allocations still do.
func Judge(c *Config, rows []Row, timeOK bool) []Verdict {
	var out []Verdict
	for _, r := range rows {
		v := Verdict{Row: r}
		var judged bool
		v.Threshold, judged = c.threshold(r.Unit, r.Name)
		if !judged || r.Name == ReferenceName {
			continue // B/op and the benchmarks' own metrics: in the text table only
		}
		switch {
		case math.IsNaN(r.Base):
			v.Fail, v.Why = true, "not in the baseline: run make gates-baseline"
		case math.IsNaN(r.New):
			v.Fail, v.Why = true, "in the baseline but not measured: renamed or removed? run make gates-baseline"
		case r.Unit != UnitAllocs && !timeOK:
			v.Why = "not judged: the baseline is from another CPU"
		case r.P < Alpha && r.Delta() > v.Threshold:
			v.Fail, v.Why = true, fmt.Sprintf("%+.1f%% > +%.0f%% (p=%.3f)", 100*r.Delta(), 100*v.Threshold, r.P)
		}
		out = append(out, v)
	}
	return out
}

// Report writes the judged rows, failures first, and returns how many
// failed.
func Report(w io.Writer, vs []Verdict) int {
	fails := 0
	sorted := slices.Clone(vs)
	slices.SortStableFunc(sorted, func(a, b Verdict) int {
		switch {
		case a.Fail == b.Fail:
			return 0
		case a.Fail:
			return -1
		}
		return 1
	})
	for _, v := range sorted {
		status := "ok  "
		if v.Fail {
			status = "FAIL"
			fails++
		}
		delta := "~"
		if v.P < Alpha {
			delta = fmt.Sprintf("%+.1f%%", 100*v.Delta())
		}
		fmt.Fprintf(w, "%s %-15s %-62s %12s -> %-12s %8s (p=%.3f, bar +%.0f%%) %s\n",
			status, v.Unit, v.Name, fmtVal(v.Unit, v.Base), fmtVal(v.Unit, v.New), delta, v.P, 100*v.Threshold, v.Why)
	}
	return fails
}

func fmtVal(unit string, v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	switch {
	case strings.HasSuffix(unit, "sec/op"):
		switch {
		case v >= 1e-3:
			return fmt.Sprintf("%.2fms", v*1e3)
		case v >= 1e-6:
			return fmt.Sprintf("%.2fµs", v*1e6)
		}
		return fmt.Sprintf("%.1fns", v*1e9)
	case unit == UnitCPU:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// CPU is the value of the first "cpu:" line of a benchmark output file.
func CPU(data []byte) string {
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "cpu: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
