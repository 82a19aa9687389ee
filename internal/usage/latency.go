package usage

import (
	"time"
)

// LatencyBounds are the upper bounds (inclusive) of the latency buckets a
// UsageRow counts in; a row's latency_buckets has len(LatencyBounds)+1
// entries, the last one counting what is over the last bound. Changing
// them changes what stored rows mean: append only.
var LatencyBounds = []time.Duration{
	1 * time.Millisecond,
	2 * time.Millisecond,
	5 * time.Millisecond,
	10 * time.Millisecond,
	20 * time.Millisecond,
	50 * time.Millisecond,
	100 * time.Millisecond,
	200 * time.Millisecond,
	500 * time.Millisecond,
	1 * time.Second,
	2 * time.Second,
	5 * time.Second,
	10 * time.Second,
	30 * time.Second,
	60 * time.Second,
}

// NumBuckets is len(LatencyBounds)+1, the length of a row's
// latency_buckets.
var NumBuckets = len(LatencyBounds) + 1

// BucketOf is the index of the bucket d falls in: the first bound d does
// not exceed, or len(LatencyBounds) past the last one.
func BucketOf(d time.Duration) int {
	// Linear: 15 bounds, most requests fall in the first few.
	for i, b := range LatencyBounds {
		if d <= b {
			return i
		}
	}
	return len(LatencyBounds)
}

// Quantile estimates the q-quantile (0 <= q <= 1) of the latencies counted
// in buckets (len(LatencyBounds)+1 counts, or fewer: missing ones count
// zero), interpolating linearly inside the bucket it falls in as
// Prometheus' histogram_quantile does. It is 0 when nothing is counted;
// a quantile in the last, unbounded bucket is the last bound.
func Quantile(buckets []uint64, q float64) time.Duration {
	var total uint64
	for _, c := range buckets {
		total += c
	}
	if total == 0 || q != q { // q != q: NaN
		return 0
	}
	q = min(max(q, 0), 1)
	rank := q * float64(total)
	var seen uint64
	for i, c := range buckets {
		if c == 0 {
			continue
		}
		if float64(seen+c) >= rank {
			if i >= len(LatencyBounds) {
				return LatencyBounds[len(LatencyBounds)-1]
			}
			var lo time.Duration
			if i > 0 {
				lo = LatencyBounds[i-1]
			}
			hi := LatencyBounds[i]
			frac := (rank - float64(seen)) / float64(c)
			return lo + time.Duration(frac*float64(hi-lo))
		}
		seen += c
	}
	return LatencyBounds[len(LatencyBounds)-1]
}

// HourOf is the UTC hour t falls in, as Unix seconds (a multiple of 3600).
func HourOf(t time.Time) int64 {
	s := t.Unix()
	return s - ((s%3600)+3600)%3600
}
