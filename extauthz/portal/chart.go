package portal

import (
	"math"
	"strconv"
)

// Charts are SVG drawn on the server: no script, no library. Each chart
// is a picture with a title and a summary (role="img"); its numbers are
// in a data table beside it, which is what assistive technology reads.

// Chart geometry, in the SVG's own units (it scales to its box).
const (
	chartWidth   = 640
	chartHeight  = 240
	chartLeft    = 56 // room for the value axis' labels
	chartRight   = 8
	chartTop     = 12
	chartBottom  = 36 // room for the period labels
	maxXLabels   = 6
	chartBarFill = 0.8 // the share of a slot a bar fills
)

// Point is one bar: its period's label (Short under the axis, Label in
// its tooltip) and value, and the value as text ("": formatNumber).
type Point struct {
	Label, Short string
	Value        float64
	Text         string
}

// Chart is a bar chart ready for the template.
type Chart struct {
	ID, Title, Summary string
	Width, Height      int
	// Plot area: the axes' corner and ends.
	X0, Y0, X1, Y1 float64
	Bars           []Bar
	YTicks         []Tick
	XLabels        []Tick
}

// Bar is one drawn bar with its tooltip.
type Bar struct {
	X, Y, W, H float64
	Title      string
}

// Tick is a labelled position on an axis.
type Tick struct {
	Pos   float64
	Label string
}

// BarChart lays out points as bars, oldest first, with a value axis of
// round numbers from 0.
func BarChart(id, title, unit string, points []Point) Chart {
	c := Chart{ID: id, Title: title, Width: chartWidth, Height: chartHeight,
		X0: chartLeft, Y0: chartHeight - chartBottom, X1: chartWidth - chartRight, Y1: chartTop}
	maxV, total := 0.0, 0.0
	for _, p := range points {
		if p.Value > maxV {
			maxV = p.Value
		}
		total += p.Value
	}
	step, top := niceScale(maxV)
	for v := 0.0; v <= top+step/2; v += step {
		c.YTicks = append(c.YTicks, Tick{Pos: round2(c.Y0 - v/top*(c.Y0-c.Y1)), Label: formatNumber(v)})
	}
	c.Summary = title + ": " + strconv.Itoa(len(points)) + " periods, total " + formatNumber(total) + " " + unit +
		", highest " + formatNumber(maxV) + " " + unit + ". The table beside the chart lists every value."
	if len(points) == 0 {
		return c
	}
	slot := (c.X1 - c.X0) / float64(len(points))
	labelEvery := (len(points) + maxXLabels - 1) / maxXLabels
	for i, p := range points {
		h := 0.0
		if top > 0 {
			h = p.Value / top * (c.Y0 - c.Y1)
		}
		x := c.X0 + float64(i)*slot
		text := p.Text
		if text == "" {
			text = formatNumber(p.Value)
		}
		c.Bars = append(c.Bars, Bar{X: round2(x + slot*(1-chartBarFill)/2), Y: round2(c.Y0 - h), W: round2(slot * chartBarFill),
			H: round2(h), Title: p.Label + ": " + text + " " + unit})
		if i%labelEvery == 0 {
			short := p.Short
			if short == "" {
				short = p.Label
			}
			c.XLabels = append(c.XLabels, Tick{Pos: round2(x + slot/2), Label: short})
		}
	}
	return c
}

// niceScale returns a tick step of 1, 2 or 5 times a power of ten and
// the axis' top (a multiple of it) for values up to maxV, in about four
// steps.
func niceScale(maxV float64) (step, top float64) {
	if maxV <= 0 || math.IsNaN(maxV) || math.IsInf(maxV, 0) {
		return 1, 1
	}
	raw := maxV / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / mag; {
	case f <= 1:
		step = mag
	case f <= 2:
		step = 2 * mag
	case f <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	return step, math.Ceil(maxV/step) * step
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// formatNumber writes v shortly: whole numbers without decimals, large
// ones with k and M, fractions with up to three decimals, and those
// below 0.001 with two significant digits.
func formatNumber(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 10_000_000:
		return strconv.FormatFloat(v/1e6, 'f', 0, 64) + "M"
	case a >= 1_000_000:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case a >= 10_000:
		return strconv.FormatFloat(v/1e3, 'f', 0, 64) + "k"
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
	case a == 0 || a >= 0.001:
		return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
	default:
		// Two significant digits, so that an axis of compute seconds
		// below a millisecond does not read 0, 0, 0.
		d := min(1-int(math.Floor(math.Log10(a))), 12)
		p := math.Pow(10, float64(d))
		return strconv.FormatFloat(math.Round(v*p)/p, 'f', -1, 64)
	}
}
