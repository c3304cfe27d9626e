// Package vmath holds the vector loops of the CPU backend's fused
// attention: the row maximum and the shifted exponential with its sum that
// an online softmax runs over every block of scores. On amd64 they are
// AVX-512 or AVX2/FMA loops in Go assembly (kernels_amd64.s, written by
// gen_kernels.go), chosen at start-up from the CPU's features; elsewhere,
// or with the purego build tag, plain Go. Every implementation computes
// the same function to within Exp's error (tested against each other and
// against math.Exp).
package vmath

import "math"

// Exp is e^x in float32, within 3 ulp (4e-7 relative) of e^x on
// [-87, 88], and several times cheaper than math.Exp through float64.
//
// Cody–Waite range reduction x = n·ln2 + r, |r| ≤ ln2/2, then a degree-6
// Taylor polynomial for e^r (truncation error below 2e-8 relative) and
// 2^n put into the exponent bits.
func Exp(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -87.33654: // below the smallest normal result
		if x < -103.972 {
			return 0
		}
		return float32(math.Exp(float64(x))) // subnormal results: rare, exact
	}
	const (
		log2e = 1.44269504088896341
		ln2Hi = 0.693359375 // ln 2 split so n·ln2Hi is exact in float32
		ln2Lo = -2.12194440e-4
	)
	t := x * log2e
	ni := int32(t + 0.5) // round half away from zero
	if t < 0 {
		ni = int32(t - 0.5)
	}
	n := float32(ni)
	r := x - n*ln2Hi - n*ln2Lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720))))))
	return p * math.Float32frombits(uint32(ni+127)<<23)
}

// kernels is one implementation of the loops; step is the multiple of
// elements the vector loops take (the wrappers do the rest in Go).
type kernels struct {
	name             string
	maxStep, expStep int
	max              func(x *float32, n int) float32
	expShiftSum      func(x *float32, n int, m float32) float32
	// lanes is the width of the column loops (0: none).
	lanes          int
	colMax         func(x *float32, n, stride int, m *float32)
	colExpShiftSum func(x *float32, n, stride int, shift, sum *float32)
}

// impl is chosen once, at start-up, from the CPU's features.
var impl = kernels{name: "go"}

// Impl names the loops in use: "avx512", "avx2" or "go".
func Impl() string { return impl.name }

// Max is the largest element of x (-Inf for an empty x; NaNs are not
// expected).
func Max(x []float32) float32 {
	m := float32(math.Inf(-1))
	n := 0
	if impl.max != nil && len(x) >= impl.maxStep {
		n = len(x) / impl.maxStep * impl.maxStep
		m = impl.max(&x[0], n)
	}
	for _, v := range x[n:] {
		m = max(m, v)
	}
	return m
}

// ExpShiftSum sets x[i] = e^(x[i] − m) and returns the sum of the new
// values. −Inf gives exactly 0 (a masked score weighs nothing); results
// below the normal range (arguments under −87.33) may be flushed to 0, and
// arguments above 88 may saturate at e^88 instead of overflowing to +Inf.
func ExpShiftSum(x []float32, m float32) float32 {
	var sum float32
	n := 0
	if impl.expShiftSum != nil && len(x) >= impl.expStep {
		n = len(x) / impl.expStep * impl.expStep
		sum = impl.expShiftSum(&x[0], n, m)
	}
	for i := n; i < len(x); i++ {
		d := x[i] - m
		e := float32(0)
		if d >= -87.33654 {
			e = Exp(d)
		}
		x[i] = e
		sum += e
	}
	return sum
}

// ColMax sets m[c] = max(m[c], x[p·stride+c]) for rows p < n and columns
// c < len(m): the per-query maxima of a block of scores laid out with the
// queries along a row (NaNs are not expected).
func ColMax(x []float32, n, stride int, m []float32) {
	w := len(m)
	if n <= 0 || w == 0 {
		return
	}
	_ = x[(n-1)*stride+w-1] // one bounds check for the loops below
	c := 0
	if impl.colMax != nil {
		for ; c+impl.lanes <= w; c += impl.lanes {
			impl.colMax(&x[c], n, stride, &m[c])
		}
	}
	for ; c < w; c++ {
		v := m[c]
		for p := 0; p < n; p++ {
			v = max(v, x[p*stride+c])
		}
		m[c] = v
	}
}

// ColExpShiftSum sets x[p·stride+c] = e^(x[p·stride+c] − shift[c]) for rows
// p < n and columns c < len(shift), and adds each column's new values to
// sum[c] (at least len(shift) long). Special values as ExpShiftSum's.
func ColExpShiftSum(x []float32, n, stride int, shift, sum []float32) {
	w := len(shift)
	if n <= 0 || w == 0 {
		return
	}
	_ = x[(n-1)*stride+w-1]
	_ = sum[w-1]
	c := 0
	if impl.colExpShiftSum != nil {
		for ; c+impl.lanes <= w; c += impl.lanes {
			impl.colExpShiftSum(&x[c], n, stride, &shift[c], &sum[c])
		}
	}
	for ; c < w; c++ {
		var t float32
		for p := 0; p < n; p++ {
			d := x[p*stride+c] - shift[c]
			e := float32(0)
			if d >= -87.33654 {
				e = Exp(d)
			}
			x[p*stride+c] = e
			t += e
		}
		sum[c] += t
	}
}
