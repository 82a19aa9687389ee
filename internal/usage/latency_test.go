package usage

import (
	"math"
	"testing"
	"time"
)

func TestBucketOf(t *testing.T) {
	last := len(LatencyBounds)
	tests := []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{time.Microsecond, 0},
		{time.Millisecond, 0}, // bounds are inclusive
		{time.Millisecond + 1, 1},
		{3 * time.Millisecond, 2},
		{time.Second, 9},
		{LatencyBounds[last-1], last - 1},
		{LatencyBounds[last-1] + 1, last},
		{time.Hour, last},
	}
	for _, tt := range tests {
		if got := BucketOf(tt.d); got != tt.want {
			t.Errorf("BucketOf(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
	if NumBuckets != len(LatencyBounds)+1 {
		t.Errorf("NumBuckets = %d, want %d", NumBuckets, len(LatencyBounds)+1)
	}
	for i := 1; i < len(LatencyBounds); i++ {
		if LatencyBounds[i] <= LatencyBounds[i-1] {
			t.Errorf("LatencyBounds not increasing at %d: %v", i, LatencyBounds)
		}
	}
}

func buckets(pairs ...int) []uint64 {
	b := make([]uint64, NumBuckets)
	for i := 0; i < len(pairs); i += 2 {
		b[pairs[i]] = uint64(pairs[i+1])
	}
	return b
}

func TestQuantile(t *testing.T) {
	last := len(LatencyBounds)
	tests := []struct {
		name string
		b    []uint64
		q    float64
		want time.Duration
	}{
		{"nothing counted", buckets(), 0.5, 0},
		{"nil", nil, 0.99, 0},
		{"first bucket, median", buckets(0, 10), 0.5, 500 * time.Microsecond},
		{"first bucket, max", buckets(0, 10), 1, time.Millisecond},
		{"interpolated in (1ms, 2ms]", buckets(1, 4), 0.25, 1250 * time.Microsecond},
		{"second of two buckets", buckets(0, 50, 3, 50), 0.75, 7500 * time.Microsecond},
		{"p99.9 in the tail", buckets(0, 99, 9, 1), 0.999, 950 * time.Millisecond},
		{"over the last bound", buckets(last, 3), 0.5, LatencyBounds[last-1]},
		{"q below 0 clamps", buckets(2, 1), -1, 2 * time.Millisecond},
		{"q above 1 clamps", buckets(2, 1), 2, 5 * time.Millisecond},
		{"NaN", buckets(2, 1), math.NaN(), 0},
		{"short slice", []uint64{0, 2}, 0.5, 1500 * time.Microsecond},
	}
	for _, tt := range tests {
		if got := Quantile(tt.b, tt.q); got != tt.want {
			t.Errorf("%s: Quantile(%v, %v) = %v, want %v", tt.name, tt.b, tt.q, got, tt.want)
		}
	}
}

// FuzzQuantile: any counts give a quantile within the bounds, and a
// higher q never gives a lower quantile.
func FuzzQuantile(f *testing.F) {
	f.Add(uint64(1), uint64(0), uint64(5), uint64(1<<40), 0.3, 0.9)
	f.Fuzz(func(t *testing.T, a, b, c, d uint64, q1, q2 float64) {
		bs := buckets()
		bs[0], bs[3], bs[9], bs[len(bs)-1] = a>>20, b>>20, c>>20, d>>20 // no overflow of the sum
		if q1 > q2 {
			q1, q2 = q2, q1
		}
		x, y := Quantile(bs, q1), Quantile(bs, q2)
		if x < 0 || y > LatencyBounds[len(LatencyBounds)-1] {
			t.Fatalf("quantiles %v, %v out of range", x, y)
		}
		if !math.IsNaN(q1) && !math.IsNaN(q2) && x > y {
			t.Fatalf("Quantile(q=%v) = %v > Quantile(q=%v) = %v", q1, x, q2, y)
		}
	})
}

func TestHourOf(t *testing.T) {
	tests := []struct {
		t    time.Time
		want int64
	}{
		{time.Date(2026, 12, 7, 11, 59, 59, 999, time.UTC), time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC).Unix()},
		{time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC), time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC).Unix()},
		// A zone half an hour off UTC: still the UTC hour.
		{time.Date(2026, 12, 7, 17, 10, 0, 0, time.FixedZone("IST", 5*3600+1800)), time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC).Unix()},
		{time.Date(1969, 12, 31, 23, 30, 0, 0, time.UTC), -3600},
	}
	for _, tt := range tests {
		got := HourOf(tt.t)
		if got != tt.want || got%3600 != 0 {
			t.Errorf("HourOf(%v) = %d, want %d", tt.t, got, tt.want)
		}
	}
}
