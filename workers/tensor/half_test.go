package tensor

import (
	"math"
	"testing"
)

func TestHalfRoundTripsEveryValue(t *testing.T) {
	for h := 0; h <= 0xffff; h++ {
		bits := uint16(h)
		for _, c := range []struct {
			name   string
			decode func(uint16) float64
			encode func(float64) (uint16, bool)
		}{
			{"FP16", FP16ToFloat64, Float64ToFP16},
			{"BF16", BF16ToFloat64, Float64ToBF16},
		} {
			f := c.decode(bits)
			got, ok := c.encode(f)
			if math.IsNaN(f) {
				if g := c.decode(got); !math.IsNaN(g) || !ok {
					t.Fatalf("%s NaN %#04x re-encoded as %#04x", c.name, bits, got)
				}
				continue
			}
			if got != bits || !ok {
				t.Fatalf("%s %#04x (%v) re-encoded as %#04x, ok=%v", c.name, bits, f, got, ok)
			}
		}
	}
}

func TestFloat64ToFP16Rounding(t *testing.T) {
	tests := []struct {
		v    float64
		want uint16
		ok   bool
	}{
		{1, 0x3c00, true},
		{1 + 0x1p-11, 0x3c00, true},   // tie, to even
		{1 + 3*0x1p-11, 0x3c02, true}, // tie, to even (up)
		{1 + 0x1p-11 + 0x1p-30, 0x3c01, true},
		{65504, 0x7bff, true},
		{65519.99, 0x7bff, true},
		{65520, 0x7c00, false}, // rounds to infinity
		{-1e6, 0xfc00, false},
		{0x1p-24, 0x0001, true},           // smallest subnormal
		{0x1p-25, 0x0000, true},           // tie, to even (zero)
		{3 * 0x1p-26, 0x0001, true},       // above the tie
		{0x1p-14 - 0x1p-25, 0x0400, true}, // subnormal rounding carries into the smallest normal
		{math.Copysign(0, -1), 0x8000, true},
		{1e-300, 0x0000, true},
		{math.Inf(-1), 0xfc00, true},
	}
	for _, tt := range tests {
		got, ok := Float64ToFP16(tt.v)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Float64ToFP16(%v) = %#04x %v, want %#04x %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFloat64ToBF16Rounding(t *testing.T) {
	tests := []struct {
		v    float64
		want uint16
		ok   bool
	}{
		{1, 0x3f80, true},
		{-2.5, 0xc020, true},
		{3.14159, 0x4049, true},
		{1 + 0x1p-8, 0x3f80, true}, // tie, to even
		{1 + 3*0x1p-8, 0x3f82, true},
		{math.MaxFloat32, 0x7f80, false},
		{0x1p-133, 0x0001, true}, // smallest subnormal
	}
	for _, tt := range tests {
		got, ok := Float64ToBF16(tt.v)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Float64ToBF16(%v) = %#04x %v, want %#04x %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}
