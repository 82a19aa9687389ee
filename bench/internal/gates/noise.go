package gates

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
)

// NoiseRow is what N runs of the unchanged set say about one benchmark in
// one unit: the spread of its per-run medians and the largest slowdown
// benchstat found significant when each run was compared with each other
// one as if it were the baseline.
type NoiseRow struct {
	Name, Unit       string
	Min, Median, Max float64 // of the runs' medians
	WorstSig         float64 // the largest significant (p < Alpha) growth between two runs; 0 if none
	SigPairs, Pairs  int     // how many ordered pairs benchstat found significant, of how many
}

// Noise compares every ordered pair of the run files with benchstat.
func Noise(ctx context.Context, benchstat string, files []string) ([]NoiseRow, error) {
	if len(files) < 2 {
		return nil, fmt.Errorf("noise needs at least 2 runs, got %d", len(files))
	}
	type key struct{ name, unit string }
	medians := map[key][]float64{}
	rows := map[key]*NoiseRow{}
	var order []key
	for i := range files {
		firstOther := 0
		if i == 0 {
			firstOther = 1
		}
		for j := range files {
			if i == j {
				continue
			}
			out, err := Benchstat(ctx, benchstat, files[i], files[j], "csv")
			if err != nil {
				return nil, err
			}
			parsed, err := ParseBenchstatCSV(out)
			if err != nil {
				return nil, fmt.Errorf("%s vs %s: %w", files[i], files[j], err)
			}
			for _, r := range parsed {
				k := key{r.Name, r.Unit}
				nr, ok := rows[k]
				if !ok {
					nr = &NoiseRow{Name: r.Name, Unit: r.Unit}
					rows[k] = nr
					order = append(order, k)
				}
				if j == firstOther {
					medians[k] = append(medians[k], r.Base) // run i's median, once
				}
				nr.Pairs++
				if r.P < Alpha && !math.IsNaN(r.Delta()) {
					nr.SigPairs++
					nr.WorstSig = max(nr.WorstSig, r.Delta())
				}
			}
		}
	}
	out := make([]NoiseRow, 0, len(order))
	for _, k := range order {
		r := rows[k]
		m := slices.Clone(medians[k])
		slices.Sort(m)
		if len(m) > 0 {
			r.Min, r.Max, r.Median = m[0], m[len(m)-1], m[len(m)/2]
		}
		out = append(out, *r)
	}
	return out, nil
}

// WriteNoiseTable writes the rows of the units that are gated as a
// Markdown table.
func WriteNoiseTable(w io.Writer, rows []NoiseRow) {
	fmt.Fprintln(w, "| benchmark | unit | median | min | max | spread | significant pairs | worst significant slowdown |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|")
	for _, r := range rows {
		if r.Unit != UnitCPU && r.Unit != UnitProcCPU && r.Unit != UnitWall && r.Unit != UnitAllocs {
			continue
		}
		spread := 0.0
		if r.Min > 0 {
			spread = r.Max/r.Min - 1
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.1f%% | %d/%d | %+.2f%% |\n", r.Name, r.Unit,
			fmtVal(r.Unit, r.Median), fmtVal(r.Unit, r.Min), fmtVal(r.Unit, r.Max), 100*spread, r.SigPairs, r.Pairs, 100*r.WorstSig)
	}
}

// WorstSig is the largest significant slowdown of the unit's rows.
func WorstSig(rows []NoiseRow, unit string) (float64, string) {
	worst, name := 0.0, ""
	for _, r := range rows {
		if r.Unit == unit && r.WorstSig > worst {
			worst, name = r.WorstSig, r.Name
		}
	}
	return worst, name
}
