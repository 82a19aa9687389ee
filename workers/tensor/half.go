package tensor

import "math"

// Float64ToFP16 rounds v to the nearest IEEE 754 half (ties to even). ok is
// false when a finite v is too large for a half.
func Float64ToFP16(v float64) (bits uint16, ok bool) {
	return float64ToSmallFloat(v, 5, 10)
}

// Float64ToBF16 rounds v to the nearest bfloat16 (ties to even). ok is false
// when a finite v is too large for a bfloat16.
func Float64ToBF16(v float64) (bits uint16, ok bool) {
	return float64ToSmallFloat(v, 8, 7)
}

// float64ToSmallFloat rounds v straight from float64 to a 16-bit binary float
// with the given exponent and mantissa widths; going through float32 first
// would round twice.
func float64ToSmallFloat(v float64, expBits, mantBits uint) (uint16, bool) {
	b := math.Float64bits(v)
	sign := uint16(b>>48) & 0x8000
	exp := int(b>>52) & 0x7ff
	frac := b & (1<<52 - 1)
	maxExp := 1<<expBits - 1
	if exp == 0x7ff {
		if frac != 0 {
			return sign | uint16(maxExp)<<mantBits | 1<<(mantBits-1), true // quiet NaN
		}
		return sign | uint16(maxExp)<<mantBits, true
	}
	if exp == 0 {
		// float64 subnormals are far below the smallest 16-bit subnormal.
		return sign, true
	}
	sig := frac | 1<<52 // 1.frac, 53 bits
	bias := 1<<(expBits-1) - 1
	e := exp - 1023 + bias
	drop := 52 - mantBits
	if e < 1 {
		// Subnormal result: the exponent is pinned at its minimum and the
		// significand shifts right. The bits land in the right place even
		// when rounding carries into the smallest normal.
		shift := drop + uint(1-e)
		if shift >= 54 {
			return sign, true
		}
		return sign | uint16(roundShift(sig, shift)), true
	}
	r := roundShift(sig, drop)
	if r == 1<<(mantBits+1) {
		r >>= 1
		e++
	}
	if e >= maxExp {
		return sign | uint16(maxExp)<<mantBits, false
	}
	return sign | uint16(e)<<mantBits | uint16(r&(1<<mantBits-1)), true
}

// roundShift returns x >> s rounded to nearest, ties to even.
func roundShift(x uint64, s uint) uint64 {
	q := x >> s
	rem := x & (1<<s - 1)
	half := uint64(1) << (s - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	return q
}

// FP16ToFloat64 decodes an IEEE 754 half.
func FP16ToFloat64(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * frac * 0x1p-24
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	}
	return sign * math.Ldexp(1+frac/1024, exp-15)
}

// BF16ToFloat64 decodes a bfloat16: the top half of a float32.
func BF16ToFloat64(h uint16) float64 {
	return float64(math.Float32frombits(uint32(h) << 16))
}
